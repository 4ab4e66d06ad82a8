import * as tf from '@tensorflow/tfjs';
import { broadcast, copy } from '../../cpu-host.js';
import { matMul } from '../../tensors.js';
import { chunkedAttention, type ReferenceFamily, type TileMask } from '../../attention/reference.js';
import type { Dropout } from '../../attention/dropout.js';
import type { AttentionSizes } from '../../attention/validate.js';
import type { Visibility } from '../../attention/visibility.js';

/**
 * The floor of the denominator ε + Σ s²: it only matters with ε < 2⁻⁶⁰, where it turns a row
 * whose scores are all 0 into an output of 0 (0 / floor) with a finite gradient.
 */
export const MIN_DENOMINATOR = 2 ** -60;

/**
 * ExpressiveAttention's row algebra in tfjs ops (see {@link ReferenceFamily}): each row sums
 * its weights w = s² (0 where invisible) into z and w·v into its numerator, tile by tile, and
 * divides by max(ε + z, 2⁻⁶⁰) at the end. The backward, from the saved denominator:
 * dw = drop ∘ (dO·vᵀ)/z − rowsum(dO ∘ o)/z (the second term only where the floor is not the
 * max; inside one matMul, [dO/z, −term]·[v, 1]ᵀ, without dropout), dS = 2·s ∘ dw on the visible keys.
 */
export function expressiveRows(epsilon: number): ReferenceFamily {
  // s·s is tf.square's float; products and sums here go through broadcast.*, on the host on cpu
  const weights = (s: tf.Tensor4D, mask: TileMask | null) => (mask ? broadcast.mul(broadcast.mul(s, s), mask.visible) : broadcast.mul(s, s));
  return {
    numStats: 2,
    fold(state, s, mask, v, drop) {
      const w = weights(s, mask);
      const z = tf.sum(w, -1, true);
      const wv = matMul(drop ? broadcast.mul(w, drop) : w, v);
      return state ? [tf.add(state[0]!, z), broadcast.add(state[1]!, wv)] : [z, wv];
    },
    finish([z, acc]) {
      const raw = tf.add(z!, epsilon);
      const denominator = tf.maximum(raw, MIN_DENOMINATOR) as tf.Tensor4D;
      // 1 where ε + Σ s² is the max, so its gradient flows (as tf.maximum's would)
      const flows = tf.cast(tf.greaterEqual(raw, MIN_DENOMINATOR), 'float32') as tf.Tensor4D;
      return { o: broadcast.div<tf.Tensor4D>(acc!, denominator), stats: [denominator, flows] };
    },
    rowGrads(dO, [denominator, flows], delta) {
      const dOverZ = broadcast.div<tf.Tensor4D>(dO, denominator!);
      // the denominator's part of dw, the same for every key of a row
      const perRow = tf.mul(tf.div(delta, denominator!), flows!) as tf.Tensor4D;
      return [dOverZ, copy.concat([dOverZ, tf.neg(perRow)], -1) as tf.Tensor4D, perRow];
    },
    tileGrad(s, mask, v, vOnes, drop, [dOverZ, dOMinus, perRow]) {
      const w = weights(s, mask);
      const dV = matMul(drop ? broadcast.mul(w, drop) : w, dOverZ!, true, false) as tf.Tensor4D;
      const dW = drop
        ? broadcast.sub(broadcast.mul(matMul(dOverZ!, v, false, true), drop), perRow!)
        : matMul(dOMinus!, vOnes, false, true);
      // s + s is 2·s exactly
      const dS = broadcast.mul<tf.Tensor4D>(broadcast.add(s, s), mask ? broadcast.mul(dW, mask.visible) : dW);
      return { dS, dV };
    },
  };
}

/**
 * ExpressiveAttention in tfjs ops, by tiles (see `chunkedAttention`), under the visibility `vis`
 * (see `VisibilityOptions`), differentiable: what `expressiveAttention` runs off webgpu, and
 * the ground truth of its kernels beside the float64 oracle. q `[B, Tq, H, K]`, k and v
 * `[B, Tk, Hkv, K]` → `[B, Tq, H, K]`. s = scale·q·kᵀ; invisible keys add nothing to the
 * numerator or the denominator; o = (s²·v) / max(ε + rowsum(s²), 2⁻⁶⁰), so a row whose
 * denominator is 0 (ε = 0 and no visible key, or all its scores 0) outputs 0, and a row with
 * no visible key outputs 0 with gradients 0. A NaN or infinity reaches only the rows that see
 * it, which output NaN. With `dropout` (see `DropoutOptions`), each weight s²/z is multiplied by
 * its dropout multiplier, z still summing every visible s². Its memory beyond the inputs is a
 * few tiles, whatever T.
 *
 * @example
 * ```ts
 * import { resolveVisibility } from '../../attention/visibility.js';
 *
 * const s = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
 * const q = tf.randomNormal([1, 3, 2, 4]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 3, 1, 4]) as tf.Tensor4D;
 * const vis = resolveVisibility('example', { window: 2 }, s, { window: true, queryOffsets: true, nonCausal: true });
 * expressiveAttentionReference(q, kv, kv, s, vis, 0.5, 1e-6).shape;  // [1, 3, 2, 4]
 * ```
 */
export function expressiveAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, vis: Visibility, scale: number, epsilon: number,
  dropout: Dropout | null = null,
): tf.Tensor4D {
  return chunkedAttention(expressiveRows(epsilon), q, k, v, s, vis, scale, dropout);
}

