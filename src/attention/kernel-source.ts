import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import lanes1 from '../../kernels/common/lanes-1.wgsl';
import lanes4 from '../../kernels/common/lanes-4.wgsl';
import grid from '../../kernels/common/grid.wgsl';
import attentionHelpers from '../../kernels/common/attention.wgsl';
import floatBits from '../../kernels/common/float-bits.wgsl';
import visHeader from '../../kernels/common/vis-header.wgsl';
import visibilityHelpers from '../../kernels/common/visibility.wgsl';
import dropoutHelpers from '../../kernels/common/dropout.wgsl';
import rowRegisters from '../../kernels/common/row-registers.wgsl';
import kvTileHelpers from '../../kernels/common/kv-tile.wgsl';
import keyQuads from '../../kernels/common/key-quads.wgsl';
import valueRows from '../../kernels/common/value-rows.wgsl';
import valueQuads from '../../kernels/common/value-quads.wgsl';
import dqDpRows from '../../kernels/common/dq-dp-rows.wgsl';
import dqDpBlocks from '../../kernels/common/dq-dp-blocks.wgsl';
import quadScores from '../../kernels/common/quad-scores.wgsl';
import attendTileHelper from '../../kernels/common/attend-tile.wgsl';
import queryTileHelpers from '../../kernels/common/query-tile.wgsl';
import forwardBindings from '../../kernels/common/forward-bindings.wgsl';
import forwardBody from '../../kernels/common/attention-forward.wgsl';
import forwardBlocksBody from '../../kernels/common/attention-forward-blocks.wgsl';
import scoreBlocks from '../../kernels/common/score-blocks.wgsl';
import queryBlocks from '../../kernels/common/query-blocks.wgsl';
import rowWhole from '../../kernels/common/row-whole.wgsl';
import tiledMain from '../../kernels/common/tiled-main.wgsl';
import tiledMainQuarters from '../../kernels/common/tiled-main-quarters.wgsl';
import rowQuarters from '../../kernels/common/row-quarters.wgsl';
import subgroupRank from '../../kernels/common/subgroup-rank.wgsl';
import cacheTile from '../../kernels/common/cache-tile.wgsl';
import splitChunk from '../../kernels/common/split-chunk.wgsl';
import splitBody from '../../kernels/common/attention-split.wgsl';
import splitSubgroupsBody from '../../kernels/common/attention-split-subgroups.wgsl';
import splitWorkgroupBody from '../../kernels/common/attention-split-workgroup.wgsl';
import splitWorkgroupMain from '../../kernels/common/split-workgroup-main.wgsl';
import splitWorkgroupMainQuarters from '../../kernels/common/split-workgroup-main-quarters.wgsl';
import mergeBody from '../../kernels/common/attention-merge.wgsl';
import backwardBindings from '../../kernels/common/backward-bindings.wgsl';
import dqCommon from '../../kernels/common/dq-common.wgsl';
import backwardDqBody from '../../kernels/common/attention-backward-dq.wgsl';
import backwardDqBlocksBody from '../../kernels/common/attention-backward-dq-blocks.wgsl';
import dkvCommon from '../../kernels/common/dkv-common.wgsl';
import backwardDkvBody from '../../kernels/common/attention-backward-dkv.wgsl';
import backwardDkvBlocksBody from '../../kernels/common/attention-backward-dkv-blocks.wgsl';
import dkvDpRows from '../../kernels/common/dkv-dp-rows.wgsl';
import dkvDpBlocks from '../../kernels/common/dkv-dp-blocks.wgsl';
import { lanesFor, type KernelSource } from '../webgpu/runtime.js';
import { onSwiftShader } from '../webgpu/internals.js';
import { SUBGROUP_DIRECTIVES, SUBGROUP_JOB, subgroupLanes } from '../webgpu/subgroups.js';
import { expandCopies } from '../webgpu/copies.js';

/** Query (or key) rows per workgroup in the tiled attention kernels. */
export const BR = 64;

/**
 * Workgroup memory for two tiles of BC rows: WebGPU's guaranteed minimum of 16 KiB, less room
 * for a dK/dV kernel's per-query arrays of up to 32 entries (two f32, the row factor and delta,
 * and a bit each, by quads in u32: liveness) and the 16 bytes of a segment-id span (`idSpan` in
 * `kernels/common/visibility.wgsl`).
 */
