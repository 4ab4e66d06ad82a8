import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import lanes1 from '../../kernels/common/lanes-1.wgsl';
import lanes4 from '../../kernels/common/lanes-4.wgsl';
import grid from '../../kernels/common/grid.wgsl';
import packIntsBody from '../../kernels/common/pack-ints.wgsl';
import attentionHelpers from '../../kernels/common/attention.wgsl';
import visHeader from '../../kernels/common/vis-header.wgsl';
import visibilityHelpers from '../../kernels/common/visibility.wgsl';
import segmentOrderBody from '../../kernels/common/segment-order.wgsl';
import dropoutHelpers from '../../kernels/common/dropout.wgsl';
import rowRegisters from '../../kernels/common/row-registers.wgsl';
import kvTileHelpers from '../../kernels/common/kv-tile.wgsl';
import keyRows from '../../kernels/common/key-rows.wgsl';
import keyQuads from '../../kernels/common/key-quads.wgsl';
import attendTileHelper from '../../kernels/common/attend-tile.wgsl';
import attendTilePair from '../../kernels/common/attend-tile-pair.wgsl';
import queryTileHelpers from '../../kernels/common/query-tile.wgsl';
import forwardBody from '../../kernels/common/attention-forward.wgsl';
import cacheTile from '../../kernels/common/cache-tile.wgsl';
import splitChunk from '../../kernels/common/split-chunk.wgsl';
import splitBody from '../../kernels/common/attention-split.wgsl';
import splitSubgroupsBody from '../../kernels/common/attention-split-subgroups.wgsl';
import subgroupJob from '../../kernels/common/subgroup-job.wgsl';
import mergeBody from '../../kernels/common/attention-merge.wgsl';
import backwardDqBody from '../../kernels/common/attention-backward-dq.wgsl';
import backwardDkvBody from '../../kernels/common/attention-backward-dkv.wgsl';
import { grid1d, lanesFor, runKernel, type KernelSource, type Param } from '../webgpu/runtime.js';
import { SUBGROUP_DIRECTIVES } from '../webgpu/subgroups.js';
import type { AttentionSizes } from './validate.js';
import { dropoutThreshold } from './dropout.js';

/** Query (or key) rows per workgroup in the tiled attention kernels. */
export const BR = 64;

/**
 * Workgroup memory for two tiles of BC rows: WebGPU's guaranteed minimum of 16 KiB, less room
 * for two per-row f32 arrays of up to 32 entries (the row factor and delta in a dK/dV kernel)
 * and the 16 bytes of a segment-id span (`idSpan` in `kernels/common/visibility.wgsl`).
 */
const TILE_BYTES = 16384 - 2 * 32 * 4 - 16;

/**
 * Rows per tile: as many as fit two tiles of K floats in {@link TILE_BYTES}, at most 32, in
 * whole quads of 4 (the forward forms a quad of keys' scores as one vec4,
 * `kernels/common/key-quads.wgsl`). At least 4 for every K up to `MAX_HEAD_DIM` (256).
 */
export function rowsPerTile(K: number): number {
  return 4 * Math.min(8, Math.floor(TILE_BYTES / (2 * 4 * K * 4)));
}

const sources = new Map<string, KernelSource>();

/**
 * An attention kernel for one head dimension K. The sizes of its register and workgroup
 * arrays are WGSL constants (`KV` = K / lanes, `BR`, `BC`, `BC4` = BC / 4, and `RQ` rows per
 * invocation, `NT` = BR / RQ invocations per workgroup), so each (kernel, K) is its own module,
 * and pipeline: the runtime keys pipelines by their code. `parts` are the WGSL files after
 * `common/attention.wgsl`, the entry point last; `directives` (`enable subgroups;`) open the
 * module.
 */
