import * as tf from '@tensorflow/tfjs';
import { broadcast, copy } from '../../cpu-host.js';
import { expNonPositive, matMul } from '../../tensors.js';
import { chunkedAttention, type ReferenceFamily } from '../../attention/reference.js';
import type { AttentionSizes } from '../../attention/validate.js';
import type { Visibility } from '../../attention/visibility.js';
import type { Dropout } from '../../attention/dropout.js';

/**
 * Softmax's row algebra in tfjs ops (see {@link ReferenceFamily}), the FlashAttention
 * recurrence: each row keeps its running max m, the sum l of exp(s − m) and the weighted sum of
 * values, rescaled by exp(m_old − m_new) when a tile raises the max. Invisible scores get the
 * hidden score added (`hiddenScore`: −10³⁰, or −2¹⁴ where the backend stores half floats): exp
 * of it is 0 for any max a row can have, and, unlike −∞, a row whose every score carries it
 * stays finite (its output is then zeroed). The backward recomputes
 * P = exp(s − lse) from the saved log-sum-exp and forms dS = P ∘ (dP − rowsum(dO ∘ o)), the
 * subtraction inside one matMul, [dO, −rowsum]·[v, 1]ᵀ, when there is no dropout.
 */
export const SOFTMAX_ROWS: ReferenceFamily = {
  numStats: 1,
  fold(state, s, mask, v, drop) {
    const scores = mask ? broadcast.add(s, mask.hidden) : s;
    const top = tf.max(scores, -1, true);
    const m = state ? tf.maximum(state[0]!, top) : top;
    const p = expNonPositive(broadcast.sub(scores, m));
    const l = tf.sum(p, -1, true);
    const pv = matMul(drop ? broadcast.mul(p, drop) : p, v);
    if (!state) return [m, l, pv];
    const rescale = expNonPositive(tf.sub(state[0]!, m));
    return [m, tf.add(tf.mul(state[1]!, rescale), l), broadcast.add(broadcast.mul(state[2]!, rescale), pv)];
  },
  finish([m, l, acc]) {
    // l ≥ 1 on every row (its max term is e⁰ = 1), so the floor changes no row; it keeps the
    // padding texels of tfjs webgl's packed textures, where l is 0, from a log of −∞, which on
    // half-float textures comes back as NaN through the backward's matMuls
    return { o: broadcast.div<tf.Tensor4D>(acc!, l!), stats: [tf.add(m!, tf.log(tf.maximum(l!, 1))) as tf.Tensor4D] };
  },
  rowGrads(dO, [lse], delta) {
    return [dO, copy.concat([dO, tf.neg(delta)], -1) as tf.Tensor4D, lse!, delta];
  },
  tileGrad(s, mask, v, vOnes, drop, [dO, dOMinus, lse, delta]) {
    const p = expNonPositive(broadcast.sub(mask ? broadcast.add(s, mask.hidden) : s, lse!));
    const dV = matMul(drop ? broadcast.mul(p, drop) : p, dO!, true, false) as tf.Tensor4D;
    const dPMinusDelta = drop
      ? broadcast.sub(broadcast.mul(matMul(dO!, v, false, true), drop), delta!)
      : matMul(dOMinus!, vOnes, false, true);
    return { dS: broadcast.mul<tf.Tensor4D>(p, dPMinusDelta), dV };
  },
};

/**
 * Exact softmax attention in tfjs ops, by tiles with an online softmax (see
 * `chunkedAttention`), under the visibility `vis` (see `VisibilityOptions`), with attention
 * dropout when `dropout` is given (see `DropoutOptions`), differentiable: what
 * `flashAttention` runs off webgpu, and the ground truth of its kernels beside the float64
 * oracle. Its memory beyond the inputs is a few tiles, O(B·H·chunk·keys), whatever T.
 */
export function flashAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, vis: Visibility, scale: number,
  dropout: Dropout | null = null,
): tf.Tensor4D {
  return chunkedAttention(SOFTMAX_ROWS, q, k, v, s, vis, scale, dropout);
}
