import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import denseLayout from '../../kernels/common/dense-layout.wgsl';
import deltaBody from '../../kernels/common/attention-delta.wgsl';
import {
  grid1d, lanesFor, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource, type Param,
} from '../webgpu/runtime.js';
import { sumParts, tiledSplits } from './tile-splits.js';
import { BR, byBlocks, dpByBlocks, keysInMemory, skeletonKernel, tiledRowLanes, tiledRows, type SkeletonPass, type TiledPass } from './kernel-source.js';
import {
  KEY_LIST_INPUT, PACKED_INPUT, attentionParams, bindVisibility, hasDropout, keyListWidth, sizesOf,
  type AttentionAttrs, type BoundVisibility,
} from './kernel-inputs.js';
import { rowKernels, rowLaunch } from '../webgpu/subgroups.js';
import { splitPass } from './split-pass.js';
import type { AttentionSizes } from './validate.js';
import type { Split } from './split.js';

/** Which pass's tiles a layout gives: the forward's and dQ's query tiles, or dK/dV's key tiles. */
export type TilePass = 'forward' | 'transposed';


/**
 * An attention family on the shared skeleton (`kernels/common/attention-*.wgsl`): its tfjs
 * kernel names, its WGSL hooks and its layout. {@link registerAttentionFamily} registers its
 * forward, its split-K decode when it has one, and its backward.
 */
export interface AttentionFamily {
  /**
   * The forward's tfjs kernel: inputs q, k, v and the int inputs of `visibilityInputs` (or, for
   * a decode step of a family without its own layout, a key list: {@link KEY_LIST_INPUT});
   * outputs o, a per-row statistic `[B, H, Tq]` and, when it has int inputs, their packed buffer.
   */
  forward: string;
  /** The tfjs kernel names of dQ, and of dK with dV (two outputs). */
  dq: string;
  dkv: string;
  /** Pipeline label prefix, e.g. `'FlashAttention'`. */
  label: string;
  /**
   * The family's row hooks (`common/online-softmax.wgsl`, ExpressiveAttention's `forward.wgsl`):
   * RowState, initRow, weighTile, packRow, mergeRow, finishRow.
   */
  rowHooks: string;
  /** The family's `weights.wgsl`: `rowFactor` and `pairGrads` from the forward's statistic. */
  weights: string;
  /**
   * The family's layout hooks and tile plan (BlockSparse); by default dense attention
   * (`common/dense-layout.wgsl`, tiles of BR rows). A family with its own layout has no
   * split-K decode.
   */
  layout?: AttentionLayout;
  /** Pipeline constants the family's hooks read, from a call's attrs (ExpressiveAttention's ε). */
  constants?: (attrs: tf.NamedAttrMap) => Record<string, number>;
}

/** How a family's kernels find their tiles: `kernels/common/dense-layout.wgsl` or its own. */
export interface AttentionLayout {
  /** The WGSL layout hooks: loadLayout, tileRows, tileRuns, tileRun, keysSeen, queriesSeen. */
  wgsl: string;
  /**
   * For one launch: the tile count and, if the hooks read one, the tile plan as an int32
   * tensor, which the layout keeps (the caller binds it and never frees it).
   */
  tiles(backend: WebGPUBackend, T: number, attrs: object, pass: TilePass): { numTiles: number; plan?: tf.TensorInfo };
  /** Causal by definition, without a window, whatever the attrs say (BlockSparse). */
  causal?: true;
}

/** Dense attention: tiles of BR rows, no plan. */
export const DENSE_LAYOUT: AttentionLayout = {
  wgsl: denseLayout,
  tiles: (_backend, T) => ({ numTiles: Math.ceil(T / BR) }),
};

/** A tiled pass's kernel, after its family's label: e.g. FlashAttentionBackwardDkv. */
const PASS_NAMES: Record<TiledPass, string> = { forward: 'Forward', dq: 'BackwardDq', dkv: 'BackwardDkv' };

/**
 * Launches one tiled pass of the attention skeleton over `q`, `k`, `v` and `more`: binds the
 * call's int inputs (and the layout's plan) as `vis`, then frees what it made for this launch.
 * Where the launch has too few tiles to fill a GPU ({@link tiledSplits}), its workgroups each take
 * one chunk of the other side, and a second launch combines their partial results: the merge of
 * the split-K decode (the forward), or a sum (each gradient). Returns the outputs, then the
 * forward's packed int inputs when it made them.
 */
