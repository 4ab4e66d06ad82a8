import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import combineHelpers from '../../../kernels/average-context/combine.wgsl';
import chunkHelpers from '../../../kernels/average-context/chunks.wgsl';
import levelSumsBody from '../../../kernels/average-context/level-sums.wgsl';
import pairHelpers from '../../../kernels/average-context/pairs.wgsl';
import levelsHelpers from '../../../kernels/average-context/levels.wgsl';
import forwardBody from '../../../kernels/average-context/forward.wgsl';
import backwardChunkSumsBody from '../../../kernels/average-context/backward-chunk-sums.wgsl';
import backwardBody from '../../../kernels/average-context/backward.wgsl';
import picksHelpers from '../../../kernels/average-context/picks.wgsl';
import startHelpers from '../../../kernels/average-context/start.wgsl';
import stepBody from '../../../kernels/average-context/step.wgsl';
import walkForwardBody from '../../../kernels/average-context/walk-forward.wgsl';
import walkBackwardBody from '../../../kernels/average-context/walk-backward.wgsl';
import lookbackChain from '../../../kernels/average-context/lookback-chain.wgsl';
import lookbackForwardBody from '../../../kernels/average-context/lookback-forward.wgsl';
import lookbackBackwardBody from '../../../kernels/average-context/lookback-backward.wgsl';
import {
  filledWords, grid1d, laneVariants, lanesFor, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type LaneVariants, type Launch,
} from '../../webgpu/runtime.js';
import { onSwiftShader } from '../../webgpu/internals.js';
import type { Combine } from './reference.js';

/**
 * tfjs kernel names. The forward has two outputs: y and its min/max picks, saved for the backward.
 * The prefill is the causal forward continuing a decode state, as the step's inputs: x, previous,
 * sum `[B, D]` and positions, int32 `[B]` (a negative one read as 0); it has no gradient.
 */
export const AVERAGE_CONTEXT = 'MixersAverageContext';
export const AVERAGE_CONTEXT_GRAD = 'MixersAverageContextGrad';
export const AVERAGE_CONTEXT_PREFILL = 'MixersAverageContextPrefill';
export const AVERAGE_CONTEXT_STEP = 'MixersAverageContextStep';

const WG = 256;
/**
 * Steps per chunk, and entries summed per entry at every level of the scan below the top: an
 * invocation keeps this many loads in flight. At most 16: the picks of a chunk fill 32 bits.
 */
const CHUNK = 16;
/**
 * Entries the top level may hold. Every level costs a dispatch, and a dispatch a few µs on a
 * GPU, more than reading TOP entries from cache: T ≤ 16384 needs two levels, T ≤ 262144 three.
 */
const TOP = 64;
/** The WGSL's definitions of CHUNK and TOP: `const`s, so that loops over them have constant trip counts. */
const sizeConstants = `const CHUNK: u32 = ${CHUNK}u;\nconst TOP: u32 = ${TOP}u;`;

/** The kernels' combine: one of AverageContext's, or `'context'` for causalMean alone. */
export type KernelCombine = Combine | 'context';
const COMBINE_CODE: Record<KernelCombine, number> = { max: 0, min: 1, mean: 2, context: 3 };

/**
 * The one-pass scan's status words before a launch: the mark of a sum not yet published (a NaN
 * whose bits no sum takes), and the ticket's start (lookback-chain.wgsl's takeTile).
 */
const NOT_READY = 0xffffffff;
const notReady = `const NOT_READY: u32 = ${NOT_READY}u;`;

const scanParts = [sizeConstants, grid, combineHelpers, chunkHelpers];
const KERNELS = {
  levelSums: laneVariants('AverageContextLevelSums', [sizeConstants, grid, chunkHelpers, pairHelpers, levelSumsBody]),
  forward: laneVariants('AverageContextForward', [...scanParts, levelsHelpers, startHelpers, forwardBody]),
  backwardChunkSums: laneVariants('AverageContextBackwardChunkSums', [...scanParts, pairHelpers, picksHelpers, backwardChunkSumsBody]),
  backward: laneVariants('AverageContextBackward', [...scanParts, levelsHelpers, picksHelpers, backwardBody]),
  walkForward: laneVariants('AverageContextWalkForward', [...scanParts, startHelpers, walkForwardBody]),
  walkBackward: laneVariants('AverageContextWalkBackward', [...scanParts, picksHelpers, walkBackwardBody]),
  lookbackForward: laneVariants('AverageContextLookbackForward', [...scanParts, notReady, startHelpers, lookbackChain, lookbackForwardBody]),
  lookbackBackward: laneVariants('AverageContextLookbackBackward', [...scanParts, notReady, picksHelpers, lookbackChain, lookbackBackwardBody]),
  step: laneVariants('AverageContextStep', [grid, combineHelpers, stepBody]),
};

