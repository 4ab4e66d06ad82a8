import * as tf from '@tensorflow/tfjs';
import { headsFirst, visibility } from '../../attention/reference.js';
import type { AttentionSizes } from '../../attention/validate.js';

/**
 * The floor of the denominator ε + Σ s²: it only matters with ε < 2⁻⁶⁰, where it turns a row
 * whose scores are all 0 into an output of 0 (0 / floor) with a finite gradient (its square,
 * which tfjs's division gradient forms, is still a normal float32).
 */
export const MIN_DENOMINATOR = 2 ** -60;

/**
 * ExpressiveAttention in tfjs ops, differentiable by tfjs: the ground truth of the kernels.
 * s = scale·q·kᵀ `[B, H, Tq, Tk]`; the squares of the masked scores are set to 0, so masked keys
 * add nothing to the numerator or the denominator; o = (s²·v) / max(ε + rowsum(s²), 2⁻⁶⁰), so a
 * row whose denominator is 0 (ε = 0 and no visible key, or all its scores 0) outputs 0.
 * Its memory is O(B·H·Tq·Tk).
 */
export function expressiveAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, causal: boolean, scale: number, epsilon: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const scores = tf.mul(tf.matMul(q.transpose([0, 2, 1, 3]), headsFirst(k, s.H), false, true), scale);
    let squares = tf.square(scores);
    const visible = visibility(s, causal);
    if (!visible.every((x) => x === 1)) squares = tf.mul(squares, tf.tensor2d(Float32Array.from(visible), [s.Tq, s.Tk]));
    // a denominator of 0 (ε = 0) comes with a numerator of 0: the floor makes that row 0, not NaN
    const z = tf.maximum(tf.add(tf.sum(squares, -1, true), epsilon), MIN_DENOMINATOR);
    return tf.div(tf.matMul(squares, headsFirst(v, s.H)), z).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  });
}