const TILE_BYTES = 16384 - 2 * 32 * 4 - 8 * 4 - 16;

/**
 * Rows per tile: as many as fit two tiles of K floats in {@link TILE_BYTES}, at most 32, in
 * whole quads of 4 (the forward forms a quad of keys' scores as one vec4,
 * `kernels/common/key-quads.wgsl`). At least 4 for every K up to `MAX_HEAD_DIM` (256).
 */
export function rowsPerTile(K: number): number {
  return 4 * Math.min(8, Math.floor(TILE_BYTES / (2 * 4 * K * 4)));
}

/**
 * The tfjs flag that sets the rows per invocation of the tiled attention passes (query rows in
 * the forward and dQ, key rows in dK/dV): 'auto' (the default, {@link tiledRows}), or 1, 2 or 4
 * on every adapter.
 */
export const ATTENTION_ROWS_FLAG = 'MIXERS_ATTENTION_ROWS';
tf.env().registerFlag(ATTENTION_ROWS_FLAG, () => 'auto');

/** Floats of registers an invocation of a tiled pass may hold for its rows on a GPU. */
const GPU_ROW_FLOATS = 192;

/** A tiled pass of the attention skeleton: each invocation owns rows of its tile (or a quarter of each: {@link tiledRowLanes}). */
export type TiledPass = 'forward' | 'dq' | 'dkv';

/** Invocations that share each row of a tiled pass where the device has subgroups. */
const ROW_QUARTERS = 4;

/**
 * Floats of registers one row holds in a tiled pass, on each of its `RL` invocations: the
 * forward's scale·q and accumulator (K / RL floats each) and a tile's weights; dQ's scale·q,
 * output gradient and dq; dK/dV's key, value, dk and dv.
 */
function rowFloats(pass: TiledPass, K: number, RL: number): number {
  if (pass === 'forward') return 2 * K / RL + rowsPerTile(K);
  return (pass === 'dq' ? 3 : 4) * K / RL;
}

/**
 * Whether four lanes of a subgroup can share a row at head dimension K
 * (`kernels/common/row-quarters.wgsl`): the device has subgroups, and each lane can take a whole
 * number of the row's K / lanes channel groups.
 */
export function rowQuartersFit(backend: WebGPUBackend, K: number): boolean {
  return subgroupLanes(backend) !== null && (K / lanesFor(K)) % ROW_QUARTERS === 0;
}

/**
 * The tfjs flag that sets the invocations per row of the tiled passes: 'auto' (the default) or 4,
 * four lanes of a subgroup where they fit ({@link rowQuartersFit}); 1, an invocation per row, as
 * on a device without subgroups; or the passes that take four lanes, the others one, as a
 * comma-separated list of 'forward', 'dq' and 'dkv' (e.g. 'dkv'). The H200 ran dQ with four lanes
 * a row at 1.55 times the time of one lane a row, dK/dV at 0.85 times and the forward at 1.08
 * (flashAttention at T = 16384, H = 4, K = 64: bench/results/profiles/h200-profile-43a1366.txt):
 * which wins is the adapter's to say (`tuneKernels`).
 */
export const ATTENTION_ROW_LANES_FLAG = 'MIXERS_ATTENTION_ROW_LANES';
tf.env().registerFlag(ATTENTION_ROW_LANES_FLAG, () => 'auto');

const TILED_PASSES: readonly TiledPass[] = ['forward', 'dq', 'dkv'];

/** Whether {@link ATTENTION_ROW_LANES_FLAG} lets `pass` take four lanes a row. */
function quartersAllowed(pass: TiledPass): boolean {
  const chosen = tf.env().get(ATTENTION_ROW_LANES_FLAG);
  if (chosen === 'auto' || chosen === 4) return true;
  if (chosen === 1) return false;
  const passes = typeof chosen === 'string' ? chosen.split(',') : [];
  if (passes.length === 0 || new Set(passes).size < passes.length || !passes.every((p) => TILED_PASSES.includes(p as TiledPass))) {
    throw new Error(`tfjs-mixers: flag ${ATTENTION_ROW_LANES_FLAG} must be 'auto', 1, 4 or the passes that take four lanes, ` +
      `some of 'forward', 'dq' and 'dkv' separated by commas (e.g. 'dkv'); received ${JSON.stringify(chosen)}.`);
  }
  return passes.includes(pass);
}

