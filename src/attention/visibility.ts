import * as tf from '@tensorflow/tfjs';
import { argumentError, checkBoolean, checkPositiveInteger, describe, formatShape, optionNames } from '../validate.js';
import type { AttentionSizes } from './validate.js';

/**
 * Which keys each query sees, shared by the attention ops (`flashAttention`,
 * `expressiveAttention`, `blockSparseAttention`). Query i of batch row b sits at position
 * `p_i = off_b + i`, with `off_b = queryOffsets[b]` when given, else `Tk − Tq` (bottom-right
 * alignment). Key j is visible to query i when every condition given holds:
 *
 * ```
 * causal        j ≤ p_i
 * window w      j > p_i − w            (and j < p_i + w when causal is false)
 * kvLengths L   j < L[b]
 * segmentIds    segQ[b, i] == segK[b, j]
 * mask M        M[b, i, j] != 0        (M broadcast from [B|1, Tq|1, Tk])
 * ```
 *
 * A row with no visible key outputs 0, with gradients 0; an invisible key or value never
 * reaches an output, whatever its value.
 *
 * Causal with a window of 2, Tq = Tk = 4 (x visible):
 * ```
 *          j=0 1 2 3
 *   i = 0    x . . .
 *   i = 1    x x . .
 *   i = 2    . x x .
 *   i = 3    . . x x
 * ```
 */
export interface VisibilityOptions {
  /** Key j is visible to query i only if j ≤ p_i. Default `true`. */
  causal?: boolean;
  /**
   * Sliding window of w keys: j > p_i − w (the diagonal included), and also j < p_i + w when
   * `causal` is false. A positive integer. Default: no window.
   */
  window?: number;
  /**
   * Right-padded keys or a ragged KV cache: row b sees keys `j < kvLengths[b]` only. `[B]`
   * int32 tensor or `number[]`, each in 0..Tk. Default: every key.
   */
  kvLengths?: tf.Tensor1D | number[];
  /**
   * Position of row b's first query, each ≥ 0: query i of row b sits at `queryOffsets[b] + i`.
   * `[B]` int32 tensor or `number[]`. Default `Tk − Tq` for every row (bottom-right aligned).
   */
  queryOffsets?: tf.Tensor1D | number[];
  /**
   * Packed sequences: query i sees key j only within its segment, `segQ[b, i] == segK[b, j]`.
   * A `[B, T]` int32 tensor serves both sides when Tq == Tk; otherwise `{ query: [B, Tq],
   * key: [B, Tk] }`.
   */
  segmentIds?: tf.Tensor2D | { query: tf.Tensor2D; key: tf.Tensor2D };
  /**
   * Keras's `attention_mask`: key j is visible to query i where `mask[b, i, j]` is non-zero.
   * Bool, int32 or float32, of shape `[B|1, Tq|1, Tk]` (`[B, 1, Tk]` is a key padding mask).
   */
  mask?: tf.Tensor;
}

/** The names of {@link VisibilityOptions}, for option-name checks. */
export const VISIBILITY_OPTIONS = optionNames<VisibilityOptions>({
  causal: true, window: true, kvLengths: true, queryOffsets: true, segmentIds: true, mask: true,
});

/**
 * {@link VisibilityOptions} checked against the sizes of one call, with every tensor in the
 * form the references and kernels read: int32 `[B]` lengths and offsets, int32 segment ids on
 * both sides, and the mask as int32 0/1 (1 visible), still `[B|1, Tq|1, Tk]`. Absent
 * conditions are `null`. Tensors that {@link resolveVisibility} created are listed in `owned`:
 * dispose them once the call is recorded (`tf.dispose(vis.owned)`).
 */
