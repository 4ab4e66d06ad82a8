import * as tf from '@tensorflow/tfjs';
import { broadcast } from '../cpu-host.js';
import { matMul } from '../tensors.js';

/**
 * `x·W + b` for x `[M, K]`, W `[K, N]` and b `[N]`, in tfjs ops: the ground truth, on every
 * backend; on wasm its gradient's transposed products go to XNNPACK ({@link matMul}).
 */
export function denseReference(x: tf.Tensor2D, kernel: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor2D {
  const y = matMul(x, kernel) as tf.Tensor2D;
  return bias ? broadcast.add<tf.Tensor2D>(y, bias) : y;
}
