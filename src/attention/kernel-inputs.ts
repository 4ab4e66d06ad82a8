/**
 * What an attention kernel's launch binds besides q, k and v: the sizes it reads from the
 * tensors, the `Params` uniform of `kernels/common/attention.wgsl`, and the int inputs (masks,
 * lengths, offsets, segment ids, a tile plan, a decode step's key list) in the one `vis` buffer.
 * The kernels' sources are assembled in `kernel-source.ts`.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import packIntsBody from '../../kernels/common/pack-ints.wgsl';
import visHeader from '../../kernels/common/vis-header.wgsl';
import segmentOrderBody from '../../kernels/common/segment-order.wgsl';
import { grid1d, runKernel, type KernelSource, type Param } from '../webgpu/runtime.js';
import type { AttentionSizes } from './validate.js';
import { dropoutThreshold } from './dropout.js';

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
/** The int inputs a kernel can read alone without the header: one int a batch row. */
const LONE_INPUTS: readonly string[] = ['kvLengths', 'queryOffsets'];
/**
 * Ints of the packed buffer's header (`kernels/common/vis-header.wgsl`): where each input starts
 * (−1 absent), the mask's two strides, where the segment ids' order flags start.
 */
const HEADER = 8;
const ORDER_AT = 7;
/** The name under which a forward's packed buffer reaches the backward kernels. */
export const PACKED_INPUT = 'packed';
/**
 * The name of a split-K decode's key list, an int32 `[B + B·M]` input in place of the int inputs:
 * each batch row's count of keys, then each row's M keys as rows of k and v (all B·S of them;
 * zeros past the count). Row b's query attends to its listed keys alone, read where they lie
 * (`kernels/common/cache-tile.wgsl`, KEY_LIST): BlockSparse's decode step
 * (`kernels/block-sparse/step-keys.wgsl` makes the list).
 */
export const KEY_LIST_INPUT = 'listed';

/** M, the keys a row of the key list `listed` names (see {@link KEY_LIST_INPUT}), for queries `q [B, …]`. */
export function keyListWidth(listed: tf.TensorInfo, q: tf.TensorInfo): number {
  const B = q.shape[0]!;
  return (tf.util.sizeFromShape(listed.shape) - B) / B;
}

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
  /**
   * The `VISIBILITY` pipeline constant, 1 when the call has an int input, and `LONE`, the field
   * of a lone input bound as it is (`kernels/common/visibility.wgsl`).
   */
  constants: { VISIBILITY: number; LONE?: number };
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
 * or `fallback` is bound, never read. A lone kvLengths or queryOffsets, where no gradient is
 * being recorded, is bound as it is.
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
  // a lone kvLengths or queryOffsets (a decode step's offsets), in a call no gradient will read,
  // is bound as it is: no pack launch, and no packed buffer for a backward
  const lone = present.length === 1 && !plan && LONE_INPUTS.includes(present[0]!) && tf.engine().state.gradientDepth === 0;
  if (lone) {
    return { vis: inputs[present[0]!]!, planAt: 0, constants: { VISIBILITY: 1, LONE: VISIBILITY_INPUTS.indexOf(present[0]!) }, packed: null, release: none };
  }
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