export interface Visibility {
  causal: boolean;
  /** w, or `null` for no window. */
  window: number | null;
  /** `[B]` int32, or `null` (every key). */
  kvLengths: tf.Tensor1D | null;
  /** `[B]` int32, or `null` (Tk − Tq for every row). */
  queryOffsets: tf.Tensor1D | null;
  /** int32 `[B, Tq]` and `[B, Tk]`, or `null`. */
  segments: { query: tf.Tensor2D; key: tf.Tensor2D } | null;
  /** int32 0/1 `[B|1, Tq|1, Tk]`, or `null`. */
  mask: tf.Tensor3D | null;
  /** The tensors made here (from `number[]`, or a mask cast to 0/1), which the caller disposes. */
  owned: tf.Tensor[];
}

/** `[B]` int32 from a tensor or `number[]`, each value checked in `[min, max]` where it can be read. */
function perRow(
  op: string, name: string, value: tf.Tensor1D | number[], B: number, min: number, max: number, owned: tf.Tensor[],
): tf.Tensor1D {
  const range = max === Infinity ? `≥ ${min}` : `in ${min}..${max}`;
  if (Array.isArray(value)) {
    if (value.length !== B || !value.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max)) {
      throw argumentError(op, `option '${name}' must hold B = ${B} integers ${range}; received ${describe(value)}.`);
    }
    const t = tf.tensor1d(value, 'int32');
    owned.push(t);
    return t;
  }
  if (!(value instanceof tf.Tensor) || value.dtype !== 'int32' || value.rank !== 1 || value.shape[0] !== B) {
    throw argumentError(op, `option '${name}' must be an int32 tensor [B] = [${B}] or number[], each ${range}; received ${describe(value)}.`);
  }
  return value as tf.Tensor1D;
}

function segmentTensor(op: string, name: string, value: unknown, B: number, T: number, side: string): tf.Tensor2D {
  if (!(value instanceof tf.Tensor) || value.dtype !== 'int32' || value.rank !== 2 || value.shape[0] !== B || value.shape[1] !== T) {
    throw argumentError(op, `option '${name}' must be an int32 tensor [B, ${side}] = ${formatShape([B, T])}; received ${describe(value)}.`);
  }
  return value as tf.Tensor2D;
}

/**
 * Checks the visibility options of one attention call and resolves them (see
 * {@link Visibility}). `allowed` lists the options this op takes beyond `causal` (BlockSparse
 * takes neither `window` nor `queryOffsets`, and only `causal: true`); any other given option
 * is an error naming it.
 */
export function resolveVisibility(
  op: string, options: VisibilityOptions, s: AttentionSizes,
  allowed: { window: boolean; queryOffsets: boolean; nonCausal: boolean },
): Visibility {
  const causal = checkBoolean(op, 'causal', options.causal, true);
  if (!causal && !allowed.nonCausal) {
    throw argumentError(op, `option 'causal' must be true (or omitted): its layout is causal by definition; received false.`);
  }
  for (const name of ['window', 'queryOffsets'] as const) {
    if (options[name] !== undefined && !allowed[name]) throw argumentError(op, `takes no option '${name}'.`);
  }
  const owned: tf.Tensor[] = [];
  try {
    const window = options.window === undefined ? null : checkPositiveInteger(op, 'window', options.window, 'option');
    const kvLengths = options.kvLengths === undefined ? null : perRow(op, 'kvLengths', options.kvLengths, s.B, 0, s.Tk, owned);
    const queryOffsets = options.queryOffsets === undefined
      ? null : perRow(op, 'queryOffsets', options.queryOffsets, s.B, 0, Infinity, owned);

    let segments: Visibility['segments'] = null;
    const ids = options.segmentIds;
    if (ids !== undefined) {
      if (ids instanceof tf.Tensor) {
        if (s.Tq !== s.Tk) {
          throw argumentError(op, `option 'segmentIds' must be { query: [B, Tq], key: [B, Tk] } when Tq = ${s.Tq} ≠ ` +
            `Tk = ${s.Tk}; received ${describe(ids)}.`);
        }
        const t = segmentTensor(op, 'segmentIds', ids, s.B, s.Tq, 'T');
        segments = { query: t, key: t };
      } else if (ids !== null && typeof ids === 'object' && !Array.isArray(ids)) {
        segments = {
          query: segmentTensor(op, 'segmentIds.query', ids.query, s.B, s.Tq, 'Tq'),
          key: segmentTensor(op, 'segmentIds.key', ids.key, s.B, s.Tk, 'Tk'),
        };
      } else {
        throw argumentError(op, `option 'segmentIds' must be an int32 tensor [B, T] or { query, key }; received ${describe(ids)}.`);
      }
    }

    let mask: tf.Tensor3D | null = null;
    const m = options.mask;
    if (m !== undefined) {
      const shapeOk = m instanceof tf.Tensor && m.rank === 3 && (m.shape[0] === s.B || m.shape[0] === 1) &&
        (m.shape[1] === s.Tq || m.shape[1] === 1) && m.shape[2] === s.Tk;
      if (!shapeOk || !['bool', 'int32', 'float32'].includes((m as tf.Tensor).dtype)) {
        throw argumentError(op, `option 'mask' must be a bool, int32 or float32 tensor [B|1, Tq|1, Tk] = ` +
          `[${s.B}|1, ${s.Tq}|1, ${s.Tk}]; received ${describe(m)}.`);
      }
      mask = tf.tidy(() => tf.cast(tf.notEqual(m as tf.Tensor, 0), 'int32')) as tf.Tensor3D;
      owned.push(mask);
    }
    return { causal, window, kvLengths, queryOffsets, segments, mask, owned };
  } catch (error) {
    // what was made before the bad option would otherwise leak
    tf.dispose(owned);
    throw error;
  }
}

