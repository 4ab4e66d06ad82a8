import lanes1 from '../../kernels/common/lanes-1.wgsl';
import lanes4 from '../../kernels/common/lanes-4.wgsl';
import attentionHelpers from '../../kernels/common/attention.wgsl';
import type * as tf from '@tensorflow/tfjs';
import { lanesFor, type KernelSource, type Param } from '../webgpu/runtime.js';
import type { AttentionSizes } from './validate.js';

/** Query (or key) rows per workgroup in the tiled attention kernels: one invocation each. */
export const BR = 64;

/**
 * Workgroup memory for two tiles of BC rows: WebGPU's guaranteed minimum of 16 KiB, less room
 * for two per-row f32 arrays of up to 32 entries (lse and delta in a dK/dV kernel).
 */
const TILE_BYTES = 16384 - 2 * 32 * 4;

/** Rows per tile: as many as fit two tiles of K floats in {@link TILE_BYTES}, at most 32. */
export function rowsPerTile(K: number): number {
  return Math.min(32, Math.floor(TILE_BYTES / (2 * 4 * K)));
}

const sources = new Map<string, KernelSource>();

/**
 * An attention kernel for one head dimension K. The sizes of its register and workgroup
 * arrays are WGSL constants (`KV` = K / lanes, `BR`, `BC`), so each (kernel, K) is its own
 * module, and pipeline: the runtime keys pipelines by their code. `parts` are the WGSL files
 * after `common/attention.wgsl`, the entry point last.
 */
export function attentionKernel(name: string, parts: string[], K: number): KernelSource {
  const key = `${name}|${K}`;
  let kernel = sources.get(key);
  if (!kernel) {
    const lanes = lanesFor(K);
    const sizes = `const KV: u32 = ${K / lanes}u;\nconst BR: u32 = ${BR}u;\nconst BC: u32 = ${rowsPerTile(K)}u;`;
    kernel = { name: `${name}K${K}`, code: [lanes === 4 ? lanes4 : lanes1, sizes, attentionHelpers, ...parts].join('\n') };
    sources.set(key, kernel);
  }
  return kernel;
}

/** The sizes of q `[B, Tq, H, K]` and k `[B, Tk, Hkv, K]` inside a kernel function. */
export function sizesOf(q: tf.TensorInfo, k: tf.TensorInfo): AttentionSizes {
  const [B, Tq, H, K] = q.shape as [number, number, number, number];
  const [, Tk, Hkv] = k.shape as [number, number, number];
  return { B, Tq, Tk, H, Hkv, K };
}

/** The `Params` uniform of `kernels/common/attention.wgsl`, field by field. */
export function attentionParams(
  s: AttentionSizes, scale: number, causal: boolean, split?: { chunk: number; splits: number },
): Param[] {
  return [{ u32: s.Tq }, { u32: s.Tk }, { u32: s.H }, { u32: s.Hkv }, { f32: scale }, { u32: causal ? 1 : 0 },
    { u32: split?.chunk ?? 0 }, { u32: split?.splits ?? 0 }];
}