interface Attrs { combine: KernelCombine; causal: boolean }

/**
 * The entries of each level of the scan over T steps: level 1 one per chunk of CHUNK steps,
 * each next level one per CHUNK entries of the level before, up to the first with at most TOP.
 */
export function scanLevels(T: number): number[] {
  const levels = [Math.ceil(T / CHUNK)];
  while (levels[levels.length - 1]! > TOP) levels.push(Math.ceil(levels[levels.length - 1]! / CHUNK));
  return levels;
}

/**
 * The forward's min/max picks, saved for the backward: 2 bits a step and channel, one u32 per
 * chunk and channel (`[B, numChunks, D]`, int32). Unwritten for mean and the context alone.
 */
function picksShape(x: tf.TensorInfo): { shape: number[]; dtype: 'int32' } {
  const [B, T, D] = x.shape as [number, number, number];
  return { shape: [B, scanLevels(T)[0]!, D], dtype: 'int32' };
}

/** The shape of the tensor that holds all levels of `x`'s scan, level 1 first: `[B, rows, D]`. */
function levelsShape(x: tf.TensorInfo): number[] {
  const [B, T, D] = x.shape as [number, number, number];
  return [B, scanLevels(T).reduce((a, n) => a + n, 0), D];
}

/** The Params uniform of chunks.wgsl. */
function scanParams(x: tf.TensorInfo, total: number, level: Partial<LevelPass> = {}): Launch['params'] {
  const [, T, D] = x.shape as [number, number, number];
  return [{ u32: total }, { u32: T }, { u32: D / lanesFor(D) }, { u32: levelsShape(x)[1]! },
    { u32: level.srcBase ?? 0 }, { u32: level.srcLen ?? 0 }, { u32: level.dstBase ?? 0 },
    { u32: level.dst2Base ?? 0 }, { u32: level.pair ? 1 : 0 }];
}

/** What a dispatch that writes levels reads and writes: rows of the levels tensor. */
interface LevelPass { srcBase: number; srcLen: number; dstBase: number; dst2Base: number; pair: boolean }

/**
 * The dispatches that write the levels of a scan over T steps, two levels each (pairs.wgsl): the
 * first reads the T steps (srcLen T) and writes levels 1 and 2, the next reads level 2 and
 * writes levels 3 and 4, and so on, `pair` false where one level is left.
 */
function levelPasses(T: number): LevelPass[] {
  const sizes = scanLevels(T);
  const passes: LevelPass[] = [];
  let base = 0;
  for (let l = 0; l < sizes.length; l += 2) {
    // level l + 1 (1-based) is written from the level below it: the steps, or level l
    const srcLen = l === 0 ? T : sizes[l - 1]!;
    const srcBase = l === 0 ? 0 : base - sizes[l - 1]!;
    const pair = l + 1 < sizes.length;
    passes.push({ srcBase, srcLen, dstBase: base, dst2Base: base + sizes[l]!, pair });
    base += sizes[l]! + (pair ? sizes[l + 1]! : 0);
  }
  return passes;
}

/**
 * How the scan runs. `'levels'`, for a GPU, which wants many invocations and few dispatches: the
 * levels of chunk sums, two a dispatch, then one invocation per chunk. `'walk'`, for SwiftShader,
 * which runs compute on the CPU's few cores and is bound by instructions: one invocation per
 * column walks all of T, a single pass that reads x once and builds no levels. `'lookback'`, for a
 * GPU, the causal forward and backward each in one pass over its input (tiles that learn the sum
 * before them from the tiles before, `kernels/average-context/lookback-chain.wgsl`), where the
 * levels read it twice, a ceiling of 67 % of a copy's rate; the whole-sequence context, which
 * needs the total before any output, runs the levels.
 */
export type Scan = 'levels' | 'walk' | 'lookback';

/**
 * The tfjs flag that picks the scan: `'auto'` (the default) by the adapter, or `'levels'`,
 * `'walk'` or `'lookback'` whatever the adapter (the tests run all three on SwiftShader).
 */
export const SCAN_FLAG = 'MIXERS_AVERAGE_CONTEXT_SCAN';
tf.env().registerFlag(SCAN_FLAG, () => 'auto');

