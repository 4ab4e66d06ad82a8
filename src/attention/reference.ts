import * as tf from '@tensorflow/tfjs';
import type { AttentionSizes } from './validate.js';

/**
 * `[B, Tq, H, K]` → `[B, Hkv, G·Tq, K]` with G = H / Hkv: the G query heads that read one
 * key/value head (heads c·G .. c·G + G − 1 read kv head c) stacked along the rows, so that one
 * batched matMul per kv head serves them all, with no gather (whose gradient wasm lacks).
 *
 * @example
 * ```ts
 * const q = tf.zeros([1, 5, 4, 8]) as tf.Tensor4D;  // H = 4
 * groupedQueries(q, 2).shape;                       // [1, 2, 10, 8]: G = 2 heads per kv head
 * ```
 */
export function groupedQueries(q: tf.Tensor4D, Hkv: number): tf.Tensor4D {
  const [B, Tq, H, K] = q.shape;
  return q.transpose([0, 2, 1, 3]).reshape([B, Hkv, (H / Hkv) * Tq, K]) as tf.Tensor4D;
}

/**
 * The inverse of {@link groupedQueries}: `[B, Hkv, G·Tq, K]` → `[B, Tq, H, K]`.
 *
 * @example
 * ```ts
 * ungroupedQueries(tf.zeros([1, 2, 10, 8]) as tf.Tensor4D, 4).shape;  // [1, 5, 4, 8]
 * ```
 */
export function ungroupedQueries(x: tf.Tensor4D, H: number): tf.Tensor4D {
  const [B, Hkv, rows, K] = x.shape;
  return (x.reshape([B, H, (rows * Hkv) / H, K]) as tf.Tensor4D).transpose([0, 2, 1, 3]);
}

/**
 * `[Tq, Tk]` visibility of key j to query i: causal bottom-right aligned (j ≤ i + Tk − Tq), or
 * all keys, and further restricted by `mask` when given (a block-sparse layout).
 *
 * @example
 * ```ts
 * visibility({ Tq: 2, Tk: 3 }, true);  // [1, 1, 0,  1, 1, 1]: query 0 sees keys 0 and 1
 * ```
 */
export function visibility(
  s: Pick<AttentionSizes, 'Tq' | 'Tk'>, causal: boolean, mask?: (i: number, j: number) => boolean,
): Uint8Array {
  const out = new Uint8Array(s.Tq * s.Tk);
  for (let i = 0; i < s.Tq; i++) {
    for (let j = 0; j < s.Tk; j++) {
      out[i * s.Tk + j] = (!causal || j <= i + s.Tk - s.Tq) && (!mask || mask(i, j)) ? 1 : 0;
    }
  }
  return out;
}

/**
 * q, k and v prepared for a masked attention: their non-finite entries replaced by 0 (a
 * select), q grouped by kv head and k, v heads first, with the visibility tiled to match, and
 * `poison`, `[B, Hkv, G·Tq, 1]`, NaN on the rows that see a non-finite entry (their own query,
 * or a visible key or value) and 0 elsewhere.
 *
 * Everything in between then runs on finite numbers: an invisible NaN or infinity cannot reach
 * an output through 0 · NaN, forward or backward (tfjs-webgpu's batched matMul even spreads a
 * NaN of one key into a neighbouring column); the rows that do see one are made NaN at the end.
 */
export interface MaskedInputs {
  /** `[B, Hkv, G·Tq, K]`, finite, grouped as {@link groupedQueries}. */
  q: tf.Tensor4D;
  /** `[B, Hkv, Tk, K]`, finite. */
  k: tf.Tensor4D;
  /** `[B, Hkv, Tk, K]`, finite. */
  v: tf.Tensor4D;
  /** `[G·Tq, Tk]` as 0/1, the visibility repeated for the G query heads of a kv head. */
  visible: Uint8Array;
  /** Whether every key is visible to every query. */
  allVisible: boolean;
  /** `[G·Tq]`: 1 for a row that sees at least one key, 0 for one that sees none. */
  rowSees: Float32Array;
  /** `[B, Hkv, G·Tq, 1]`: NaN on the rows that see a non-finite input, 0 elsewhere; added last. */
  poison: tf.Tensor4D;
}

/**
 * `x` with its NaN and ±∞ entries replaced by 0 (a select, so that no 0 · NaN can follow), and
 * `bad`, 1 where `x` held one of them and 0 elsewhere: what a reference needs to compute on
 * finite numbers and poison only the outputs that see a non-finite input.
 *
 * @example
 * ```ts
 * const { finite, bad } = finitePart(tf.tensor1d([1, NaN, Infinity]));
 * finite.print();  // [1, 0, 0]
 * bad.print();     // [0, 1, 1]
 * ```
 */
