import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import gridHelpers from '../../kernels/common/grid.wgsl';
import sumPartsBody from '../../kernels/common/sum-parts.wgsl';
import { MAX_WORKGROUPS_PER_DIM, grid1d, laneVariants, lanesFor, runKernel } from '../webgpu/runtime.js';
import { onSwiftShader } from '../webgpu/internals.js';
import { rowsPerTile } from './kernel-source.js';

/**
 * The tfjs flag that sets how many chunks a tiled attention pass cuts the other side into (the
 * keys in the forward and dQ, the queries in dK/dV): 'auto' (the default, {@link tiledSplits}),
 * or a count n ≥ 1 on every adapter, the chunks then holding ⌈rows / n⌉ rows rounded up to whole
 * tiles (so a pass may take fewer than n).
 */
export const ATTENTION_SPLITS_FLAG = 'MIXERS_ATTENTION_SPLITS';
tf.env().registerFlag(ATTENTION_SPLITS_FLAG, () => 'auto');

/**
 * Workgroups a tiled pass aims for on a GPU. An H200 holds about 6 of the forward's workgroups
 * (64 invocations of some 160 registers each) on each of its 132 SMs, so 792 at once; a causal
 * launch leaves about half of its chunks empty, and more workgroups than slots also even out the
 * tiles' unequal work. The H200's sweep of the forward (bench/results/profiles/h200-splits-profile.txt)
 * put its best at 15 chunks at T = 4096 (256 workgroups unsplit: 0.91 ms, against 0.93 at 8) and
 * at 8–32 at T = 16384 (1024 unsplit: 11.9–12.6 ms at 4–32, 13.6 at 2); 4096 takes 15 and 4.
 */
const FILL_WORKGROUPS = 4096;
/** On a GPU, chunks of at least this many tiles: each chunk adds a partial row to combine. */
const MIN_CHUNK_TILES = 4;

/** How a tiled pass cuts the other side: `splits` chunks of `chunk` rows (the last may hold fewer). */
export interface TileSplit {
  chunk: number;
  splits: number;
}

/**
 * How a tiled pass of `tiles` tiles per (head, batch row) and `workgroups` workgroups in all
 * cuts its other side of `other` rows, at head dimension K; null for a single chunk. A launch
 * with fewer workgroups than a GPU holds leaves most of it idle: at B = 1, H = 4 and T = 4096 the
 * forward has 256 workgroups of 64 rows, and its causal tiles' work ranges from one key tile to
 * 147. Cutting the keys (the queries of dK/dV) into chunks gives each tile several workgroups and
 * bounds each one's work, for a second launch that combines their partial results: the split-K
 * decode's merge for the forward, a sum for the gradients. On SwiftShader, which runs workgroups
 * on a few CPU threads, 'auto' keeps one chunk. {@link ATTENTION_SPLITS_FLAG} overrides the choice.
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * tiledSplits(backend, 4096, 64, 256, 64);  // on a GPU: { chunk: 280, splits: 15 }
 * ```
 */
export function tiledSplits(backend: WebGPUBackend, other: number, tiles: number, workgroups: number, K: number): TileSplit | null {
  const BC = rowsPerTile(K);
  const chosen = tf.env().get(ATTENTION_SPLITS_FLAG);
  let wanted: number;
  let minChunk = BC;
  if (chosen === 'auto') {
    if (onSwiftShader(backend)) return null;
    wanted = Math.ceil(FILL_WORKGROUPS / workgroups);
    minChunk = MIN_CHUNK_TILES * BC;
  } else if (typeof chosen === 'number' && Number.isInteger(chosen) && chosen >= 1) {
    wanted = chosen;
  } else {
    throw new Error(`tfjs-mixers: flag ${ATTENTION_SPLITS_FLAG} must be 'auto' or a whole number ≥ 1; received ${JSON.stringify(chosen)}.`);
  }
  // workgroup x = tile·splits + chunk stays within WebGPU's 65535 per dimension
  wanted = Math.min(wanted, Math.floor(MAX_WORKGROUPS_PER_DIM / tiles));
  const chunk = Math.max(minChunk, BC * Math.ceil(other / (wanted * BC)));
  const splits = Math.ceil(other / chunk);
  return splits > 1 ? { chunk, splits } : null;
}

const SUM_WG = 64;
const SUM_PARTS = laneVariants('AttentionSumParts', [gridHelpers, sumPartsBody]);

/**
 * Sums a split gradient pass's parts `[..., rows, splits, K]` (`kernels/common/sum-parts.wgsl`)
 * into a new tensor of `shape` (`[..., rows, K]`), in one launch; the caller frees `parts`.
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * const parts = tf.ones([1, 2, 1, 3, 8]);                  // [B, Tq, H, splits, K]: 3 parts a row
 * const dq = sumParts(backend, parts, [1, 2, 1, 8], 3);    // [B, Tq, H, K], every value 3
 * tf.engine().makeTensorFromTensorInfo(dq).print();        // [[[[3, 3, 3, 3, 3, 3, 3, 3]], [[3, 3, 3, 3, 3, 3, 3, 3]]]]
 * ```
 */
export function sumParts(backend: WebGPUBackend, parts: tf.TensorInfo, shape: number[], splits: number): tf.TensorInfo {
  const K = shape[shape.length - 1]!;
  const lanes = lanesFor(K);
  const n = tf.util.sizeFromShape(shape) / lanes;
  return runKernel(backend, SUM_PARTS[lanes], {
    inputs: [parts],
    outputs: [shape],
    params: [{ u32: n }, { u32: splits }, { u32: K / lanes }],
    constants: { WG: SUM_WG },
    workgroups: grid1d(n, SUM_WG),
  })[0]!;
}
