import type * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import visibilityHelpers from '../../../kernels/common/visibility.wgsl';
import onlineSoftmax from '../../../kernels/common/online-softmax.wgsl';
import weights from '../../../kernels/flash-style-tiled-attention/weights.wgsl';
import decodePartialBody from '../../../kernels/flash-style-tiled-attention/decode-partial.wgsl';
import decodeMergeBody from '../../../kernels/flash-style-tiled-attention/decode-merge.wgsl';
import { grid1d, namedInputs, registerKernelOnce, runKernel } from '../../webgpu/runtime.js';
import {
  attentionKernel, attentionParams, bindVisibility, hasDropout, sizesOf, type AttentionAttrs,
} from '../../attention/kernel-source.js';
import type { AttentionSizes } from '../../attention/validate.js';
import { DENSE_LAYOUT, registerAttentionBackward, runSkeleton } from '../../attention/backward.js';

/**
 * tfjs kernel names. The forward has two outputs, o and the per-row log-sum-exp, and a third
 * when it is given int inputs (`visibilityInputs`): their packed buffer, which its gradient reads.
 */
export const FLASH_ATTENTION = 'MixersFlashAttention';
export const FLASH_ATTENTION_DQ = 'MixersFlashAttentionGradQ';
/** Two outputs: dk and dv. */
export const FLASH_ATTENTION_DKV = 'MixersFlashAttentionGradKV';

/** `'auto'`: split-K when few queries face many keys; `'never'` / `'always'` force a path. */
export type Split = 'auto' | 'never' | 'always';

interface Attrs extends AttentionAttrs { split: Split }

/** Keys per split of the split-K decode. */
const SPLIT_CHUNK = 128;
/** Invocations per workgroup of its first pass. */
const SPLIT_WG = 64;

/**
 * Split-K pays off when the tiled kernel would leave most of its invocations idle: a tile of
 * BR query rows holds few rows, while the keys are many (Flash-Decoding). Dropout is for
 * training, which runs whole sequences: it always takes the tiled path.
 */
function useSplit(s: AttentionSizes, a: Attrs): boolean {
  const split = a.split;
  if (hasDropout(a)) return false;
  if (split !== 'auto') return split === 'always';
  return s.Tq <= 8 && s.Tk >= 4 * SPLIT_CHUNK;
}

/** Split-K decode: partials per key chunk, then their merge into o and lse (and the packed int inputs). */
function splitForward(backend: WebGPUBackend, inputs: tf.NamedTensorInfoMap, s: AttentionSizes, a: Attrs): tf.TensorInfo[] {
  const { q, k, v } = namedInputs(inputs, 'q', 'k', 'v');
  const splits = Math.ceil(s.Tk / SPLIT_CHUNK);
  const params = attentionParams(s, a, 0, { chunk: SPLIT_CHUNK, splits });
  const bound = bindVisibility(backend, inputs, q);
  const partial = attentionKernel('FlashAttentionDecodePartial', [grid, visibilityHelpers, decodePartialBody], s.K);
  const [x, y] = grid1d(s.H * s.Tq * splits, SPLIT_WG);
  const [partO, partML] = runKernel(backend, partial, {
    inputs: [q, k, v, bound.vis],
    outputs: [[s.B, s.H, s.Tq, splits, s.K], [s.B, s.H, s.Tq, splits, 2]],
    params,
    constants: { WG: SPLIT_WG, ...bound.constants },
    workgroups: [x, y, s.B],
  });
  const merge = attentionKernel('FlashAttentionDecodeMerge', [decodeMergeBody], s.K);
  try {
    const out = runKernel(backend, merge, {
      inputs: [partO!, partML!],
      outputs: [q.shape, [s.B, s.H, s.Tq]],
      params,
      workgroups: [Math.ceil(s.Tq / 64), s.H, s.B],
    });
    return bound.packed ? [...out, bound.packed] : out;
  } finally {
    backend.disposeData(partO!.dataId);
    backend.disposeData(partML!.dataId);
  }
}

registerKernelOnce({
  kernelName: FLASH_ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k } = namedInputs(inputs, 'q', 'k');
    const s = sizesOf(q, k);
    const a = attrs as unknown as Attrs;
    if (useSplit(s, a)) return splitForward(backend as WebGPUBackend, inputs, s, a);
    return runSkeleton(backend as WebGPUBackend, DENSE_LAYOUT, 'FlashAttentionForward', 'forward', onlineSoftmax,
      inputs, [], [q.shape, [s.B, s.H, s.Tq]], a);
  },
});

registerAttentionBackward({ forward: FLASH_ATTENTION, dq: FLASH_ATTENTION_DQ, dkv: FLASH_ATTENTION_DKV, label: 'FlashAttention', weights });