export function finitePart<T extends tf.Tensor>(x: T): { finite: T; bad: T } {
  const ok = tf.isFinite(x);
  return { finite: tf.where(ok, x, tf.zerosLike(x)) as T, bad: tf.sub(1, tf.cast(ok, 'float32')) as T };
}

/**
 * `[...]` → `[...]`: NaN where `count` (a non-negative count of non-finite inputs) is not 0,
 * and 0 elsewhere; added to an output, it makes exactly the rows that see such an input NaN.
 *
 * @example
 * ```ts
 * poisonWhere(tf.tensor1d([0, 2])).print();  // [0, NaN]
 * ```
 */
export function poisonWhere<T extends tf.Tensor>(count: T): T {
  const bad = tf.greaterEqual(count, 0.5);
  return tf.where(bad, tf.fill(bad.shape, Number.NaN), tf.zeros(bad.shape)) as T;
}

/**
 * Prepares q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]` under the `[Tq, Tk]` visibility
 * `visible`, as {@link MaskedInputs} describes. Call inside a `tf.tidy`.
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
 * const q = tf.randomNormal([1, 3, 2, 4]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 3, 1, 4]) as tf.Tensor4D;
 * maskedInputs(q, kv, kv, s, visibility(s, true)).q.shape;  // [1, 1, 6, 4]
 * ```
 */
export function maskedInputs(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, visible: Uint8Array,
): MaskedInputs {
  const G = s.H / s.Hkv;
  const tiled = new Uint8Array(G * visible.length);
  for (let g = 0; g < G; g++) tiled.set(visible, g * visible.length);
  const rowSees = Float32Array.from({ length: G * s.Tq }, (_, r) => (tiled.subarray(r * s.Tk, (r + 1) * s.Tk).some((x) => x === 1) ? 1 : 0));
  const $q = finitePart(q);
  const $k = finitePart(k);
  const $v = finitePart(v);
  // non-finite entries of each kv token [B, Hkv, Tk, 1], summed over the rows that see it
  const perKey = tf.sum(tf.add($k.bad, $v.bad), -1, true).transpose([0, 2, 1, 3]);
  const seen = tf.matMul(tf.tensor2d(Float32Array.from(tiled), [G * s.Tq, s.Tk]), perKey);
  // a row that sees no key outputs 0 whatever its query
  const perQuery = tf.mul(groupedQueries(tf.sum($q.bad, -1, true) as tf.Tensor4D, s.Hkv), tf.tensor2d(rowSees, [G * s.Tq, 1]));
  return {
    q: groupedQueries($q.finite, s.Hkv),
    k: $k.finite.transpose([0, 2, 1, 3]),
    v: $v.finite.transpose([0, 2, 1, 3]),
    visible: tiled,
    allVisible: visible.every((x) => x === 1),
    rowSees,
    poison: poisonWhere(tf.add(seen, perQuery) as tf.Tensor4D),
  };
}

/**
 * Softmax attention in tfjs ops under a visibility mask, differentiable by tfjs: the ground
 * truth for FlashStyleTiledAttention and BlockSparse. q `[B, Tq, H, K]`, k and v
 * `[B, Tk, Hkv, K]` → `[B, Tq, H, K]`; materialises the `[B, Hkv, G·Tq, Tk]` scores. Invisible
 * scores are replaced (a select) by a large negative number rather than −∞, so that a row with
 * no visible key stays finite; such rows output 0. A NaN or infinity reaches only the rows that
 * see it, which output NaN (see {@link maskedInputs}).
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
 * const q = tf.randomNormal([1, 3, 2, 4]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 3, 1, 4]) as tf.Tensor4D;
 * maskedSoftmaxAttention(q, kv, kv, s, 0.5, visibility(s, true)).shape;  // [1, 3, 2, 4]
 * ```
 */
export function maskedSoftmaxAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, scale: number, visible: Uint8Array,
): tf.Tensor4D {
  return tf.tidy(() => {
    const m = maskedInputs(q, k, v, s, visible);
    const rows = m.q.shape[2];
    const scores = tf.mul(tf.matMul(m.q, m.k, false, true), scale);
    let o: tf.Tensor;
    if (m.allVisible) {
      o = tf.matMul(tf.softmax(scores), m.v);
    } else {
      const mask = tf.tensor2d(m.visible, [rows, s.Tk], 'bool');
      o = tf.matMul(tf.softmax(tf.where(mask, scores, tf.fill(scores.shape, -1e30))), m.v);
      // o is finite here, so the 0 of a row without keys is exact
      if (m.rowSees.some((r) => r === 0)) o = tf.mul(o, tf.tensor2d(m.rowSees, [rows, 1]));
    }
    return ungroupedQueries(tf.add(o, m.poison) as tf.Tensor4D, s.H);
  });
}