/**
 * The symmetric-packed square φ(x) of `x [..., K]`, `[..., K(K+1)/2]`: x_a² for every a, then
 * √2·x_a·x_b for every a < b, so that ⟨φ(q), φ(k)⟩ = (q·k)².
 *
 * @example
 * ```ts
 * const q = tf.tensor1d([1, 2]);
 * const k = tf.tensor1d([3, -1]);
 * tf.sum(tf.mul(quadraticFeatures(q), quadraticFeatures(k))); // (1·3 − 2·1)² = 1
 * ```
 */
export function quadraticFeatures(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const axis = x.rank - 1;
    const K = x.shape[axis]!;
    if (K === 1) return tf.square(x);
    // slices, not a gather: tf.gather's gradient needs UnsortedSegmentSum, which wasm lacks
    const channels = (from: number, n: number) =>
      copy.slice(x, x.shape.map((_, d) => (d === axis ? from : 0)), x.shape.map((size, d) => (d === axis ? n : size)));
    // x_a·x_b for every b > a, a-major
    const pairs = Array.from({ length: K - 1 }, (_, a) => tf.mul(channels(a, 1), channels(a + 1, K - a - 1)));
    return copy.concat([tf.square(x), tf.mul(copy.concat(pairs, axis), Math.SQRT2)], axis);
  });
}

/**
 * The sum of `x` along `axis`, compensated: pairwise, with each addition's rounding error
 * recovered exactly (Knuth's TwoSum, six float32 ops) and summed apart, then added once at
 * the end. Its error is at most one rounding of the result plus O(log₂n·u²)·Σ|x| (u = 2⁻²⁴),
 * where a plain float32 sum's grows as n·u·Σ|x|: what a sum that cancels needs (the recurrent
 * readout's, {@link expressiveAttentionRecurrentStepReference}). Exact on any backend whose
 * float32 ops round correctly; about 7·log₂n elementwise ops.
 */
function compensatedSum(x: tf.Tensor, axis: number): tf.Tensor {
  return tf.tidy(() => {
    let sum = x;
    let error = tf.zerosLike(x);
    while (sum.shape[axis]! > 1) {
      if (sum.shape[axis]! % 2 === 1) {
        // an odd count: a zero joins the last element, exactly
        const pad = sum.shape.map((_, i): [number, number] => (i === axis ? [0, 1] : [0, 0]));
        [sum, error] = [copy.pad(sum, pad), copy.pad(error, pad)];
      }
      const half = sum.shape[axis]! / 2;
      const [a, b] = copy.split(sum, [half, half], axis);
      const [ea, eb] = copy.split(error, [half, half], axis);
      const s = tf.add(a!, b!);
      const bb = tf.sub(s, a!);
      // TwoSum: a + b = s + e exactly
      const e = tf.add(tf.sub(a!, tf.sub(s, bb)), tf.sub(b!, bb));
      [sum, error] = [s, tf.add(tf.add(ea!, eb!), e)];
    }
    return tf.add(sum, error).squeeze([axis]);
  });
}

/**
 * One step of the exact recurrent form in tfjs ops, on any backend: the ground truth of the
 * recurrent-step kernels. M' = M + φ(k)·vᵀ, z' = z + φ(k), and
 * o = φ(scale·q)·M' / max(ε + φ(scale·q)·z', max(ε, 2⁻⁶⁰)), query head h reading kv head
 * ⌊h·Hkv/H⌋. q `[B, H, K]`, k and v `[B, Hkv, K]`, M `[B, Hkv, P, K]`, z `[B, Hkv, P]`.
 * The readout's two sums over the P state rows are compensated (they cancel: see
 * docs/expressive-attention.md, "Precision of the two decodes"), so it forms the products
 * φ(scale·q)_p·M'_pc, `[B, H, P, K]`, rather than a matMul.
 */
export function expressiveAttentionRecurrentStepReference(
  q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, M: tf.Tensor4D, z: tf.Tensor3D, scale: number, epsilon: number,
): [tf.Tensor3D, tf.Tensor4D, tf.Tensor3D] {
  return tf.tidy((): [tf.Tensor3D, tf.Tensor4D, tf.Tensor3D] => {
    const [B, H, K] = q.shape;
    const Hkv = k.shape[1];
    const P = M.shape[2];
    const phiK = quadraticFeatures(k);
    const nextM = tf.add(M, tf.mul(phiK.expandDims(3), v.expandDims(2))) as tf.Tensor4D;
    const nextZ = tf.add(z, phiK) as tf.Tensor3D;
    // query head h reads kv head ⌊h·Hkv/H⌋: the H/Hkv query heads of a kv head are adjacent.
    // scale folded into q: φ(scale·q) = scale²·φ(q)
    const phiQ = quadraticFeatures(tf.mul(q, scale).reshape([B * Hkv, H / Hkv, K]));
    const numerator = compensatedSum(tf.mul(phiQ.expandDims(3), nextM.reshape([B * Hkv, 1, P, K])), 2);
    // Σ_s (q·k_s)² ≥ 0, but the packed sum cancels and may round below 0: ε + max(Σ, 0),
    // floored as the parallel forward's denominator is
    const sums = compensatedSum(tf.mul(phiQ, nextZ.reshape([B * Hkv, 1, P])), 2).expandDims(2);
    const denominator = tf.maximum(tf.add(sums, epsilon), Math.max(epsilon, MIN_DENOMINATOR));
    return [tf.div(numerator, denominator).reshape([B, H, K]) as tf.Tensor3D, nextM, nextZ];
  });
}