/**
 * Invocations per row of a tiled pass: four lanes of a subgroup where they fit and
 * {@link ATTENTION_ROW_LANES_FLAG} allows them this pass; else one.
 */
export function tiledRowLanes(backend: WebGPUBackend, pass: TiledPass, K: number): 1 | 4 {
  return quartersAllowed(pass) && rowQuartersFit(backend, K) ? ROW_QUARTERS : 1;
}

/**
 * Rows per invocation of a tiled pass (`common/attend-tile.wgsl`, `attention-backward-*.wgsl`):
 * each key, value or query an invocation reads from workgroup memory then serves that many rows.
 * On SwiftShader, which runs the kernels on the CPU and keeps every register in memory, a read
 * from workgroup memory is what costs, so every pass takes 4 (docs/benchmarks.md). On a GPU, the
 * most (up to 4) whose registers stay within {@link GPU_ROW_FLOATS}, at least 1: a GPU spills
 * registers past its per-invocation limit (255 32-bit registers on NVIDIA's) to memory, and
 * fewer registers let more invocations share its cores; at K = 64 every pass takes 1, or with
 * `RL` = 4 invocations per row ({@link tiledRowLanes}) the forward and dK/dV 2, dQ 4.
 * {@link ATTENTION_ROWS_FLAG} overrides the choice. With RL = 4, a pass then takes fewer if its
 * workgroup would not be a whole number of the adapter's largest subgroups.
 */
export function tiledRows(backend: WebGPUBackend, pass: TiledPass, K: number, RL = 1): number {
  const rows = chosenRows(backend, pass, K, RL);
  const lanes = subgroupLanes(backend);
  return RL > 1 && lanes !== null ? rowsFillingSubgroups(rows, lanes) : rows;
}

/**
 * At most `rows` rows per four lanes, as many as keep a tiled pass's workgroup (4·BR / rows
 * invocations) a whole number of subgroups of `lanes`, so that every subgroup is full
 * (`kernels/common/row-quarters.wgsl`).
 *
 * @example
 * ```ts
 * rowsFillingSubgroups(4, 128);  // 2: 128 invocations
 * ```
 */
export function rowsFillingSubgroups(rows: number, lanes: number): number {
  let fitting = rows;
  while (fitting > 1 && (ROW_QUARTERS * BR / fitting) % lanes !== 0) fitting /= 2;
  return fitting;
}

function chosenRows(backend: WebGPUBackend, pass: TiledPass, K: number, RL: number): number {
  const chosen = tf.env().get(ATTENTION_ROWS_FLAG);
  if (chosen !== 'auto') {
    if (chosen === 1 || chosen === 2 || chosen === 4) return chosen;
    throw new Error(`tfjs-mixers: flag ${ATTENTION_ROWS_FLAG} must be 'auto', 1, 2 or 4; received ${JSON.stringify(chosen)}.`);
  }
  if (onSwiftShader(backend)) return 4;
  let rows = 1;
  while (rows < 4 && 2 * rows * rowFloats(pass, K, RL) <= GPU_ROW_FLOATS) rows *= 2;
  return rows;
}

/**
 * The tfjs flag that sets where dK/dV's invocations keep their key rows' keys and values, in its
 * build by rows: 'auto' (the default, {@link keysInMemory}), 'registers' or 'memory' on every
 * adapter. (By blocks, {@link ATTENTION_DKV_FLAG}, it stages the keys in workgroup memory and
 * reads each value where it uses it.)
 */
export const ATTENTION_DKV_KEYS_FLAG = 'MIXERS_ATTENTION_DKV_KEYS';
tf.env().registerFlag(ATTENTION_DKV_KEYS_FLAG, () => 'auto');