/**
 * The inputs a kernel call takes for `vis`, beside q, k and v: only the conditions given, under
 * these names (`tf.engine().runKernel(name, {q, k, v, ...visibilityInputs(vis)}, attrs)`).
 */
export function visibilityInputs(vis: Visibility): Record<string, tf.Tensor> {
  const inputs: Record<string, tf.Tensor> = {};
  if (vis.kvLengths) inputs.kvLengths = vis.kvLengths;
  if (vis.queryOffsets) inputs.queryOffsets = vis.queryOffsets;
  if (vis.segments) {
    inputs.segmentsQuery = vis.segments.query;
    inputs.segmentsKey = vis.segments.key;
  }
  if (vis.mask) inputs.mask = vis.mask;
  return inputs;
}

/** The attributes a kernel call takes for `vis`: `causal`, and `window` (0 for none). */
export function visibilityAttrs(vis: Visibility): { causal: boolean; window: number } {
  return { causal: vis.causal, window: vis.window ?? 0 };
}

/**
 * Runs an attention forward kernel under `vis` and returns o `[B, Tq, H, K]`. The kernel's
 * other outputs (the row statistics, and the packed visibility when `vis` has int inputs) are
 * what its gradient saved; the tape keeps its own references to them, so they are freed here.
 */
export function runAttentionKernel(
  kernelName: string, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, vis: Visibility, attrs: tf.NamedAttrMap,
): tf.Tensor4D {
  const [o, statistic] = runAttentionKernelWithStatistic(kernelName, q, k, v, vis, attrs);
  statistic.dispose();
  return o;
}

/**
 * {@link runAttentionKernel}, returning beside o the kernel's per-row statistic `[B, H, Tq]` (the
 * softmax's log-sum-exp, ExpressiveAttention's denominator), which no gradient reaches.
 */
export function runAttentionKernelWithStatistic(
  kernelName: string, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, vis: Visibility, attrs: tf.NamedAttrMap,
): [tf.Tensor4D, tf.Tensor3D] {
  const [o, statistic, ...saved] = tf.engine().runKernel(
    kernelName, { q, k, v, ...visibilityInputs(vis) }, { ...visibilityAttrs(vis), ...attrs },
  ) as tf.Tensor[];
  tf.dispose(saved);
  return [o as tf.Tensor4D, statistic as tf.Tensor3D];
}
