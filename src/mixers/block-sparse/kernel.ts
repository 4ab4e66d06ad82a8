import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import onlineSoftmax from '../../../kernels/common/online-softmax.wgsl';
import blockRule from '../../../kernels/block-sparse/block-rule.wgsl';
import layoutHooks from '../../../kernels/block-sparse/layout.wgsl';
import grid from '../../../kernels/common/grid.wgsl';
import stepKeysBody from '../../../kernels/block-sparse/step-keys.wgsl';
// BlockSparse is exact softmax attention: its backward weighs pairs as FlashStyleTiledAttention's does
import softmaxWeights from '../../../kernels/flash-style-tiled-attention/weights.wgsl';
import { BR, type AttentionAttrs } from '../../attention/kernel-source.js';
import { registerAttentionFamily, type AttentionLayout } from '../../attention/skeleton.js';
import { keptTable } from '../../webgpu/bind-groups.js';
import { grid1d, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import { tilePlans, type BlockSparseLayout } from './layout.js';

/**
 * tfjs kernel names. The forward has two outputs, o and the per-row log-sum-exp `[B, H, T]`,
 * and a third when it is given int inputs (`visibilityInputs`): their packed buffer, which its
 * gradient reads.
 */
export const BLOCK_SPARSE_ATTENTION = 'MixersBlockSparseAttention';
export const BLOCK_SPARSE_ATTENTION_DQ = 'MixersBlockSparseAttentionGradQ';
/** Two outputs: dk and dv. */
export const BLOCK_SPARSE_ATTENTION_DKV = 'MixersBlockSparseAttentionGradKV';

/** The kernels' attributes: the layout, the softmax scale and the visibility attrs (always causal). */
export interface BlockSparseAttrs extends BlockSparseLayout, AttentionAttrs {}

/**
 * The skeleton's layout for BlockSparse: per pass, the tile plan (`forward`: query tiles and
 * their runs of keys; `transposed`: key tiles and their runs of queries; see `tilePlans`), an
 * int32 tensor kept for its (T, layout, pass) and uploaded once (`keptTable`).
 */
const BLOCK_SPARSE_LAYOUT: AttentionLayout = {
  wgsl: [blockRule, layoutHooks].join('\n'),
  tiles: (backend, T, attrs, pass) => {
    const { numTiles, pairs, key } = tilePlans(T, attrs as BlockSparseAttrs, BR)[pass];
    return { numTiles, plan: keptTable(backend, `BlockSparse|${key}`, [pairs.length / 2, 2], () => pairs) };
  },
  causal: true,
};

registerAttentionFamily({
  forward: BLOCK_SPARSE_ATTENTION, dq: BLOCK_SPARSE_ATTENTION_DQ, dkv: BLOCK_SPARSE_ATTENTION_DKV, label: 'BlockSparse',
  rowHooks: onlineSoftmax, weights: softmaxWeights, layout: BLOCK_SPARSE_LAYOUT,
});

const STEP_KEYS: KernelSource = { name: 'BlockSparseStepKeys', code: [grid, blockRule, stepKeysBody].join('\n') };
/** Rows a workgroup of the lists' launch: one invocation each. */
const STEP_KEYS_WG = 64;

/**
 * A decode step's gather lists on the GPU (`kernels/block-sparse/step-keys.wgsl`): row b of
 * `keys` `[B, M]` int32 holds `visibleKeys(positions[b], layout)` then zeros, and `counts` `[B]`
 * its length. M, the longest list, is the caller's (its host knows the positions), and no
 * tensor is made on the CPU. One launch.
 */
export function stepKeysKernel(positions: tf.Tensor1D, layout: BlockSparseLayout, M: number): { keys: tf.Tensor2D; counts: tf.Tensor1D } {
  const B = positions.shape[0];
  const [keys, counts] = runKernel(tf.backend() as WebGPUBackend, STEP_KEYS, {
    inputs: [positions],
    outputs: [{ shape: [B, M], dtype: 'int32' }, { shape: [B], dtype: 'int32' }],
    params: [B, M, layout.blockSize, layout.localBlocks, layout.globalBlocks, layout.stride].map((u32) => ({ u32 })),
    constants: { WG: STEP_KEYS_WG },
    workgroups: grid1d(B, STEP_KEYS_WG),
  });
  return {
    keys: tf.engine().makeTensorFromTensorInfo(keys!) as tf.Tensor2D,
    counts: tf.engine().makeTensorFromTensorInfo(counts!) as tf.Tensor1D,
  };
}