export function attentionKernel(name: string, parts: string[], K: number, rows = 1, directives = ''): KernelSource {
  const key = `${name}|${K}|${rows}|${directives}`;
  let kernel = sources.get(key);
  if (!kernel) {
    const lanes = lanesFor(K);
    const BC = rowsPerTile(K);
    const sizes = [`KV: u32 = ${K / lanes}u`, `BR: u32 = ${BR}u`, `BC: u32 = ${BC}u`, `BC4: u32 = ${BC / 4}u`,
      `RQ: u32 = ${rows}u`, `NT: u32 = ${BR / rows}u`].map((c) => `const ${c};`).join('\n');
    const code = [directives, lanes === 4 ? lanes4 : lanes1, sizes, attentionHelpers, ...parts].filter((p) => p).join('\n');
    kernel = { name: `${name}K${K}`, code };
    sources.set(key, kernel);
  }
  return kernel;
}

/**
 * A pass of the attention skeleton: the tiled forward, dQ, dK with dV, and the split-K decode's
 * two passes (partial rows per chunk of keys, by an invocation or, with subgroups, by a subgroup;
 * then their merge).
 */
export type SkeletonPass = 'forward' | 'dq' | 'dkv' | 'split' | 'splitSubgroups' | 'merge';

const SPLIT_PARTS = [grid, rowRegisters, cacheTile, attendTileHelper, splitChunk];

/**
 * The WGSL of one pass after the family's layout and hooks, its query rows per invocation (the
 * forward's two share each key and value they read; see `common/attend-tile-pair.wgsl`) and the
 * directives it opens with; the merge reads neither keys nor layout.
 */
const SKELETON: Record<SkeletonPass, { visibility: boolean; parts: string[]; rows?: number; directives?: string }> = {
  forward: { visibility: true, parts: [rowRegisters, keyQuads, kvTileHelpers, attendTilePair, forwardBody], rows: 2 },
  dq: { visibility: true, parts: [rowRegisters, keyRows, kvTileHelpers, backwardDqBody] },
  dkv: { visibility: true, parts: [queryTileHelpers, backwardDkvBody] },
  split: { visibility: true, parts: [...SPLIT_PARTS, splitBody] },
  splitSubgroups: { visibility: true, parts: [...SPLIT_PARTS, subgroupJob, splitSubgroupsBody], directives: SUBGROUP_DIRECTIVES },
  merge: { visibility: false, parts: [mergeBody] },
};

/**
 * One pass of the attention skeleton (`kernels/common/attention-*.wgsl`) for one family:
 * `layout` gives its tiles and runs and its own mask (`common/dense-layout.wgsl` or
 * `block-sparse/layout.wgsl`), `hooks` its row hooks (forward, split-K: `online-softmax.wgsl`
 * or ExpressiveAttention's `forward.wgsl`) or pair weights (`weights.wgsl`, backward). Every pass
 * that reads keys reads the visibility predicate of `common/visibility.wgsl` and the dropout
 * multiplier of `common/dropout.wgsl`.
 */
export function skeletonKernel(name: string, pass: SkeletonPass, layout: string, hooks: string, K: number): KernelSource {
  const { visibility, parts, rows, directives } = SKELETON[pass];
  const front = visibility ? [visHeader, visibilityHelpers, dropoutHelpers, layout] : [];
  return attentionKernel(name, [...front, hooks, ...parts], K, rows, directives);
}

/** The sizes of q `[B, Tq, H, K]` and k `[B, Tk, Hkv, K]` inside a kernel function. */
export function sizesOf(q: tf.TensorInfo, k: tf.TensorInfo): AttentionSizes {
  const [B, Tq, H, K] = q.shape as [number, number, number, number];
  const [, Tk, Hkv] = k.shape as [number, number, number];
  return { B, Tq, Tk, H, Hkv, K };
}