function runSkeleton(
  backend: WebGPUBackend, layout: AttentionLayout, label: string, pass: TiledPass, hooks: string,
  inputs: tf.NamedTensorInfoMap, more: tf.TensorInfo[], outputs: number[][], attrs: AttentionAttrs,
  constants: Record<string, number>,
): tf.TensorInfo[] {
  const { q, k } = namedInputs(inputs, 'q', 'k');
  const s = sizesOf(q, k);
  const tilePass: TilePass = pass === 'dkv' ? 'transposed' : 'forward';
  const a = layout.causal ? { ...attrs, causal: true, window: 0 } : attrs;
  const { numTiles, plan } = layout.tiles(backend, pass === 'dkv' ? s.Tk : s.Tq, attrs, tilePass);
  // a workgroup per tile of query rows and head; dK/dV: per tile of key rows and kv head
  const heads = pass === 'dkv' ? s.Hkv : s.H;
  const split = tiledSplits(backend, pass === 'dkv' ? s.Tq : s.Tk, numTiles, numTiles * heads * s.B, s.K);
  const bound = bindVisibility(backend, inputs, q, plan);
  try {
    const params = attentionParams(s, a, bound.planAt, split ?? undefined);
    const tiled = tiledKernel(backend, label, pass, layout.wgsl, hooks, s.K);
    const allConstants = { ...constants, ...bound.constants, ...dropoutConstant(attrs), ...tiled.constants };
    const out = runKernel(backend, tiled.kernel, {
      inputs: [q, k, inputs.v!, ...more, bound.vis],
      outputs: split ? partShapes(pass, outputs, s, split.splits) : outputs,
      params,
      constants: allConstants,
      workgroups: [numTiles * (split?.splits ?? 1), heads, s.B],
    });
    const whole = split ? combineParts(backend, label, pass, hooks, out, outputs, s, split.splits, params, constants) : out;
    return bound.packed ? [...whole, bound.packed] : whole;
  } finally {
    // bound to the pending command buffer, so tfjs frees it only after that is submitted
    bound.release();
  }
}

/**
 * The kernel of one tiled pass at head dimension K, and the pipeline constants its choice sets:
 * a pass by blocks of scores where {@link byBlocks} says so (e.g. FlashAttentionForwardBlocks,
 * FlashAttentionBackwardDkvBlocks, or FlashAttentionBackwardDkvBlocksDp where {@link dpByBlocks}
 * says so); else by rows, RQ per invocation or per four lanes of a subgroup
 * (e.g. FlashAttentionForwardSubgroups), dK/dV's keys read from memory (`KEYS_IN_MEMORY`) where
 * {@link keysInMemory} says so.
 */
function tiledKernel(
  backend: WebGPUBackend, label: string, pass: TiledPass, layout: string, hooks: string, K: number,
): { kernel: KernelSource; constants: Record<string, number> } {
  if (byBlocks(backend, pass, K)) {
    const dp = pass !== 'forward' && dpByBlocks(backend, pass, K);
    const blocks: SkeletonPass = dp ? `${pass}BlocksDp` : `${pass}Blocks`;
    return { kernel: skeletonKernel(`${label}${PASS_NAMES[pass]}Blocks${dp ? 'Dp' : ''}`, blocks, layout, hooks, K), constants: {} };
  }
  const RL = tiledRowLanes(backend, pass, K);
  const rows = tiledRows(backend, pass, K, RL);
  const kernel = skeletonKernel(`${label}${PASS_NAMES[pass]}${RL > 1 ? 'Subgroups' : ''}`, pass, layout, hooks, K, rows, RL);
  return { kernel, constants: pass === 'dkv' && keysInMemory(backend, K, rows, RL) ? { KEYS_IN_MEMORY: 1 } : {} };
}

/**
 * The shapes a split tiled pass writes in place of `outputs`: the forward's partial rows (as the
 * split-K decode's first pass writes them), a gradient's parts beside each other per row.
 */
function partShapes(pass: TiledPass, outputs: number[][], s: AttentionSizes, splits: number): number[][] {
  if (pass === 'forward') return [[s.B, s.H, s.Tq, splits, s.K], [s.B, s.H, s.Tq, splits, 2]];
  return outputs.map((shape) => [...shape.slice(0, -1), splits, s.K]);
}

/** A split tiled pass's outputs from its partial results, which it frees. */
function combineParts(
  backend: WebGPUBackend, label: string, pass: TiledPass, hooks: string, parts: tf.TensorInfo[], outputs: number[][],
  s: AttentionSizes, splits: number, params: Param[], constants: Record<string, number>,
): tf.TensorInfo[] {
  try {
    if (pass === 'forward') return mergeRows(backend, label, hooks, parts[0]!, parts[1]!, s, params, constants);
    return parts.map((part, n) => sumParts(backend, part, outputs[n]!, splits));
  } finally {
    for (const part of parts) backend.disposeData(part.dataId);
  }
}

const MERGE_WG = 64;