/**
 * Whether dK/dV's invocations read their key rows' keys and values from memory where they use
 * them (`KEYS_IN_MEMORY` in `kernels/common/attention-backward-dkv.wgsl`) rather than hold them:
 * on a GPU, where `rows` key rows would hold more than {@link GPU_ROW_FLOATS} floats of registers
 * (at K = 64 without subgroups, 256: the H200 spent 14.7 of flashAttention's 19.1 ms
 * forward+backward at T = 4096 in that pass, 5.7 times the forward), the loads that a GPU's cache
 * serves in place of the spills. {@link ATTENTION_DKV_KEYS_FLAG} overrides the choice.
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * keysInMemory(backend, 64, 1);  // on a GPU, one K = 64 row per invocation without subgroups: true
 * ```
 */
export function keysInMemory(backend: WebGPUBackend, K: number, rows: number, RL = 1): boolean {
  const chosen = tf.env().get(ATTENTION_DKV_KEYS_FLAG);
  if (chosen === 'registers' || chosen === 'memory') return chosen === 'memory';
  if (chosen !== 'auto') {
    throw new Error(`tfjs-mixers: flag ${ATTENTION_DKV_KEYS_FLAG} must be 'auto', 'registers' or 'memory'; received ${JSON.stringify(chosen)}.`);
  }
  return !onSwiftShader(backend) && rows * rowFloats('dkv', K, RL) > GPU_ROW_FLOATS;
}

/**
 * The tfjs flag that sets how the tiled forward cuts a tile's work: 'auto' (the default,
 * {@link byBlocks}), 'rows' (`kernels/common/attention-forward.wgsl`: each invocation its
 * rows' scores, weights and output) or 'blocks' (`attention-forward-blocks.wgsl`: blocks of scores,
 * then rows' weights, then quads of rows' outputs), on every adapter where that kernel fits.
 */
export const ATTENTION_FORWARD_FLAG = 'MIXERS_ATTENTION_FORWARD';
tf.env().registerFlag(ATTENTION_FORWARD_FLAG, () => 'auto');

/**
 * The tfjs flags that set how dQ and dK/dV cut a tile's work, as {@link ATTENTION_FORWARD_FLAG}
 * the forward's: 'auto' (the default, {@link byBlocks}), 'rows' (`kernels/common/attention-backward-dq.wgsl`,
 * `attention-backward-dkv.wgsl`) or 'blocks' (`attention-backward-dq-blocks.wgsl`: blocks of
 * scores, dP = dO·v and dS, then quads of rows' dq; `attention-backward-dkv-blocks.wgsl`: blocks of
 * scores, dP, weights and dS, then quads of key rows' dv, then their dk) where the workgroup memory
 * holds dP's other factor staged ({@link dpByBlocks}), else with dP and dS formed by rows between
 * the two; or 'blocks-dp-rows', by blocks with dP and dS by rows everywhere (less workgroup
 * memory, which leaves a GPU more workgroups at once).
 */
export const ATTENTION_DQ_FLAG = 'MIXERS_ATTENTION_DQ';
tf.env().registerFlag(ATTENTION_DQ_FLAG, () => 'auto');
/** {@link ATTENTION_DQ_FLAG}'s twin for dK/dV. */
export const ATTENTION_DKV_FLAG = 'MIXERS_ATTENTION_DKV';
tf.env().registerFlag(ATTENTION_DKV_FLAG, () => 'auto');

/** The flag that chooses whether each tiled pass works by blocks of scores. */
const BLOCKS_FLAGS: Record<TiledPass, string> = { forward: ATTENTION_FORWARD_FLAG, dq: ATTENTION_DQ_FLAG, dkv: ATTENTION_DKV_FLAG };

const BACKWARD_BLOCKS_VALUES = ['auto', 'rows', 'blocks', 'blocks-dp-rows'] as const;
/** The values of each pass's flag of {@link BLOCKS_FLAGS}: the forward has no dP to form by rows. */
export const BLOCKS_FLAG_VALUES: Record<TiledPass, readonly string[]> = {
  forward: ['auto', 'rows', 'blocks'], dq: BACKWARD_BLOCKS_VALUES, dkv: BACKWARD_BLOCKS_VALUES,
};

/**
 * The passes by blocks' tile of the other side: 16 keys (or dK/dV's queries), four quads, so that
 * the BR / 4 quads of the workgroup's rows by the four quads make BR blocks of scores, and BR
 * invocations each take one, then a row, then a quad of rows' outputs at a quarter of the channels.
 */
export const BLOCKS_TILE: KernelTile = { BC: 16, NT: BR };

