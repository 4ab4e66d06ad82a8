import * as tf from '@tensorflow/tfjs';
import { checkAttention, checkScale } from '../../attention/validate.js';
import { resolveVisibility, runAttentionKernel, type VisibilityOptions } from '../../attention/visibility.js';
import { dropoutAttrs, resolveDropout, type DropoutOptions } from '../../attention/dropout.js';
import {
  argumentError, checkBoolean, checkOptionNames, differentiableZeros, optionNames, useKernel, type Implementation,
} from '../../validate.js';
import { resolveLayout, type BlockSparseLayout } from './layout.js';
import { blockSparseAttentionReference } from './reference.js';
import { BLOCK_SPARSE_ATTENTION } from './kernel.js';

/**
 * Options of `ops.blockSparseAttention`: the layout, each field defaulting to `DEFAULT_LAYOUT`
 * (`blockSize` 64, `localBlocks` 4, `globalBlocks` 1, `stride` 0: a window of 256 tokens
 * and a 64-token sink), the visibility options that combine with it (`kvLengths`,
 * `segmentIds`, `mask`: see {@link VisibilityOptions}), attention dropout ({@link DropoutOptions}:
 * `dropout`, `seed`), and the attention's own options.
 */
export interface BlockSparseAttentionOptions
  extends Partial<BlockSparseLayout>, Pick<VisibilityOptions, 'kvLengths' | 'segmentIds' | 'mask'>, DropoutOptions {
  /**
   * Must be `true` (the default) or omitted: the layout is causal by definition (key block
   * J ≤ query block I, key j ≤ query i). For bidirectional attention use `flashAttention`.
   */
  causal?: boolean;
  /** Multiplies q·k before the softmax. Default `1/√K`. */
  scale?: number;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const OPTIONS = optionNames<BlockSparseAttentionOptions>({
  blockSize: true, localBlocks: true, globalBlocks: true, stride: true, causal: true, kvLengths: true, segmentIds: true,
  mask: true, dropout: true, seed: true, scale: true, implementation: true,
});

/**
 * Exact softmax attention restricted to a causal block-sparse layout (Sparse Transformer,
 * BigBird, Longformer; see the {@link "block-sparse" | BlockSparse guide}): `o_i = Σ_{j ∈ M(i)} softmax_j(scale·q_i·k_j)·v_j`, the
 * softmax taken once over the union of the keys visible to row i. The sequence is cut into
 * blocks of `blockSize` tokens (the last may be partial); query block I sees key block J ≤ I
 * when `I − J < localBlocks`, `J < globalBlocks`, or `stride > 0` and `(I − J) mod stride == 0`;
 * key j is visible to query i when its blocks are active and j ≤ i. With
 * `localBlocks ≥ ⌈T / blockSize⌉` this is causal `flashAttention`. The WGSL kernel visits only
 * the active blocks (listed once per (T, layout) as CSR and cached), so its time grows with
 * their number, not with T². Query head h reads key/value head ⌊h·Hkv/H⌋. `kvLengths`,
 * `segmentIds` and `mask` further restrict M(i) (and-ed with the layout); a query with no
 * visible key outputs 0, with gradients 0, and an invisible key or value never reaches an
 * output, whatever its value; a query row that sees a NaN or ±∞ (in its query or a visible
 * key or value) outputs NaN, on every implementation. With `dropout` p > 0, each normalised
 * weight is kept with probability 1 − p (a pure function of `seed`, b, h, i, j) and scaled by
 * 1/(1 − p).
 *
 * The layout `{ blockSize: 4, localBlocks: 2, globalBlocks: 1, stride: 3 }` over T = 30
 * (drawn by `drawBlockSparseLayout`; L local, G global, S strided, rows query blocks I,
 * columns key blocks J):
 * ```
 * T = 30, blockSize 4: 8 blocks, the last partial (2 tokens)
 * localBlocks 2, globalBlocks 1, stride 3: 26 of 36 causal blocks active
 *     J 0 1 2 3 4 5 6 7
 * I  0  L . . . . . . .
 * I  1  L L . . . . . .
 * I  2  G L L . . . . .
 * I  3  G . L L . . . .
 * I  4  G S . L L . . .
 * I  5  G . S . L L . .
 * I  6  G . . S . L L .
 * I  7  G S . . S . L L
 * ```
 *
 * @param q `[B, T, H, K]` float32; B or T may be 0 (the output is then empty).
 * @param k `[B, T, Hkv, K]` float32, the same T (self-attention), H a multiple of Hkv, K ≤ 256.
 * @param v `[B, T, Hkv, K]` float32.
 * @returns `[B, T, H, K]`.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([1, 1024, 4, 64]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 1024, 2, 64]) as tf.Tensor4D;
 * // 64-token blocks: a 3-block window, the first block global, every 4th block back
 * const o = ops.blockSparseAttention(q, kv, kv, { blockSize: 64, localBlocks: 3, globalBlocks: 1, stride: 4 });
 * // the same layout, over a row right-padded after its 900th token
 * const padded = ops.blockSparseAttention(q, kv, kv, { blockSize: 64, localBlocks: 3, kvLengths: [900] });
 * ```
 */
export function blockSparseAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: BlockSparseAttentionOptions = {},
): tf.Tensor4D {
  const op = 'blockSparseAttention';
  checkOptionNames(op, options, OPTIONS);
  const s = checkAttention(op, q, k, v);
  if (s.Tq !== s.Tk) {
    throw argumentError(op, `block-sparse attention is self-attention: 'q' and 'k' must have the same length T; ` +
      `received Tq = ${s.Tq} and Tk = ${s.Tk}. To decode one token over a cache, gather the keys visibleKeys(t, layout) ` +
      `returns and use flashAttention, as the BlockSparse layer's step does (or pass the layout as a mask).`);
  }
  if (!checkBoolean(op, 'causal', options.causal, true)) {
    throw argumentError(op, `option 'causal' must be true or omitted: the layout is causal by definition ` +
      `(key block J ≤ query block I, key j ≤ query i); received false. For bidirectional attention use flashAttention with causal: false.`);
  }
  const layout = resolveLayout(op, options);
  const vis = resolveVisibility(op, options, s, { window: false, queryOffsets: false, nonCausal: false });
  try {
    const scale = checkScale(op, options.scale, s.K);
    const dropout = resolveDropout(op, options);
    const kernel = useKernel(op, options.implementation);
    if (s.B * s.Tq === 0) return differentiableZeros([s.B, s.Tq, s.H, s.K], [q, k, v]);
    if (kernel) {
      return runAttentionKernel(BLOCK_SPARSE_ATTENTION, q, k, v, vis, { ...layout, scale, ...dropoutAttrs(dropout) });
    }
    return blockSparseAttentionReference(q, k, v, s, layout, vis, scale, dropout);
  } finally {
    // the tape, like the kernel, keeps its own copies of what it saved
    tf.dispose(vis.owned);
  }
}
