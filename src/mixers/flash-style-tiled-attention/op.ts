import * as tf from '@tensorflow/tfjs';
import { checkAttention, checkScale } from '../../attention/validate.js';
import {
  VISIBILITY_OPTIONS, resolveVisibility, runAttentionKernel, type VisibilityOptions,
} from '../../attention/visibility.js';
import { DROPOUT_OPTIONS, dropoutAttrs, resolveDropout, type DropoutOptions } from '../../attention/dropout.js';
import { SPLIT_OPTIONS, resolveSplit, type SplitOptions } from '../../attention/split.js';
import { KEY_LIST_INPUT } from '../../attention/kernel-inputs.js';
import {
  checkOptionNames, differentiableZeros, optionNames, useKernel, type Implementation,
} from '../../validate.js';
import { flashAttentionReference } from './reference.js';
import { FLASH_ATTENTION } from './kernel.js';

/**
 * Options of `ops.flashAttention`: which keys each query sees ({@link VisibilityOptions}:
 * `causal`, `window`, `kvLengths`, `queryOffsets`, `segmentIds`, `mask`; by default causal,
 * bottom-right aligned when Tq ≠ Tk), attention dropout ({@link DropoutOptions}: `dropout`,
 * `seed`), the kernel's decode path ({@link SplitOptions}: `split`), and the attention's own options.
 */
export interface FlashAttentionOptions extends VisibilityOptions, DropoutOptions, SplitOptions {
  /** Multiplies q·k before the softmax. Default `1/√K`. */
  scale?: number;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const OPTIONS = [
  ...VISIBILITY_OPTIONS,
  ...DROPOUT_OPTIONS,
  ...optionNames<Omit<FlashAttentionOptions, keyof VisibilityOptions | keyof DropoutOptions | keyof SplitOptions | 'implementation'>>({ scale: true }),
  ...SPLIT_OPTIONS,
  'implementation',
];

/**
 * Exact softmax attention, `o_i = Σ_j softmax_j(scale·q_i·k_j)·v_j` over the visible keys,
 * computed by the WGSL kernel in tiles with an online softmax (FlashAttention-2), so the
 * `[Tq, Tk]` score matrix never exists in memory. Query head h reads key/value head
 * ⌊h·Hkv/H⌋ (grouped-query attention; Hkv = 1 is multi-query). Key j is visible to query i
 * when every visibility option given holds (see {@link VisibilityOptions}); a query with no
 * visible key outputs 0, with gradients 0, and an invisible key or value never reaches an
 * output, whatever its value; a query row that sees a NaN or ±∞ (in its query or a visible
 * key or value) outputs NaN, on every implementation. With `dropout` p > 0, each normalised
 * weight is kept with probability 1 − p (a pure function of `seed`, b, h, i, j) and scaled by
 * 1/(1 − p).
 *
 * Causal mask for Tq = 2, Tk = 4 (bottom-right aligned; x visible):
 * ```
 *          j=0 1 2 3
 *   i = 0    x x x .
 *   i = 1    x x x x
 * ```
 *
 * @param q `[B, Tq, H, K]` float32. B, Tq and Tk may be 0: with Tk = 0 (an empty KV cache) every row
 *   sees no key and outputs 0, with gradients 0.
 * @param k `[B, Tk, Hkv, K]` float32, H a multiple of Hkv, K ≤ 256.
 * @param v `[B, Tk, Hkv, K]` float32.
 * @returns `[B, Tq, H, K]`.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([1, 128, 4, 64]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 128, 2, 64]) as tf.Tensor4D;
 * const o = ops.flashAttention(q, kv, kv, { causal: true });   // [1, 128, 4, 64]
 * // two right-padded rows of 100 and 128 keys, each query seeing its 32 most recent keys
 * const q2 = tf.randomNormal([2, 128, 4, 64]) as tf.Tensor4D;
 * const kv2 = tf.randomNormal([2, 128, 2, 64]) as tf.Tensor4D;
 * const o2 = ops.flashAttention(q2, kv2, kv2, { kvLengths: [100, 128], window: 32 });
 * // training: drop a tenth of the weights, a fresh seed per step
 * const dropped = ops.flashAttention(q, kv, kv, { dropout: 0.1, seed: 42 });
 * ```
 */
export function flashAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: FlashAttentionOptions = {},
): tf.Tensor4D {
  const op = 'flashAttention';
  checkOptionNames(op, options, OPTIONS);
  const s = checkAttention(op, q, k, v);
  const vis = resolveVisibility(op, options, s, { window: true, queryOffsets: true, nonCausal: true });
  try {
    const scale = checkScale(op, options.scale, s.K);
    const split = resolveSplit(op, options);
    const dropout = resolveDropout(op, options);
    const kernel = useKernel(op, options.implementation);
    // an empty KV cache: no query sees a key, so every row outputs 0
    if (s.B * s.Tq === 0 || s.Tk === 0) return differentiableZeros([s.B, s.Tq, s.H, s.K], [q, k, v]);
    if (kernel) {
      return runAttentionKernel(FLASH_ATTENTION, q, k, v, vis, { scale, split, ...dropoutAttrs(dropout) });
    }
    return flashAttentionReference(q, k, v, s, vis, scale, dropout);
  } finally {
    // the tape, like the kernel, keeps its own copies of what it saved
    tf.dispose(vis.owned);
  }
}

/**
 * Softmax attention of one query a batch row over the keys a key list names, on the kernels'
 * split-K decode, which reads each listed key where it lies in the cache, where a gather would
 * first copy them all (BlockSparse's decode step, whose keys are its layout's blocks). Webgpu
 * only, with no gradient: elsewhere, gather the keys and call {@link flashAttention}.
 *
 * @param q `[B, 1, H, K]` float32, at the default scale 1/√K.
 * @param keys `[B, S, Hkv, K]` float32, a cache; `values` likewise.
 * @param listed int32 `[B + B·M]`: each row's count of keys, then each row's M keys as rows of
 *   the cache's B·S, zeros past the count (`KEY_LIST_INPUT`, src/attention/kernel-inputs.ts).
 * @returns `[B, 1, H, K]`.
 *
 * @example
 * ```ts
 * // row 0 attends to its keys 0 and 2, row 1 to its key 1 (row 1·4 + 1 of the cache)
 * const cache = tf.randomNormal([2, 4, 1, 8]) as tf.Tensor4D;
 * const listed = tf.tensor1d([2, 1, 0, 2, 5, 0], 'int32');
 * flashAttentionOverList(tf.ones([2, 1, 2, 8]) as tf.Tensor4D, cache, cache, listed); // [2, 1, 2, 8]
 * ```
 */
export function flashAttentionOverList(
  q: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, listed: tf.Tensor1D,
): tf.Tensor4D {
  const scale = checkScale('flashAttention', undefined, q.shape[3]);
  const [o, ...saved] = tf.engine().runKernel(FLASH_ATTENTION, { q, k: keys, v: values, [KEY_LIST_INPUT]: listed },
    { scale, causal: false, split: 'always' }) as tf.Tensor[];
  tf.dispose(saved);
  return o as tf.Tensor4D;
}