/**
 * Bytes of workgroup memory a pass by blocks takes at head dimension K, at most: its BR rows
 * (scale·q, or dK/dV's keys), the other side's two tiles (keys and values, or scale·q and dO),
 * the scores (rows padded by a quad), two floats a row (the forward's factor and visible keys; dK/dV's
 * visible queries, and its queries' factor, delta and liveness, fewer), and the 16 bytes of a segment-id span.
 */
function blocksBytes(K: number): number {
  const { BC } = BLOCKS_TILE;
  return 4 * (BR * K + 2 * BC * K + BR * (BC + 4) + 2 * BR) + 16;
}

/**
 * Whether a tiled pass works by blocks of scores (`kernels/common/score-blocks.wgsl`, then
 * `attention-forward-blocks.wgsl`, `attention-backward-dq-blocks.wgsl` or
 * `attention-backward-dkv-blocks.wgsl`) rather than by rows: when its flag
 * ({@link ATTENTION_FORWARD_FLAG}, {@link ATTENTION_DQ_FLAG}, {@link ATTENTION_DKV_FLAG}) asks for
 * it, where K is a multiple of 16 (channel groups of four lanes in whole quarters) and the kernel's
 * workgroup memory fits the device's (30 KB at K = 64, within the 32 KB most adapters grant; tfjs
 * requests the adapter's limit). 'auto' keeps the rows: on SwiftShader, where the rows' passes
 * take four rows an invocation (it has no registers to spill) and so read a float of workgroup
 * memory for four multiply-adds of scores, a block's two (docs/benchmarks.md); on a GPU, where one
 * row an invocation reads one for each, until a lent one measures the blocks (`tuneKernels`, or
 * `scripts/gpu-bench.sh`'s steps `forward-blocks` and `backward-blocks`).
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * tf.env().set(ATTENTION_DQ_FLAG, 'blocks');
 * byBlocks(backend, 'dq', 64);  // true; at K = 8 (not a multiple of 16), false
 * ```
 */
export function byBlocks(backend: WebGPUBackend, pass: TiledPass, K: number): boolean {
  return blocksChosen(pass) !== 'rows' && K % 16 === 0 && blocksBytes(K) <= backend.device.limits.maxComputeWorkgroupStorageSize;
}

/** What a pass's flag asks for ('auto' keeps the rows), checked. */
function blocksChosen(pass: TiledPass): 'rows' | 'blocks' | 'blocks-dp-rows' {
  const flag = BLOCKS_FLAGS[pass];
  const chosen = tf.env().get(flag);
  const values = BLOCKS_FLAG_VALUES[pass];
  if (!values.includes(chosen as string)) {
    const named = values.map((v) => `'${v}'`);
    throw new Error(`tfjs-mixers: flag ${flag} must be ${named.slice(0, -1).join(', ')} or ${named.at(-1)}; received ${JSON.stringify(chosen)}.`);
  }
  return chosen === 'auto' ? 'rows' : chosen as 'rows' | 'blocks' | 'blocks-dp-rows';
}

/**
 * Whether dQ or dK/dV by blocks forms dP = dO·v by blocks too, as it forms the scores, the other
 * factor staged beside its rows (dQ's output gradients beside scale·q, with each row's statistic
 * and liveness; dK/dV's values beside its keys): `kernels/common/dq-dp-blocks.wgsl`,
 * `dkv-dp-blocks.wgsl`, 16 KB more at K = 64 (47.1 and 46.6 KB in all), where the device's
 * workgroup memory holds them and the pass's flag is 'blocks' ({@link ATTENTION_DQ_FLAG}). Else by
 * rows (`dq-dp-rows.wgsl`, `dkv-dp-rows.wgsl`), which by the count of docs/benchmarks.md runs at
 * half (dQ) and a third (dK/dV) of the multiply-add rate on an NVIDIA GPU, where the blocks' cut
 * runs at the full rate; but the more workgroup memory a workgroup takes, the fewer run at once
 * (4 of 46.6 KB on an H100's 228 KB, 7 of 30 KB), which 'blocks-dp-rows' lets a GPU's tuning weigh.
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * dpByBlocks(backend, 'dkv', 32);  // with 'blocks', true where 26 KB fit; at K = 64, where 46.6 KB do (NVIDIA's 48 KB, not SwiftShader's 32)
 * ```
 */