function scanFor(backend: WebGPUBackend): Scan {
  const chosen = tf.env().get(SCAN_FLAG);
  if (chosen === 'levels' || chosen === 'walk' || chosen === 'lookback') return chosen;
  if (chosen !== 'auto') {
    throw new Error(`tfjs-mixers: flag ${SCAN_FLAG} must be 'auto', 'levels', 'walk' or 'lookback'; received ${JSON.stringify(chosen)}.`);
  }
  return onSwiftShader(backend) ? 'walk' : 'levels';
}

/**
 * The tfjs flag for how the one-pass scan learns the sum before a tile: `'wait'` (the default)
 * from the sums the tiles before it publish, their inclusive sums where they have them, waiting a
 * few rounds on one that has published nothing before summing it from the input itself. For the
 * tests, which so run each path whatever the timing: `'aggregates'`, tiles publish their own sums
 * alone (the first tile's is inclusive), so every tile adds all those before it;
 * `'recompute'`, they publish nothing, so every tile sums all those before it from the input.
 */
export const LOOKBACK_FLAG = 'MIXERS_AVERAGE_CONTEXT_LOOKBACK';
tf.env().registerFlag(LOOKBACK_FLAG, () => 'wait');

const PUBLISHED: Record<string, Record<string, number>> = { wait: {}, aggregates: { PUBLISHED: 1 }, recompute: { PUBLISHED: 0, SPINS: 0 } };

function lookbackOverrides(): Record<string, number> {
  const chosen = tf.env().get(LOOKBACK_FLAG);
  const overrides = PUBLISHED[String(chosen)];
  if (overrides) return overrides;
  throw new Error(`tfjs-mixers: flag ${LOOKBACK_FLAG} must be 'wait', 'aggregates' or 'recompute'; received ${JSON.stringify(chosen)}.`);
}

/**
 * The one-pass scan's tile: `cols` channel groups, a power of two from 16 to 64 (the fewest that
 * hold the `width` groups, up to 64), and `parts` chunks of CHUNK steps of each, WG invocations in all.
 *
 * @example
 * ```ts
 * lookbackTile(64);  // { cols: 64, parts: 4 }: D = 256 in vec4s, tiles of 64 steps
 * lookbackTile(16);  // { cols: 16, parts: 16 }: D = 64, tiles of 256 steps
 * ```
 */
export function lookbackTile(width: number): { cols: number; parts: number } {
  const cols = Math.min(64, Math.max(16, 2 ** Math.ceil(Math.log2(width))));
  return { cols, parts: WG / cols };
}

/**
 * A causal scan in one pass (`kernels/average-context/lookback-chain.wgsl`: the forward, or the
 * backward from the last step), after a dispatch that sets its status words to NOT_READY: the
 * ticket, then per tile the aggregate and inclusive sums of its channel groups. `x` is the input that gives
 * the shape, x or dy.
 */
function runLookback(gpu: WebGPUBackend, kernel: LaneVariants, x: tf.TensorInfo, launch: Pick<Launch, 'inputs' | 'outputs'>,
  constants: Record<string, number>): tf.TensorInfo[] {
  const [B, T, D] = x.shape as [number, number, number];
  const lanes = lanesFor(D);
  const { cols, parts } = lookbackTile(D / lanes);
  const tiles = B * Math.ceil(D / lanes / cols) * Math.ceil(T / (parts * CHUNK));
  const words = 1 + tiles * 2 * cols * lanes;
  const status = filledWords(gpu, words, NOT_READY);
  const out = runKernel(gpu, kernel[lanes], {
    ...launch, updates: [status], params: scanParams(x, tiles), constants: { WG, ...constants, COLS: cols, ...lookbackOverrides() },
    workgroups: grid1d(tiles * WG, WG),
  });
  gpu.disposeData(status.dataId);
  return out;
}

/**
 * Invocations a workgroup of the walks: SwiftShader runs four invocations at once in SIMD lanes
 * and deals workgroups out to its threads, so B·D/4 columns should make many workgroups of four
 * (at B = 1, D = 256, T = 16384: 32 ms, against 127 with one and 43 with 64).
 */
const WALK_WG = 4;

/**
 * The tfjs flag that sets the chunks per invocation of the levels scan's last passes: `'auto'`
 * (the default, {@link chunksPerRun}), or 1, 2, 4, 8 or 16 whatever the shape.
 */
export const RUN_FLAG = 'MIXERS_AVERAGE_CONTEXT_RUN';
tf.env().registerFlag(RUN_FLAG, () => 'auto');

/**
 * Invocations the levels scan's last passes keep at least, where runs of chunks would leave
 * fewer: with CHUNK unconditional loads each in flight, 32768 invocations hold 2¹⁹ loads of 16
 * bytes, several times what an H200's memory needs in flight to stream at its rate (about 5 TB/s
 * times a microsecond of latency). Reasoned, not yet measured on a GPU.
 */
