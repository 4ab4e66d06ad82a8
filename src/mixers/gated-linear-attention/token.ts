import * as tf from '@tensorflow/tfjs';
import { expNonPositive, finitePart, matMul, notFinite, poisonWhere } from '../../tensors.js';
import type { GlaArgs } from './reference.js';

/**
 * One token of GatedLinearAttention in tfjs ops, differentiable: the decode step off WebGPU.
 * ```
 * S' = diag(exp(g)) · S + kᵀ v        o = (scale · q) · S'
 * ```
 * on the inputs' finite parts, with the output NaN where the token's q, k, v or g is not finite
 * and the state NaN where its k, v or g is not, per batch row and head: the reference's results
 * at T = 1 (to rounding: it forms o as q·exp(g)·S + (q·k)·v) in about half the launches of its
 * chunked form (41 against 84 on the cpu backend), which is what a decode step costs on webgl.
 *
 * @returns the output `[B, 1, H, V]` and the state after the token `[B, H, K, V]`.
 *
 * @example
 * ```ts
 * const [b, h, k, v] = [2, 4, 8, 16];
 * const x = (w: number) => tf.randomNormal([b, 1, h, w]) as tf.Tensor4D;
 * const { output, state } = gatedLinearAttentionToken({ q: x(k), k: x(k), v: x(v),
 *   g: tf.neg(tf.abs(x(k))) as tf.Tensor4D, scale: 0.35, initialState: tf.zeros([b, h, k, v]) as tf.Tensor4D });
 * output.shape;   // [2, 1, 4, 16]
 * state.shape;    // [2, 4, 8, 16]
 * ```
 */
export function gatedLinearAttentionToken(args: GlaArgs): { output: tf.Tensor4D; state: tf.Tensor4D } {
  return tf.tidy(() => {
    const [B, , H, K] = args.q.shape;
    const V = args.v.shape[3];
    const S = args.initialState ?? tf.zeros([B, H, K, V]);
    const parts = [args.q, args.k, args.v, args.g].map((x) => finitePart(x));
    const [q, k, v, g] = parts.map((p) => p.finite);
    // 1 where a row and head's input is not finite, [B, 1, H, 1]
    const [qBad, kBad, vBad, gBad] = parts.map((p) => notFinite([p.ok], 3));
    const next = tf.add(tf.mul(tf.reshape(expNonPositive(g!), [B, H, K, 1]), S),
      tf.mul(tf.reshape(k!, [B, H, K, 1]), tf.reshape(v!, [B, H, 1, V])));
    const out = tf.reshape(matMul(tf.reshape(tf.mul(q!, args.scale), [B, H, 1, K]), next), [B, 1, H, V]);
    const stateSees = tf.add(tf.add(kBad!, vBad!), gBad!);
    return {
      output: tf.add(out, tf.reshape(poisonWhere(tf.add(stateSees, qBad!)), [B, 1, H, 1])) as tf.Tensor4D,
      state: tf.add(next, tf.reshape(poisonWhere(stateSees), [B, H, 1, 1])) as tf.Tensor4D,
    };
  });
}
