import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import lanes1 from '../../../kernels/common/lanes-1.wgsl';
import lanes4 from '../../../kernels/common/lanes-4.wgsl';
import attentionHelpers from '../../../kernels/flash-style-tiled-attention/attention.wgsl';
import kvTileHelpers from '../../../kernels/flash-style-tiled-attention/kv-tile.wgsl';
import forwardBody from '../../../kernels/flash-style-tiled-attention/forward.wgsl';
import backwardDqBody from '../../../kernels/flash-style-tiled-attention/backward-dq.wgsl';
import backwardDkvBody from '../../../kernels/flash-style-tiled-attention/backward-dkv.wgsl';
import decodePartialBody from '../../../kernels/flash-style-tiled-attention/decode-partial.wgsl';
import decodeMergeBody from '../../../kernels/flash-style-tiled-attention/decode-merge.wgsl';
import { lanesFor, namedInputs, runKernel, type KernelSource, type Param } from '../../webgpu/runtime.js';
import type { AttentionSizes } from '../../attention/validate.js';

/** tfjs kernel names. The forward has two outputs: o and the per-row log-sum-exp. */
export const FLASH_ATTENTION = 'MixersFlashAttention';
export const FLASH_ATTENTION_DQ = 'MixersFlashAttentionGradQ';
/** Two outputs: dk and dv. */
export const FLASH_ATTENTION_DKV = 'MixersFlashAttentionGradKV';

/** Query rows per workgroup: one invocation each. */
const BR = 64;
/**
 * Workgroup memory for two tiles of BC rows: WebGPU's guaranteed minimum of 16 KiB, less room
 * for two per-row f32 arrays of up to 32 entries (the dK/dV kernel's lse and delta).
 */
const TILE_BYTES = 16384 - 2 * 32 * 4;

/** `'auto'`: split-K when few queries face many keys; `'never'` / `'always'` force a path. */
export type Split = 'auto' | 'never' | 'always';

interface Attrs { causal: boolean; scale: number; split: Split }

/** Keys per split of the split-K decode. */
const SPLIT_CHUNK = 128;

/**
 * Split-K pays off when the tiled kernel would leave most of its invocations idle: a tile of
 * BR query rows holds few rows, while the keys are many (Flash-Decoding).
 */
function useSplit(s: AttentionSizes, split: Split): boolean {
  if (split !== 'auto') return split === 'always';
  return s.Tq <= 8 && s.Tk >= 4 * SPLIT_CHUNK;
}

/** Rows per tile: as many as fit two tiles of K floats in {@link TILE_BYTES}, at most 32. */
function keysPerTile(K: number): number {
  return Math.min(32, Math.floor(TILE_BYTES / (2 * 4 * K)));
}

const sources = new Map<string, KernelSource>();

/**
 * The kernel for a head dimension: the sizes of its register and workgroup arrays are WGSL
 * constants, so each (K, lanes) gets its own module (and pipeline, keyed by its code).
 */
function kernelFor(name: string, parts: string[], K: number): { kernel: KernelSource; lanes: 1 | 4 } {
  const lanes = lanesFor(K);
  const key = `${name}|${K}`;
  let kernel = sources.get(key);
  if (!kernel) {
    const sizes = `const KV: u32 = ${K / lanes}u;\nconst BR: u32 = ${BR}u;\nconst BC: u32 = ${keysPerTile(K)}u;`;
    kernel = { name: `${name}K${K}`, code: [lanes === 4 ? lanes4 : lanes1, sizes, attentionHelpers, ...parts].join('\n') };
    sources.set(key, kernel);
  }
  return { kernel, lanes };
}

function sizesOf(q: tf.TensorInfo, k: tf.TensorInfo): AttentionSizes {
  const [B, Tq, H, K] = q.shape as [number, number, number, number];
  const [, Tk, Hkv] = k.shape as [number, number, number];
  return { B, Tq, Tk, H, Hkv, K };
}

function paramsOf(s: AttentionSizes, a: Attrs, splits = 0): Param[] {
  return [{ u32: s.Tq }, { u32: s.Tk }, { u32: s.H }, { u32: s.Hkv }, { f32: a.scale }, { u32: a.causal ? 1 : 0 },
    { u32: splits > 0 ? SPLIT_CHUNK : 0 }, { u32: splits }];
}

