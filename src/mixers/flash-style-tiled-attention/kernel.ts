import type * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import kvTileHelpers from '../../../kernels/common/kv-tile.wgsl';
import onlineSoftmax from '../../../kernels/common/online-softmax.wgsl';
import forwardBody from '../../../kernels/flash-style-tiled-attention/forward.wgsl';
import weights from '../../../kernels/flash-style-tiled-attention/weights.wgsl';
import decodePartialBody from '../../../kernels/flash-style-tiled-attention/decode-partial.wgsl';
import decodeMergeBody from '../../../kernels/flash-style-tiled-attention/decode-merge.wgsl';
import { grid1d, namedInputs, registerKernelOnce, runKernel, type Param } from '../../webgpu/runtime.js';
import { BR, attentionKernel, attentionParams, sizesOf } from '../../attention/kernel-source.js';
import type { AttentionSizes } from '../../attention/validate.js';
import { registerAttentionBackward } from '../../attention/backward.js';

/** tfjs kernel names. The forward has two outputs: o and the per-row log-sum-exp. */
export const FLASH_ATTENTION = 'MixersFlashAttention';
export const FLASH_ATTENTION_DQ = 'MixersFlashAttentionGradQ';
/** Two outputs: dk and dv. */
export const FLASH_ATTENTION_DKV = 'MixersFlashAttentionGradKV';

/** `'auto'`: split-K when few queries face many keys; `'never'` / `'always'` force a path. */
export type Split = 'auto' | 'never' | 'always';

interface Attrs { causal: boolean; scale: number; split: Split }

/** Keys per split of the split-K decode. */
const SPLIT_CHUNK = 128;
/** Invocations per workgroup of its first pass. */
const SPLIT_WG = 64;

/**
 * Split-K pays off when the tiled kernel would leave most of its invocations idle: a tile of
 * BR query rows holds few rows, while the keys are many (Flash-Decoding).
 */
function useSplit(s: AttentionSizes, split: Split): boolean {
  if (split !== 'auto') return split === 'always';
  return s.Tq <= 8 && s.Tk >= 4 * SPLIT_CHUNK;
}

function paramsOf(s: AttentionSizes, a: Attrs, splits = 0): Param[] {
  return attentionParams(s, a.scale, a.causal, splits > 0 ? { chunk: SPLIT_CHUNK, splits } : undefined);
}

/** Split-K decode: partials per key chunk, then their merge into o and lse. */
function splitForward(backend: WebGPUBackend, q: tf.TensorInfo, k: tf.TensorInfo, v: tf.TensorInfo, s: AttentionSizes, a: Attrs) {
  const splits = Math.ceil(s.Tk / SPLIT_CHUNK);
  const params = paramsOf(s, a, splits);
  const partial = attentionKernel('FlashAttentionDecodePartial', [grid, decodePartialBody], s.K);
  const [x, y] = grid1d(s.H * s.Tq * splits, SPLIT_WG);
  const [partO, partML] = runKernel(backend, partial, {
    inputs: [q, k, v],
    outputs: [[s.B, s.H, s.Tq, splits, s.K], [s.B, s.H, s.Tq, splits, 2]],
    params,
    constants: { WG: SPLIT_WG },
    workgroups: [x, y, s.B],
  });
  const merge = attentionKernel('FlashAttentionDecodeMerge', [decodeMergeBody], s.K);
  try {
    return runKernel(backend, merge, {
      inputs: [partO!, partML!],
      outputs: [q.shape, [s.B, s.H, s.Tq]],
      params,
      workgroups: [Math.ceil(s.Tq / 64), s.H, s.B],
    });
  } finally {
    backend.disposeData(partO!.dataId);
    backend.disposeData(partML!.dataId);
  }
}

registerKernelOnce({
  kernelName: FLASH_ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v } = namedInputs(inputs, 'q', 'k', 'v');
    const s = sizesOf(q, k);
    const a = attrs as unknown as Attrs;
    if (useSplit(s, a.split)) return splitForward(backend as WebGPUBackend, q, k, v, s, a);
    const kernel = attentionKernel('FlashAttentionForward', [kvTileHelpers, onlineSoftmax, forwardBody], s.K);
    return runKernel(backend as WebGPUBackend, kernel, {
      inputs: [q, k, v],
      outputs: [q.shape, [s.B, s.H, s.Tq]],
      params: paramsOf(s, a),
      workgroups: [Math.ceil(s.Tq / BR), s.H, s.B],
    });
  },
});

registerAttentionBackward({ forward: FLASH_ATTENTION, dq: FLASH_ATTENTION_DQ, dkv: FLASH_ATTENTION_DKV, label: 'FlashAttention', weights });
