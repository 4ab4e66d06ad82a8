import * as tf from '@tensorflow/tfjs';
import { broadcast, sumAlong } from '../cpu-host.js';

/**
 * One norm over the last axis of x `[M, D]` as one `tf.customGrad`, its gradient written out:
 * x̂ = (x − μ)·r with r = 1/√(σ² + ε), y = x̂·γ + β, and for g = dy ⊙ γ
 * ```
 * dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂))      dγ = Σ_rows dy ⊙ x̂      dβ = Σ_rows dy
 * ```
 * RMSNorm (`centred` false) drops μ, β and mean(g): x̂ = x·r, r = 1/√(mean(x²) + ε). Its
 * broadcasts are {@link broadcast}'s and its sums down the rows {@link sumAlong}, so that tfjs-cpu
 * does no index arithmetic, forward or backward; the backward is made of differentiable ops, so
 * the reference is differentiable to any order.
 */
function norm(centred: boolean, epsilon: number) {
  // x̂ and r [M, 1], from x
  const normalised = (x: tf.Tensor) => {
    const centredX = centred ? broadcast.sub(x, tf.mean(x, -1, true)) : x;
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centredX), -1, true), epsilon));
    return { xHat: broadcast.mul(centredX, r), r };
  };
  return tf.customGrad(((x: tf.Tensor2D, gamma: tf.Tensor1D, ...rest: tf.Tensor[]) => {
    const save = rest.pop() as unknown as tf.GradSaveFunc;
    const beta = rest[0];
    save([x, gamma]);
    const { xHat } = normalised(x);
    const scaled = tf.mul(xHat, gamma);
    return {
      value: beta ? tf.add(scaled, beta) : scaled,
      gradFunc: (dy: tf.Tensor2D, [sx, sGamma]: tf.Tensor[]) => {
        // x̂ and r again from the saved x, not kept from the forward: the gradient's own gradient
        // then reaches x
        const { xHat: xh, r } = normalised(sx!);
        const g = tf.mul(dy, sGamma!);
        const along = broadcast.mul(xh, tf.mean(tf.mul(g, xh), -1, true));
        const inner = centred ? broadcast.sub(tf.sub(g, along), tf.mean(g, -1, true)) : tf.sub(g, along);
        const dGamma = sumAlong(tf.mul(dy, xh), 0);
        return [broadcast.mul(inner, r), dGamma, ...(beta ? [sumAlong(dy, 0)] : [])];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (...inputs: tf.Tensor[]) => tf.Tensor2D;
}

/** `(x − mean)/√(var + ε)·gamma + beta` over the last axis of x `[M, D]`, in tfjs ops: the ground truth, on every backend. */
export function layerNormReference(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): tf.Tensor2D {
  return norm(true, epsilon)(x, gamma, beta);
}

/** `x/√(mean(x²) + ε)·gamma` over the last axis of x `[M, D]` (RMSNorm), in tfjs ops, on every backend. */
export function rmsNormReference(x: tf.Tensor2D, gamma: tf.Tensor1D, epsilon: number): tf.Tensor2D {
  return norm(false, epsilon)(x, gamma);
}