/** The attrs every attention kernel reads (see `visibilityAttrs`); a mixer's attrs may hold more. */
export interface AttentionAttrs {
  scale: number;
  causal: boolean;
  /** w, 0 or absent for none. */
  window?: number;
  /** The attention dropout rate p (`dropoutAttrs`), absent or 0 for none. */
  dropout?: number;
  /** The dropout seed, with `dropout`. */
  seed?: number;
}

/**
 * Whether a call's attrs ask for attention dropout.
 *
 * @example
 * ```ts
 * hasDropout({ scale: 0.5, causal: true, dropout: 0.1, seed: 1 });  // true
 * ```
 */
export function hasDropout(a: AttentionAttrs): boolean {
  return (a.dropout ?? 0) > 0;
}

/** The `Params` uniform of `kernels/common/attention.wgsl`, field by field. */
export function attentionParams(
  s: AttentionSizes, a: AttentionAttrs, planAt = 0, split?: { chunk: number; splits: number },
): Param[] {
  return [{ u32: s.Tq }, { u32: s.Tk }, { u32: s.H }, { u32: s.Hkv }, { f32: a.scale }, { u32: a.causal ? 1 : 0 },
    { u32: split?.chunk ?? 0 }, { u32: split?.splits ?? 0 }, { u32: a.window ?? 0 }, { u32: planAt },
    ...dropoutParams(a)];
}

/** The dropout fields of `Params` (`kernels/common/dropout.wgsl`): threshold, seed, 1/(1 − p); zeros without dropout. */
function dropoutParams(a: AttentionAttrs): Param[] {
  if (!hasDropout(a)) return [{ u32: 0 }, { u32: 0 }, { f32: 1 }];
  return [{ u32: dropoutThreshold(a.dropout!) }, { u32: a.seed ?? 0 }, { f32: 1 / (1 - a.dropout!) }];
}

/** The int inputs of an attention kernel call, in the order of the packed header. */
const VISIBILITY_INPUTS = ['kvLengths', 'queryOffsets', 'segmentsQuery', 'segmentsKey', 'mask'] as const;
/**
 * Ints of the packed buffer's header (`kernels/common/vis-header.wgsl`): where each input starts
 * (−1 absent), the mask's two strides, where the segment ids' order flags start.
 */
const HEADER = 8;
const ORDER_AT = 7;
/** The name under which a forward's packed buffer reaches the backward kernels. */
export const PACKED_INPUT = 'packed';

const PACK_INTS: KernelSource = { name: 'PackInts', code: [grid, packIntsBody].join('\n') };
const PACK_WG = 256;
const MAX_SLOTS = 6;

/**
 * One int32 buffer holding `header`, every slot in order, then `room` zeros for a later kernel
 * to fill (`kernels/common/pack-ints.wgsl`): a kernel may count on only 8 storage buffers, so
 * its int inputs travel in one.
 */
function packInts(backend: WebGPUBackend, header: number[], slots: tf.TensorInfo[], room = 0): tf.TensorInfo {
  const ends: number[] = [];
  let end = header.length;
  for (const slot of slots) ends.push(end += tf.util.sizeFromShape(slot.shape));
  while (ends.length < MAX_SLOTS) ends.push(end);
  const total = end + room;
  const h = [...header, ...new Array<number>(HEADER - header.length).fill(0)];
  const [packed] = runKernel(backend, PACK_INTS, {
    // an absent slot is bound to the first one, and never read
    inputs: Array.from({ length: MAX_SLOTS }, (_, n) => slots[n] ?? slots[0]!),
    outputs: [{ shape: [total], dtype: 'int32' }],
    params: [{ u32: total }, { u32: header.length }, ...h.map((i32) => ({ i32 })), ...ends.map((u32) => ({ u32 }))],
    constants: { WG: PACK_WG },
    workgroups: grid1d(total, PACK_WG),
  });
  return packed!;
}

const SEGMENT_ORDER: KernelSource = { name: 'SegmentOrder', code: [visHeader, segmentOrderBody].join('\n') };

