import * as tf from '@tensorflow/tfjs';

/** `(x − mean)/√(var + ε)·gamma + beta` over the last axis of x `[M, D]`, in tfjs ops: the ground truth, on every backend. */
export function layerNormReference(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true);
  const normalised = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon)));
  return tf.add(tf.mul(normalised, gamma), beta) as tf.Tensor2D;
}

/** `x/√(mean(x²) + ε)·gamma` over the last axis of x `[M, D]` (RMSNorm), in tfjs ops, on every backend. */
export function rmsNormReference(x: tf.Tensor2D, gamma: tf.Tensor1D, epsilon: number): tf.Tensor2D {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), epsilon))), gamma) as tf.Tensor2D;
}