/** Split-K decode: partials per key chunk, then their merge into o and lse. */
function splitForward(backend: WebGPUBackend, q: tf.TensorInfo, k: tf.TensorInfo, v: tf.TensorInfo, s: AttentionSizes, a: Attrs) {
  const splits = Math.ceil(s.Tk / SPLIT_CHUNK);
  const params = paramsOf(s, a, splits);
  const partial = kernelFor('FlashAttentionDecodePartial', [decodePartialBody], s.K).kernel;
  const [partO, partML] = runKernel(backend, partial, {
    inputs: [q, k, v],
    outputs: [[s.B, s.H, s.Tq, splits, s.K], [s.B, s.H, s.Tq, splits, 2]],
    params,
    workgroups: [Math.ceil(splits / 64), s.H * s.Tq, s.B],
  });
  const merge = kernelFor('FlashAttentionDecodeMerge', [decodeMergeBody], s.K).kernel;
  const out = runKernel(backend, merge, {
    inputs: [partO!, partML!],
    outputs: [q.shape, [s.B, s.H, s.Tq]],
    params,
    workgroups: [Math.ceil(s.Tq / 64), s.H, s.B],
  });
  backend.disposeData(partO!.dataId);
  backend.disposeData(partML!.dataId);
  return out;
}

tf.registerKernel({
  kernelName: FLASH_ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v } = namedInputs(inputs, 'q', 'k', 'v');
    const s = sizesOf(q, k);
    const a = attrs as unknown as Attrs;
    if (useSplit(s, a.split)) return splitForward(backend as WebGPUBackend, q, k, v, s, a);
    const { kernel } = kernelFor('FlashAttentionForward', [kvTileHelpers, forwardBody], s.K);
    return runKernel(backend as WebGPUBackend, kernel, {
      inputs: [q, k, v],
      outputs: [q.shape, [s.B, s.H, s.Tq]],
      params: paramsOf(s, a),
      workgroups: [Math.ceil(s.Tq / BR), s.H, s.B],
    });
  },
});

interface GradInputs { q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo; dO: tf.TensorInfo; lse: tf.TensorInfo; delta: tf.TensorInfo }

function gradInputs(inputs: tf.NamedTensorInfoMap): GradInputs {
  return namedInputs(inputs, 'q', 'k', 'v', 'dO', 'lse', 'delta');
}

tf.registerKernel({
  kernelName: FLASH_ATTENTION_DQ,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const g = gradInputs(inputs);
    const s = sizesOf(g.q, g.k);
    const { kernel } = kernelFor('FlashAttentionBackwardDq', [kvTileHelpers, backwardDqBody], s.K);
    return runKernel(backend as WebGPUBackend, kernel, {
      inputs: [g.q, g.k, g.v, g.dO, g.lse, g.delta],
      outputs: [g.q.shape],
      params: paramsOf(s, attrs as unknown as Attrs),
      workgroups: [Math.ceil(s.Tq / BR), s.H, s.B],
    })[0]!;
  },
});

tf.registerKernel({
  kernelName: FLASH_ATTENTION_DKV,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const g = gradInputs(inputs);
    const s = sizesOf(g.q, g.k);
    const { kernel } = kernelFor('FlashAttentionBackwardDkv', [backwardDkvBody], s.K);
    return runKernel(backend as WebGPUBackend, kernel, {
      inputs: [g.q, g.k, g.v, g.dO, g.lse, g.delta],
      outputs: [g.k.shape, g.k.shape],
      params: paramsOf(s, attrs as unknown as Attrs),
      workgroups: [Math.ceil(s.Tk / BR), s.Hkv, s.B],
    });
  },
});

tf.registerGradient({
  kernelName: FLASH_ATTENTION,
  inputsToSave: ['q', 'k', 'v'],
  outputsToSave: [true, true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, o, lse] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const dO = Array.isArray(dy) ? dy[0]! : dy;
    // delta_i = rowsum(dO_i ∘ o_i), [B, H, Tq]: shared by both backward kernels
    const delta = tf.sum(tf.mul(dO, o), -1).transpose([0, 2, 1]);
    const inputs = { q, k, v, dO, lse, delta };
    const dq = tf.engine().runKernel(FLASH_ATTENTION_DQ, inputs, attrs) as tf.Tensor;
    const [dk, dv] = tf.engine().runKernel(FLASH_ATTENTION_DKV, inputs, attrs) as tf.Tensor[];
    return { q: () => dq, k: () => dk!, v: () => dv! };
  },
});