const MIN_INVOCATIONS = 32768;

/**
 * Chunks per invocation of the levels scan's last passes (`RUN` in
 * `kernels/average-context/chunks.wgsl`): the sum of the levels before (or after) an
 * invocation's chunks, up to 2·(CHUNK − 1) + TOP − 1 loads from cache, is formed once for them
 * all. With one chunk an invocation loaded those sums for its CHUNK steps of x: several times x's
 * own loads, which held the forward to 13–28 % of the copy's rate on an H200. The most (up to 16)
 * that keep {@link MIN_INVOCATIONS} invocations; {@link RUN_FLAG} overrides it.
 *
 * @example
 * ```ts
 * chunksPerRun(1, 262144, 64);  // 16: 1024 runs of each of 64 channel groups
 * chunksPerRun(1, 4096, 64);    // 1: 256 chunks of 64 groups are too few to cut
 * ```
 */
export function chunksPerRun(B: number, T: number, width: number): number {
  const chosen = tf.env().get(RUN_FLAG);
  if (chosen !== 'auto') {
    if (chosen === 1 || chosen === 2 || chosen === 4 || chosen === 8 || chosen === 16) return chosen;
    throw new Error(`tfjs-mixers: flag ${RUN_FLAG} must be 'auto', 1, 2, 4, 8 or 16; received ${JSON.stringify(chosen)}.`);
  }
  const chunks = Math.ceil(T / CHUNK);
  let run = 16;
  while (run > 1 && B * Math.ceil(chunks / run) * width < MIN_INVOCATIONS) run /= 2;
  return run;
}

/**
 * One dispatch of a scan's last pass over `[B, T, D]`: one invocation per (b, cell, d), or per
 * (b, cell, group of four channels), where a cell is a run of {@link chunksPerRun} chunks of
 * CHUNK steps for the levels scan and all T steps for the walk.
 */
function runLastPass(
  backend: WebGPUBackend, scan: Scan, kernel: LaneVariants, x: tf.TensorInfo, launch: Pick<Launch, 'inputs' | 'outputs'>,
  constants: Record<string, number>,
): tf.TensorInfo[] {
  const [B, T, D] = x.shape as [number, number, number];
  const width = D / lanesFor(D);
  const run = scan === 'walk' ? 1 : chunksPerRun(B, T, width);
  const [cells, wg] = scan === 'walk' ? [1, WALK_WG] : [Math.ceil(Math.ceil(T / CHUNK) / run), WG];
  const total = B * cells * width;
  return runKernel(backend, kernel[lanesFor(D)], {
    ...launch, params: scanParams(x, total), constants: { WG: wg, ...constants, ...(scan === 'walk' ? {} : { RUN: run }) },
    workgroups: grid1d(total, wg),
  });
}

/**
 * One dispatch that writes a pass's levels: CHUNK entries of the level written and LANES
 * channel groups a workgroup of WG = CHUNK·LANES invocations.
 */
function runLevelKernel(
  backend: WebGPUBackend, kernel: LaneVariants, x: tf.TensorInfo, launch: Pick<Launch, 'inputs' | 'outputs' | 'updates'>,
  constants: Record<string, number>, level: LevelPass,
): tf.TensorInfo[] {
  const [B, , D] = x.shape as [number, number, number];
  const lanes = lanesFor(D);
  const groups = B * Math.ceil(Math.ceil(level.srcLen / CHUNK) / CHUNK) * Math.ceil(D / lanes / (WG / CHUNK));
  return runKernel(backend, kernel[lanes], {
    ...launch, params: scanParams(x, groups, level), constants: { WG, ...constants }, workgroups: grid1d(groups * WG, WG),
  });
}

/**
 * Fills the levels above the first pass's of `levels`, each pass from the level below it. `x`
 * gives the shape, and fills the kernel's unused binding for x.
 */
function fillUpperLevels(backend: WebGPUBackend, x: tf.TensorInfo, levels: tf.TensorInfo): void {
  for (const level of levelPasses(x.shape[1]!).slice(1)) {
    runLevelKernel(backend, KERNELS.levelSums, x, { inputs: [x], outputs: [], updates: [levels] }, { FROM_X: 0 }, level);
  }
}

function scanConstants(a: Attrs): Record<string, number> {
  return { COMBINE: COMBINE_CODE[a.combine], CAUSAL: a.causal ? 1 : 0 };
}

/**
 * The forward scan: the levels of x's chunk sums then the last pass, or the walk. `start`, the
 * state a prefill continues, or null: the kernels then bind x in its place and never read it.
 */
