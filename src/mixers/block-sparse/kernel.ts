import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import onlineSoftmax from '../../../kernels/common/online-softmax.wgsl';
import blockRule from '../../../kernels/block-sparse/block-rule.wgsl';
import layoutHooks from '../../../kernels/block-sparse/layout.wgsl';
import grid from '../../../kernels/common/grid.wgsl';
import stepKeysBody from '../../../kernels/block-sparse/step-keys.wgsl';
import cacheMaskBody from '../../../kernels/block-sparse/cache-mask.wgsl';
// BlockSparse is exact softmax attention: its backward weighs pairs as FlashStyleTiledAttention's does
import softmaxWeights from '../../../kernels/flash-style-tiled-attention/weights.wgsl';
import { BR } from '../../attention/kernel-source.js';
import type { AttentionAttrs } from '../../attention/kernel-inputs.js';
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

/** The layout as its kernels' params read it: block-rule.wgsl's BlockLayout, field by field. */
function layoutParams(layout: BlockSparseLayout): number[] {
  return [layout.blockSize, layout.localBlocks, layout.globalBlocks, layout.stride];
}

const STEP_KEYS: KernelSource = { name: 'BlockSparseStepKeys', code: [grid, blockRule, stepKeysBody].join('\n') };
/** Rows a workgroup of the lists' launch: one invocation each. */
const STEP_KEYS_WG = 64;

/**
 * A decode step's key lists on the GPU (`kernels/block-sparse/step-keys.wgsl`), in the form the
 * split-K decode reads (`KEY_LIST_INPUT`, `flashAttentionOverList`): int32 `[B + B·M]`, each
 * row's count of `visibleKeys(positions[b], layout)`, then row b's keys as rows b·S + j of a
 * cache of S slots a row, zeros after them. M, the longest list, is the caller's (its host knows
 * the positions), and no tensor is made on the CPU. One launch.
 *
 * @example
 * ```ts
 * // rows at positions 3 and 0 of a cache of 8 slots, blocks of 2, the diagonal block alone
 * stepKeysKernel(tf.tensor1d([3, 0], 'int32'), { blockSize: 2, localBlocks: 1, globalBlocks: 0, stride: 0 }, 2, 8);
 * // [2, 1,  2, 3,  8, 0]
 * ```
 */
export function stepKeysKernel(positions: tf.Tensor1D, layout: BlockSparseLayout, M: number, S: number): tf.Tensor1D {
  const B = positions.shape[0];
  const [listed] = runKernel(tf.backend() as WebGPUBackend, STEP_KEYS, {
    inputs: [positions],
    outputs: [{ shape: [B + B * M], dtype: 'int32' }],
    params: [B, M, S, ...layoutParams(layout)].map((u32) => ({ u32 })),
    constants: { WG: STEP_KEYS_WG },
    workgroups: grid1d(B, STEP_KEYS_WG),
  });
  return tf.engine().makeTensorFromTensorInfo(listed!) as tf.Tensor1D;
}

const CACHE_MASK: KernelSource = { name: 'BlockSparseCacheMask', code: [grid, blockRule, cacheMaskBody].join('\n') };
const CACHE_MASK_WG = 256;

/**
 * The layout's mask for queries `[B, Tq]` at positions `queryOffsets[b] + i` over a cache of S
 * keys (`kernels/block-sparse/cache-mask.wgsl`): int32 `[B, Tq, S]`, 1 where key j's block is at
 * most the query's and active for it, the causal condition within the blocks left to the
 * attention. One launch, from the offsets on the GPU.
 *
 * @example
 * ```ts
 * // one row of two queries at positions 4 and 5 over 6 keys, blocks of 2, the diagonal block alone
 * cacheMaskKernel(tf.tensor1d([4], 'int32'), 2, 6, { blockSize: 2, localBlocks: 1, globalBlocks: 0, stride: 0 });
 * // [[[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1]]]
 * ```
 */
export function cacheMaskKernel(queryOffsets: tf.Tensor1D, Tq: number, S: number, layout: BlockSparseLayout): tf.Tensor3D {
  const B = queryOffsets.shape[0];
  const total = B * Tq * S;
  const [mask] = runKernel(tf.backend() as WebGPUBackend, CACHE_MASK, {
    inputs: [queryOffsets],
    outputs: [{ shape: [B, Tq, S], dtype: 'int32' }],
    params: [total, Tq, S, ...layoutParams(layout)].map((u32) => ({ u32 })),
    constants: { WG: CACHE_MASK_WG },
    workgroups: grid1d(total, CACHE_MASK_WG),
  });
  return tf.engine().makeTensorFromTensorInfo(mask!) as tf.Tensor3D;
}