export function dpByBlocks(backend: WebGPUBackend, pass: 'dq' | 'dkv', K: number): boolean {
  const rowStats = pass === 'dq' ? 4 * 2 * BR : 0;
  return blocksChosen(pass) === 'blocks' && blocksBytes(K) + 4 * BR * K + rowStats <= backend.device.limits.maxComputeWorkgroupStorageSize;
}

const sources = new Map<string, KernelSource>();

/**
 * The tile of a kernel whose work is not cut by rows: its keys per tile (BC) and invocations per
 * workgroup (NT), in place of {@link rowsPerTile} and RL·BR / rows.
 */
export interface KernelTile {
  BC: number;
  NT: number;
}

/**
 * An attention kernel for one head dimension K. The sizes of its register and workgroup
 * arrays are WGSL constants (`KV` = K / lanes, `RL` invocations per row, `KL` = KV / RL channel
 * groups of a row per invocation, `BR`, `BC`, `BC4` = BC / 4, and `RQ` rows per invocation,
 * `NT` = RL·BR / RQ invocations per workgroup, or `tile`'s), so each (kernel, K, rows, tile) is
 * its own module, and pipeline: the runtime keys pipelines by their code. `parts` are the WGSL
 * files after `common/attention.wgsl`, the entry point last, their per-row lines written out for
 * `rows` rows ({@link expandCopies}); `directives` (`enable subgroups;`) open the module.
 */
export function attentionKernel(
  name: string, parts: string[], K: number, rows = 1, directives = '', RL = 1, tile?: KernelTile,
): KernelSource {
  const key = `${name}|${K}|${rows}|${directives}|${RL}|${tile?.BC}|${tile?.NT}`;
  let kernel = sources.get(key);
  if (!kernel) {
    const lanes = lanesFor(K);
    const BC = tile?.BC ?? rowsPerTile(K);
    const KV = K / lanes;
    const sizes = [`KV: u32 = ${KV}u`, `RL: u32 = ${RL}u`, `KL: u32 = ${KV / RL}u`, `BR: u32 = ${BR}u`, `BC: u32 = ${BC}u`,
      `BC4: u32 = ${BC / 4}u`, `RQ: u32 = ${rows}u`, `NT: u32 = ${tile?.NT ?? RL * BR / rows}u`].map((c) => `const ${c};`).join('\n');
    const code = [directives, lanes === 4 ? lanes4 : lanes1, sizes, attentionHelpers, floatBits, ...parts].filter((p) => p).join('\n');
    kernel = { name: rows > 1 ? `${name}K${K}R${rows}` : `${name}K${K}`, code: expandCopies(code, rows) };
    sources.set(key, kernel);
  }
  return kernel;
}

/**
 * A pass of the attention skeleton: the tiled forward, dQ, dK with dV (an invocation per group of
 * rows or, with subgroups, four lanes), and the split-K decode's two passes (partial rows per
 * chunk of keys, by an invocation, a workgroup or a subgroup: `split-pass.ts`; then their merge).
 */
export type SkeletonPass = TiledPass | 'forwardBlocks' | 'dqBlocks' | 'dqBlocksDp' | 'dkvBlocks' | 'dkvBlocksDp' | 'split' | 'splitWorkgroup' | 'splitSubgroups' | 'merge';

const SPLIT_PARTS = [grid, rowRegisters, cacheTile, attendTileHelper, splitChunk];

/**
 * The WGSL of one pass after the family's layout and hooks, and the directives it opens with;
 * the merge reads neither keys nor layout.
 */
