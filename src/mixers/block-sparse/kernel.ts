import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import kvTileHelpers from '../../../kernels/common/kv-tile.wgsl';
import onlineSoftmax from '../../../kernels/common/online-softmax.wgsl';
import layoutHelpers from '../../../kernels/block-sparse/layout.wgsl';
import forwardBody from '../../../kernels/block-sparse/forward.wgsl';
import backwardDqBody from '../../../kernels/block-sparse/backward-dq.wgsl';
import backwardDkvBody from '../../../kernels/block-sparse/backward-dkv.wgsl';
import queryTileHelpers from '../../../kernels/common/query-tile.wgsl';
// BlockSparse is exact softmax attention: its backward weighs pairs as FlashStyleTiledAttention's does
import softmaxWeights from '../../../kernels/flash-style-tiled-attention/weights.wgsl';
import { namedInputs, registerGradientOnce, registerKernelOnce, runKernel } from '../../webgpu/runtime.js';
import { BR, attentionKernel, attentionParams, sizesOf } from '../../attention/kernel-source.js';
import { tilePlans, type BlockSparseLayout } from './layout.js';

/** tfjs kernel names. The forward has two outputs: o and the per-row log-sum-exp `[B, H, T]`. */
export const BLOCK_SPARSE_ATTENTION = 'MixersBlockSparseAttention';
export const BLOCK_SPARSE_ATTENTION_DQ = 'MixersBlockSparseAttentionGradQ';
/** Two outputs: dk and dv. */
export const BLOCK_SPARSE_ATTENTION_DKV = 'MixersBlockSparseAttentionGradKV';

/** The kernels' attributes: the layout and the softmax scale. */
export interface BlockSparseAttrs extends BlockSparseLayout {
  scale: number;
}

type Pass = 'forward' | 'transposed';

/**
 * Runs one kernel whose last input is the pass's tile plan (`forward`: query tiles and their
 * runs of keys; `transposed`: key tiles and their runs of queries; see `tilePlans`), uploaded
 * as an int32 buffer for this dispatch and released once it is submitted. `parts` are the WGSL
 * files after `common/attention.wgsl`, the entry point last. One workgroup per (tile, head, batch).
 */
function runPlanned(
  backend: WebGPUBackend, name: string, parts: string[], inputs: tf.TensorInfo[], outputs: number[][],
  a: BlockSparseAttrs, pass: Pass,
): tf.TensorInfo[] {
  const s = sizesOf(inputs[0]!, inputs[1]!);
  const { numTiles, pairs } = tilePlans(s.Tq, a, BR)[pass];
  const plan = backend.makeTensorInfo([pairs.length / 2, 2], 'int32', pairs);
  try {
    return runKernel(backend, attentionKernel(name, parts, s.K), {
      inputs: [...inputs, plan],
      outputs,
      params: attentionParams(s, a.scale, true),
      workgroups: [numTiles, pass === 'forward' ? s.H : s.Hkv, s.B],
    });
  } finally {
    // bound to the pending command buffer, so tfjs frees it only after that is submitted
    backend.disposeData(plan.dataId);
  }
}

registerKernelOnce({
  kernelName: BLOCK_SPARSE_ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v } = namedInputs(inputs, 'q', 'k', 'v');
    const s = sizesOf(q, k);
    return runPlanned(backend as WebGPUBackend, 'BlockSparseForward', [kvTileHelpers, onlineSoftmax, layoutHelpers, forwardBody], [q, k, v],
      [q.shape, [s.B, s.H, s.Tq]], attrs as unknown as BlockSparseAttrs, 'forward');
  },
});

function gradInputs(inputs: tf.NamedTensorInfoMap): tf.TensorInfo[] {
  const g = namedInputs(inputs, 'q', 'k', 'v', 'dO', 'stats');
  return [g.q, g.k, g.v, g.dO, g.stats];
}

registerKernelOnce({
  kernelName: BLOCK_SPARSE_ATTENTION_DQ,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const g = gradInputs(inputs);
    return runPlanned(backend as WebGPUBackend, 'BlockSparseBackwardDq', [kvTileHelpers, softmaxWeights, layoutHelpers, backwardDqBody], g,
      [g[0]!.shape], attrs as unknown as BlockSparseAttrs, 'forward')[0]!;
  },
});

registerKernelOnce({
  kernelName: BLOCK_SPARSE_ATTENTION_DKV,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const g = gradInputs(inputs);
    return runPlanned(backend as WebGPUBackend, 'BlockSparseBackwardDkv', [queryTileHelpers, softmaxWeights, layoutHelpers, backwardDkvBody], g,
      [g[1]!.shape, g[1]!.shape], attrs as unknown as BlockSparseAttrs, 'transposed');
  },
});

registerGradientOnce({
  kernelName: BLOCK_SPARSE_ATTENTION,
  inputsToSave: ['q', 'k', 'v'],
  outputsToSave: [true, true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, o, lse] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const dO = Array.isArray(dy) ? dy[0]! : dy;
    // delta_i = rowsum(dO_i ∘ o_i), [B, H, T], beside lse in one buffer, [B, H, T, 2]: a
    // shader may count on only 8 storage buffers, and the dK/dV kernel has 8 with this one
    const delta = tf.sum(tf.mul(dO, o), -1).transpose([0, 2, 1]);
    const inputs = { q, k, v, dO, stats: tf.stack([lse, delta], -1) };
    const dq = tf.engine().runKernel(BLOCK_SPARSE_ATTENTION_DQ, inputs, attrs) as tf.Tensor;
    const [dk, dv] = tf.engine().runKernel(BLOCK_SPARSE_ATTENTION_DKV, inputs, attrs) as tf.Tensor[];
    return { q: () => dq, k: () => dk!, v: () => dv! };
  },
});