function forwardScan(gpu: WebGPUBackend, x: tf.TensorInfo, start: tf.TensorInfo[] | null, attrs: Attrs): tf.TensorInfo[] {
  const constants = { ...scanConstants(attrs), HAS_START: start ? 1 : 0 };
  const outputs = [x.shape, picksShape(x)];
  // the state as it is kept (previous, sum, positions), or x standing in for it, never read
  const state = start ?? [x, x, x];
  const scan = scanFor(gpu);
  if (scan === 'walk') return runLastPass(gpu, 'walk', KERNELS.walkForward, x, { inputs: [x, ...state], outputs }, constants);
  // the whole-sequence context needs the total before any y: the levels have it
  if (scan === 'lookback' && attrs.causal) return runLookback(gpu, KERNELS.lookbackForward, x, { inputs: [x, ...state], outputs }, constants);
  const [levels] = runLevelKernel(gpu, KERNELS.levelSums, x, { inputs: [x], outputs: [levelsShape(x)] },
    { FROM_X: 1 }, levelPasses(x.shape[1]!)[0]!);
  fillUpperLevels(gpu, x, levels!);
  const [y, picks] = runLastPass(gpu, 'levels', KERNELS.forward, x, { inputs: [x, levels!, ...state], outputs }, constants);
  gpu.disposeData(levels!.dataId);
  return [y!, picks!];
}

registerKernelOnce({
  kernelName: AVERAGE_CONTEXT,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) =>
    forwardScan(backend as WebGPUBackend, namedInputs(inputs, 'x').x, null, attrs as unknown as Attrs),
});

registerKernelOnce({
  kernelName: AVERAGE_CONTEXT_PREFILL,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const { x, previous, sum, positions } = namedInputs(inputs, 'x', 'previous', 'sum', 'positions');
    const [y, picks] = forwardScan(gpu, x, [previous, sum, positions], { ...(attrs as unknown as { combine: Combine }), causal: true });
    // only the backward reads the picks, and a prefill has none
    gpu.disposeData(picks!.dataId);
    return y!;
  },
});

registerKernelOnce({
  kernelName: AVERAGE_CONTEXT_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as Attrs;
    const constants = scanConstants(a);
    const { dy, picks } = namedInputs(inputs, 'dy', 'picks');
    const scan = scanFor(gpu);
    if (scan === 'walk') {
      return runLastPass(gpu, 'walk', KERNELS.walkBackward, dy, { inputs: [dy, picks], outputs: [dy.shape] }, constants)[0]!;
    }
    if (scan === 'lookback' && a.causal) {
      return runLookback(gpu, KERNELS.lookbackBackward, dy, { inputs: [dy, picks], outputs: [dy.shape] }, { ...constants, REVERSED: 1 })[0]!;
    }
    const [levels] = runLevelKernel(gpu, KERNELS.backwardChunkSums, dy, { inputs: [dy, picks], outputs: [levelsShape(dy)] },
      constants, levelPasses(dy.shape[1]!)[0]!);
    fillUpperLevels(gpu, dy, levels!);
    const [dx] = runLastPass(gpu, 'levels', KERNELS.backward, dy, { inputs: [dy, picks, levels!], outputs: [dy.shape] }, constants);
    gpu.disposeData(levels!.dataId);
    return dx!;
  },
});

registerKernelOnce({
  kernelName: AVERAGE_CONTEXT_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, previous, sum, positions } = namedInputs(inputs, 'x', 'previous', 'sum', 'positions');
    const lanes = lanesFor(x.shape[1]!);
    const total = tf.util.sizeFromShape(x.shape) / lanes;
    const a = attrs as unknown as { combine: Combine };
    return runKernel(backend as WebGPUBackend, KERNELS.step[lanes], {
      inputs: [x, previous, sum, positions],
      outputs: [x.shape, x.shape, { shape: positions.shape, dtype: 'int32' }],
      params: [{ u32: total }, { u32: x.shape[1]! / lanes }],
      constants: { WG, COMBINE: COMBINE_CODE[a.combine] },
      workgroups: grid1d(total, WG),
    });
  },
});

registerGradientOnce({
  kernelName: AVERAGE_CONTEXT,
  outputsToSave: [false, true],
  gradFunc: (dy, saved, attrs) => {
    const [picks] = saved;
    // only y is differentiated; the picks are an internal output
    const dyY = Array.isArray(dy) ? dy[0] : dy;
    return { x: () => tf.engine().runKernel(AVERAGE_CONTEXT_GRAD, { dy: dyY, picks }, attrs) as tf.Tensor };
  },
});