/**
 * The merge of partial rows (`common/attention-merge.wgsl`) into o and the row statistic, with
 * the family's row hooks: the split-K decode's second pass, and a split forward's.
 */
function mergeRows(
  backend: WebGPUBackend, label: string, rowHooks: string, partO: tf.TensorInfo, partRow: tf.TensorInfo,
  s: AttentionSizes, params: Param[], constants: Record<string, number>,
): tf.TensorInfo[] {
  const [x, y] = grid1d(s.H * s.Tq * s.K / lanesFor(s.K), MERGE_WG);
  return runKernel(backend, skeletonKernel(`${label}Merge`, 'merge', '', rowHooks, s.K), {
    inputs: [partO, partRow],
    outputs: [[s.B, s.Tq, s.H, s.K], [s.B, s.H, s.Tq]],
    params,
    constants: { ...constants, WG: MERGE_WG },
    // an invocation per (head, query row, channel group), per batch row
    workgroups: [x, y, s.B],
  });
}

function dropoutConstant(attrs: AttentionAttrs): Record<string, number> {
  return hasDropout(attrs) ? { DROPOUT: 1 } : {};
}

/**
 * Split-K pays off when the tiled kernel would leave most of its invocations idle: its tile of
 * BR query rows would hold at most 8 (Flash-Decoding). Over many keys its chunks run in
 * parallel; over a few, its first pass still beats a tiled pass that stages every key tile in
 * workgroup memory for one row (1.9–5× on SwiftShader from 8 to 1024 keys, one query;
 * docs/flash-style-tiled-attention.md). Dropout is for training, which runs whole sequences: it
 * always takes the tiled path.
 */
function useSplit(s: AttentionSizes, a: AttentionAttrs & { split?: Split }): boolean {
  if (hasDropout(a)) return false;
  const split = a.split ?? 'auto';
  if (split !== 'auto') return split === 'always';
  return s.Tq <= 8;
}

/**
 * The split-K decode (`common/attention-split.wgsl`, then `common/attention-merge.wgsl`): the
 * family's row hooks over each chunk of keys, then the merge of the partial rows into o and the
 * row statistic, the tiled forward's outputs (and the packed int inputs). Keys that make one
 * chunk take a single launch, which finishes each row itself. An invocation, a workgroup or a
 * subgroup folds each chunk ({@link splitPass}); the lanes of a workgroup or subgroup share its
 * tiles, so a chunk then holds as many tiles for each of them. With a key list
 * ({@link KEY_LIST_INPUT}), the chunks are of each row's listed keys, read where they lie.
 */
function runSplit(
  backend: WebGPUBackend, m: AttentionFamily, inputs: tf.NamedTensorInfoMap, s: AttentionSizes, a: AttentionAttrs,
  constants: Record<string, number>,
): tf.TensorInfo[] {
  const { q, k, v } = namedInputs(inputs, 'q', 'k', 'v');
  const { pass, label, WG, RL, chunk, grid } = splitPass(backend, s.K);
  const splits = Math.ceil(s.Tk / chunk);
  const listed = inputs[KEY_LIST_INPUT];
  // a key list: its counts are the lone kvLengths, its rows the list (common/cache-tile.wgsl)
  const bound: Omit<BoundVisibility, 'release'> = listed
    ? { vis: listed, planAt: s.B, constants: { VISIBILITY: 1, LONE: 0 }, packed: null }
    : bindVisibility(backend, inputs, q);
  const params = attentionParams(s, a, bound.planAt, { chunk, splits });
  const [x, y] = grid(s.H * s.Tq * splits);
  const kernel = skeletonKernel(`${m.label}${label}`, pass, DENSE_LAYOUT.wgsl, m.rowHooks, s.K, 1, RL);
  const launch = {
    inputs: [q, k, v, bound.vis], params, workgroups: [x, y, s.B] as [number, number, number],
    constants: { ...constants, WG, ...bound.constants, ...(listed ? { KEY_LIST: 1 } : {}) },
  };
  const withPacked = (out: tf.TensorInfo[]) => bound.packed ? [...out, bound.packed] : out;
  if (splits === 1) {
    // one chunk: it writes o and the row statistic itself, without a merge
    return withPacked(runKernel(backend, kernel, {
      ...launch, outputs: [q.shape, [s.B, s.H, s.Tq]], constants: { ...launch.constants, FINISH: 1 },
    }));
  }
  const parts = runKernel(backend, kernel, { ...launch, outputs: partShapes('forward', [], s, splits) });
  return withPacked(combineParts(backend, m.label, 'forward', m.rowHooks, parts, [], s, splits, params, constants));
}