/** Fills the order flags of `packed` in place, for queries `[B, Tq]` and keys `[B, Tk]` of segment ids. */
function markSegmentOrder(backend: WebGPUBackend, packed: tf.TensorInfo, B: number, Tq: number, Tk: number): void {
  runKernel(backend, SEGMENT_ORDER, {
    inputs: [], outputs: [], updates: [packed], params: [{ u32: Tq }, { u32: Tk }], workgroups: [B, 2, 1],
  });
}

/** How one attention launch binds its int inputs (see {@link bindVisibility}). */
export interface BoundVisibility {
  /** The buffer bound as `vis`. */
  vis: tf.TensorInfo;
  /** Where the tile plan starts in it. */
  planAt: number;
  /** The `VISIBILITY` pipeline constant: 1 when the call has an int input. */
  constants: { VISIBILITY: number };
  /** A forward's new packed buffer, which it returns as a third output for the backward; else null. */
  packed: tf.TensorInfo | null;
  /** Frees what {@link bindVisibility} made for this launch alone (after the launch is recorded). */
  release(): void;
}

/**
 * The `vis` binding of an attention launch, from the kernel call's named inputs: a forward's
 * int inputs (`kvLengths`, `queryOffsets`, `segmentsQuery`, `segmentsKey`, `mask`, only those
 * given) packed after a header into one int32 buffer; a backward's `packed` input, which the
 * forward returned; `plan` (BlockSparse's tile plan) after them. Without int inputs, `plan`
 * or `fallback` is bound, never read.
 */
export function bindVisibility(
  backend: WebGPUBackend, inputs: tf.NamedTensorInfoMap, fallback: tf.TensorInfo, plan?: tf.TensorInfo,
): BoundVisibility {
  const none = () => undefined;
  const saved = inputs[PACKED_INPUT];
  if (saved) {
    if (!plan) return { vis: saved, planAt: 0, constants: { VISIBILITY: 1 }, packed: null, release: none };
    const vis = packInts(backend, [], [saved, plan]);
    return {
      vis, planAt: tf.util.sizeFromShape(saved.shape), constants: { VISIBILITY: 1 }, packed: null,
      release: () => backend.disposeData(vis.dataId),
    };
  }
  const present = VISIBILITY_INPUTS.filter((name) => inputs[name]);
  if (present.length === 0) return { vis: plan ?? fallback, planAt: 0, constants: { VISIBILITY: 0 }, packed: null, release: none };
  const header = new Array<number>(HEADER).fill(-1);
  header[5] = header[6] = 0;
  // the segment ids' order flags, 2 per row, follow the plan (or the last input)
  const segments = inputs.segmentsQuery && inputs.segmentsKey
    ? { B: inputs.segmentsQuery.shape[0]!, Tq: inputs.segmentsQuery.shape[1]!, Tk: inputs.segmentsKey.shape[1]! } : null;
  const slots: tf.TensorInfo[] = [];
  let at = HEADER;
  VISIBILITY_INPUTS.forEach((name, field) => {
    const t = inputs[name];
    if (!t) return;
    header[field] = at;
    at += tf.util.sizeFromShape(t.shape);
    slots.push(t);
    if (name === 'mask') {
      // [B|1, Tq|1, Tk]: a broadcast axis has stride 0
      const [Bm, Tqm, Tk] = t.shape as [number, number, number];
      header[5] = Bm === 1 ? 0 : Tqm * Tk;
      header[6] = Tqm === 1 ? 0 : Tk;
    }
  });
  if (plan) slots.push(plan);
  if (segments) header[ORDER_AT] = at + (plan ? tf.util.sizeFromShape(plan.shape) : 0);
  const vis = packInts(backend, header, slots, segments ? 2 * segments.B : 0);
  if (segments) markSegmentOrder(backend, vis, segments.B, segments.Tq, segments.Tk);
  return { vis, planAt: at, constants: { VISIBILITY: 1 }, packed: vis, release: none };
}
