import * as tf from '@tensorflow/tfjs';
import type { AttentionSizes } from './validate.js';
import { dropoutMask, type Dropout } from './dropout.js';
import type { Visibility, VisibilityOptions } from './visibility.js';

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
 * `[B, Tq, Tk]` bool: whether key j is visible to query i of batch row b under `vis` (the rule of
 * {@link VisibilityOptions}), and-ed with `layout`, a `[Tq, Tk]` bool tensor, when given (a block-sparse layout).
 * Built with tfjs ops, without reading any tensor back. Call inside a `tf.tidy`.
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 2, Tk: 3, H: 1, Hkv: 1, K: 4 };
 * const vis = resolveVisibility('example', {}, s, { window: true, queryOffsets: true, nonCausal: true });
 * visibilityTensor(s, vis).print();  // [[[true, true, false], [true, true, true]]]: bottom-right causal
 * ```
 */
export function visibilityTensor(s: AttentionSizes, vis: Visibility, layout?: tf.Tensor2D): tf.Tensor3D {
  const { B, Tq, Tk } = s;
  const j = tf.range(0, Tk, 1, 'int32').reshape([1, 1, Tk]);
  const offsets = vis.queryOffsets ?? tf.fill([B], Tk - Tq, 'int32');
  // p_i = off_b + i, [B, Tq, 1]
  const p = tf.add(offsets.reshape([B, 1, 1]), tf.range(0, Tq, 1, 'int32').reshape([1, Tq, 1]));
  const conditions: tf.Tensor[] = [];
  if (vis.causal) conditions.push(tf.lessEqual(j, p));
  if (vis.window !== null) {
    conditions.push(tf.greater(j, tf.sub(p, vis.window)));
    if (!vis.causal) conditions.push(tf.less(j, tf.add(p, vis.window)));
  }
  if (vis.kvLengths) conditions.push(tf.less(j, vis.kvLengths.reshape([B, 1, 1])));
  if (vis.segments) conditions.push(tf.equal(vis.segments.query.reshape([B, Tq, 1]), vis.segments.key.reshape([B, 1, Tk])));
  if (vis.mask) conditions.push(tf.notEqual(vis.mask, 0));
  if (layout) conditions.push(layout.reshape([1, Tq, Tk]));
  return conditions.reduce((all, c) => tf.logicalAnd(all, c), tf.ones([B, Tq, Tk], 'bool')) as tf.Tensor3D;
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
  /** `[B, Hkv, G·Tq, Tk]` bool, the visibility repeated for the G query heads of a kv head. */
  visible: tf.Tensor4D;
  /** `[B, Hkv, G·Tq, 1]`: 1 for a row that sees at least one key, 0 for one that sees none. */
  rowSees: tf.Tensor4D;
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
 * Prepares q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]` under the `[B, Tq, Tk]` bool visibility
 * `visible` (see {@link visibilityTensor}), as {@link MaskedInputs} describes. Call inside a
 * `tf.tidy`.
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
 * const q = tf.randomNormal([1, 3, 2, 4]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 3, 1, 4]) as tf.Tensor4D;
 * const vis = resolveVisibility('example', {}, s, { window: true, queryOffsets: true, nonCausal: true });
 * maskedInputs(q, kv, kv, s, visibilityTensor(s, vis)).q.shape;  // [1, 1, 6, 4]
 * ```
 */
export function maskedInputs(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, visible: tf.Tensor3D,
): MaskedInputs {
  const { B, Tq, Tk, Hkv } = s;
  const G = s.H / Hkv;
  // [B, Tq, Tk] → [B, Hkv, G·Tq, Tk], rows ordered as groupedQueries orders them (rank 4 at most)
  const perGroup = tf.tile(tf.cast(visible, 'float32').reshape([B, 1, Tq, Tk]), [1, G, 1, 1]).reshape([B, 1, G * Tq, Tk]);
  const tiled = tf.tile(perGroup, [1, Hkv, 1, 1]) as tf.Tensor4D;
  const rowSees = tf.max(tiled, -1, true) as tf.Tensor4D;
  const $q = finitePart(q);
  const $k = finitePart(k);
  const $v = finitePart(v);
  // non-finite entries of each kv token [B, Hkv, Tk, 1], summed over the rows that see it
  const perKey = tf.sum(tf.add($k.bad, $v.bad), -1, true).transpose([0, 2, 1, 3]);
  const seen = tf.matMul(tiled, perKey);
  // a row that sees no key outputs 0 whatever its query
  const perQuery = tf.mul(groupedQueries(tf.sum($q.bad, -1, true) as tf.Tensor4D, Hkv), rowSees);
  return {
    q: groupedQueries($q.finite, Hkv),
    k: $k.finite.transpose([0, 2, 1, 3]),
    v: $v.finite.transpose([0, 2, 1, 3]),
    visible: tf.cast(tiled, 'bool') as tf.Tensor4D,
    rowSees,
    poison: poisonWhere(tf.add(seen, perQuery) as tf.Tensor4D),
  };
}

/**
 * The dropout multipliers of `dropoutMask` (`[B, H, Tq, Tk]`, 0 or 1/(1 − p)) in the grouped
 * layout of {@link MaskedInputs}' weights, `[B, Hkv, G·Tq, Tk]`. Call inside a `tf.tidy`.
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
 * groupedDropout({ rate: 0.5, seed: 1 }, s).shape;  // [1, 1, 6, 3]
 * ```
 */
export function groupedDropout(d: Dropout, s: AttentionSizes): tf.Tensor4D {
  // query head h = c·G + g: [B, H, Tq, Tk] is already [B, Hkv, G·Tq, Tk] row by row
  return dropoutMask(d, s).reshape([s.B, s.Hkv, (s.H / s.Hkv) * s.Tq, s.Tk]);
}

/**
 * Softmax attention in tfjs ops under a visibility, differentiable by tfjs: the ground truth
 * for FlashStyleTiledAttention and BlockSparse. q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`,
 * `visible` `[B, Tq, Tk]` bool → `[B, Tq, H, K]`; materialises the `[B, Hkv, G·Tq, Tk]`
 * scores. Invisible scores are replaced (a select) by a large negative number rather than −∞,
 * so that a row with no visible key stays finite; such rows output 0, with gradients 0. A NaN
 * or infinity reaches only the rows that see it, which output NaN (see {@link maskedInputs}).
 * With `dropout`, the normalised weights are multiplied by {@link groupedDropout}'s mask.
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
 * const q = tf.randomNormal([1, 3, 2, 4]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 3, 1, 4]) as tf.Tensor4D;
 * const vis = resolveVisibility('example', { window: 2 }, s, { window: true, queryOffsets: true, nonCausal: true });
 * maskedSoftmaxAttention(q, kv, kv, s, 0.5, visibilityTensor(s, vis)).shape;  // [1, 3, 2, 4]
 * ```
 */
export function maskedSoftmaxAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, scale: number, visible: tf.Tensor3D,
  dropout: Dropout | null = null,
): tf.Tensor4D {
  return tf.tidy(() => {
    const m = maskedInputs(q, k, v, s, visible);
    const scores = tf.mul(tf.matMul(m.q, m.k, false, true), scale);
    const normalised = tf.softmax(tf.where(m.visible, scores, tf.fill(scores.shape, -1e30)));
    const weights = dropout ? tf.mul(normalised, groupedDropout(dropout, s)) : normalised;
    // o is finite here, so the 0 of a row without keys is exact, and so is its gradient
    const o = tf.mul(tf.matMul(weights, m.v), m.rowSees);
    return ungroupedQueries(tf.add(o, m.poison) as tf.Tensor4D, s.H);
  });
}