/**
 * tfjs kernel name, webgpu only. Inputs `dO` and `o` `[B, Tq, H, K]` and `statistic` `[B, H, Tq]`;
 * output `[B, H, Tq, 2]`: each row's statistic beside delta = rowsum(dO ∘ o).
 */
const ATTENTION_DELTA = 'MixersAttentionDelta';
const DELTA_WG = 64;
const DELTA = rowKernels('AttentionDelta', deltaBody);

function attentionDelta({ inputs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { dO, o, statistic } = namedInputs(inputs, 'dO', 'o', 'statistic');
  const [B, Tq, H, K] = dO.shape as [number, number, number, number];
  const lanes = lanesFor(K);
  const rows = B * H * Tq;
  const gpu = backend as WebGPUBackend;
  const { kernel, constants, workgroups } = rowLaunch(gpu, DELTA, lanes, rows, DELTA_WG);
  return runKernel(gpu, kernel, {
    inputs: [dO, o, statistic],
    outputs: [[B, H, Tq, 2]],
    params: [rows, Tq, H, K / lanes].map((u32) => ({ u32 })),
    constants,
    workgroups,
  })[0]!;
}

registerKernelOnce({ kernelName: ATTENTION_DELTA, backendName: 'webgpu', kernelFunc: attentionDelta });

/**
 * Registers, for the webgpu backend, an attention family on the skeleton: its forward (the
 * split-K decode when the call's `split` attr asks for it or, on `'auto'`, when few queries face
 * many keys, and a dense layout; the tiled forward otherwise), its dQ and dK/dV kernels and the
 * forward's gradient: delta = rowsum(dO∘o) in tfjs ops, beside the forward's statistic in one
 * `[B, H, Tq, 2]` buffer, then the two kernels, which read the forward's packed int inputs. The
 * int inputs get no gradient. The forward's attrs reach both kernels, its dropout among them,
 * so they drop the weights the forward dropped; o, and so delta, is the dropped output.
 */
export function registerAttentionFamily(m: AttentionFamily): void {
  const layout = m.layout ?? DENSE_LAYOUT;
  const constantsOf = (attrs: tf.NamedAttrMap | undefined) => (attrs && m.constants?.(attrs)) ?? {};
  registerKernelOnce({
    kernelName: m.forward,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const gpu = backend as WebGPUBackend;
      const { q, k } = namedInputs(inputs, 'q', 'k');
      const listed = inputs[KEY_LIST_INPUT];
      // with a key list, the keys are the list's M a row, not the cache's rows
      const s = listed ? { ...sizesOf(q, k), Tk: keyListWidth(listed, q) } : sizesOf(q, k);
      const a = attrs as unknown as AttentionAttrs & { split?: Split };
      if (!m.layout && (listed || useSplit(s, a))) return runSplit(gpu, m, inputs, s, a, constantsOf(attrs));
      return runSkeleton(gpu, layout, m.label, 'forward', m.rowHooks, inputs, [], [q.shape, [s.B, s.H, s.Tq]], a,
        constantsOf(attrs));
    },
  });
  const launch = (pass: 'dq' | 'dkv') => ({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]) => {
    const g = namedInputs(inputs, 'q', 'k', 'dO', 'stats');
    return runSkeleton(backend as WebGPUBackend, layout, m.label, pass, m.weights,
      inputs, [g.dO, g.stats], pass === 'dq' ? [g.q.shape] : [g.k.shape, g.k.shape], attrs as unknown as AttentionAttrs, {});
  };
  registerKernelOnce({ kernelName: m.dq, backendName: 'webgpu', kernelFunc: (args) => launch('dq')(args)[0]! });
  registerKernelOnce({ kernelName: m.dkv, backendName: 'webgpu', kernelFunc: launch('dkv') });
  registerGradientOnce({
    kernelName: m.forward,
    inputsToSave: ['q', 'k', 'v'],
    outputsToSave: [true, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v, o, statistic, packed] = saved as tf.Tensor[];
      const dO = Array.isArray(dy) ? dy[0]! : dy;
      // delta_i = rowsum(dO_i ∘ o_i), [B, H, Tq], beside the statistic in one buffer: the dK/dV
      // kernel binds 8 storage buffers with it, the most a shader may count on
      const stats = tf.engine().runKernel(ATTENTION_DELTA, { dO, o: o!, statistic: statistic! }) as tf.Tensor;
      const inputs: tf.NamedTensorMap = { q: q!, k: k!, v: v!, dO, stats };
      if (packed) inputs[PACKED_INPUT] = packed;
      const dq = tf.engine().runKernel(m.dq, inputs, attrs) as tf.Tensor;
      const [dk, dv] = tf.engine().runKernel(m.dkv, inputs, attrs) as tf.Tensor[];
      return { q: () => dq, k: () => dk!, v: () => dv! };
    },
  });
}