const SKELETON: Record<SkeletonPass, { visibility: boolean; parts: string[]; directives?: string }> = {
  forward: { visibility: true, parts: [forwardBindings, rowRegisters, keyQuads, valueRows, quadScores, kvTileHelpers, attendTileHelper, forwardBody] },
  forwardBlocks: { visibility: true, parts: [forwardBindings, keyQuads, valueRows, kvTileHelpers, scoreBlocks, queryBlocks, forwardBlocksBody] },
  dq: { visibility: true, parts: [backwardBindings, dqCommon, rowRegisters, keyQuads, valueRows, quadScores, kvTileHelpers, backwardDqBody] },
  dqBlocks: { visibility: true, parts: [backwardBindings, dqCommon, keyQuads, valueRows, kvTileHelpers, scoreBlocks, queryBlocks, dqDpRows, backwardDqBlocksBody] },
  dqBlocksDp: { visibility: true, parts: [backwardBindings, dqCommon, keyQuads, valueQuads, kvTileHelpers, scoreBlocks, queryBlocks, dqDpBlocks, backwardDqBlocksBody] },
  dkv: { visibility: true, parts: [backwardBindings, queryTileHelpers, dkvCommon, backwardDkvBody] },
  dkvBlocks: { visibility: true, parts: [backwardBindings, queryTileHelpers, dkvCommon, scoreBlocks, dkvDpRows, backwardDkvBlocksBody] },
  dkvBlocksDp: { visibility: true, parts: [backwardBindings, queryTileHelpers, dkvCommon, scoreBlocks, dkvDpBlocks, backwardDkvBlocksBody] },
  split: { visibility: true, parts: [...SPLIT_PARTS, rowWhole, splitBody] },
  splitWorkgroup: { visibility: true, parts: [...SPLIT_PARTS, splitWorkgroupBody] },
  splitSubgroups: { visibility: true, parts: [...SPLIT_PARTS, rowWhole, SUBGROUP_JOB, splitSubgroupsBody], directives: SUBGROUP_DIRECTIVES },
  merge: { visibility: false, parts: [grid, mergeBody] },
};

/**
 * One pass of the attention skeleton (`kernels/common/attention-*.wgsl`) for one family:
 * `layout` gives its tiles and runs and its own mask (`common/dense-layout.wgsl` or
 * `block-sparse/layout.wgsl`), `hooks` its row hooks (forward, split-K: `online-softmax.wgsl`
 * or ExpressiveAttention's `forward.wgsl`) or pair weights (`weights.wgsl`, backward). Every pass
 * that reads keys reads the visibility predicate of `common/visibility.wgsl` and the dropout
 * multiplier of `common/dropout.wgsl`. `rows` is a tiled pass's rows per invocation
 * ({@link tiledRows}) and `RL` its invocations per row ({@link tiledRowLanes}), which choose its
 * entry point; the split-K decode's workgroup pass takes one row and `RL` lanes per row
 * (`split-pass.ts`), the other split-K passes and the merge one of each.
 */
export function skeletonKernel(
  name: string, pass: SkeletonPass, layout: string, hooks: string, K: number, rows = 1, RL: 1 | 4 = 1,
): KernelSource {
  const { visibility, parts, directives } = SKELETON[pass];
  const front = visibility ? [visHeader, visibilityHelpers, dropoutHelpers, layout] : [];
  // a quad of rows per invocation in its last steps (and its row mark's copies)
  if (BLOCKS_PASSES.includes(pass)) return attentionKernel(name, [...front, hooks, ...parts], K, 4, '', 1, BLOCKS_TILE);
  const entries = pass === 'splitWorkgroup' ? SPLIT_WORKGROUP_ENTRIES : pass === 'forward' || pass === 'dq' || pass === 'dkv' ? TILED_ENTRIES : null;
  if (!entries) return attentionKernel(name, [...front, hooks, ...parts], K, rows, directives);
  const entry = entries[RL];
  return attentionKernel(name, [...front, hooks, ...parts, ...entry.parts], K, rows, entry.directives, RL);
}

const BLOCKS_PASSES: readonly SkeletonPass[] = ['forwardBlocks', 'dqBlocks', 'dqBlocksDp', 'dkvBlocks', 'dkvBlocksDp'];

/** A pass's entry point and row hooks, by invocations per row: the tiled passes', and the split-K decode's workgroup pass. */
const TILED_ENTRIES = {
  1: { parts: [rowWhole, tiledMain], directives: '' },
  4: { parts: [subgroupRank, rowQuarters, tiledMainQuarters], directives: SUBGROUP_DIRECTIVES },
};
const SPLIT_WORKGROUP_ENTRIES = {
  1: { parts: [rowWhole, splitWorkgroupMain], directives: '' },
  4: { parts: [subgroupRank, rowQuarters, splitWorkgroupMainQuarters], directives: SUBGROUP_DIRECTIVES },
};
