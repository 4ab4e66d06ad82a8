/**
 * tfjs-mixers: attention-replacement sequence mixers for TensorFlow.js, each a tfjs layer
 * and a differentiable op, with a tfjs-ops reference on every backend and hand-written WGSL
 * kernels on the WebGPU backend.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import '@tensorflow/tfjs-backend-webgpu';
 * import { layers, ops } from 'tfjs-mixers';
 *
 * await tf.setBackend('webgpu');
 * const y = ops.causalGeneration(tf.randomNormal([1, 128, 64]), { reduce: 'min' });
 * ```
 *
 * @packageDocumentation
 */
import * as causalGenerationOps from './mixers/causal-generation/op.js';
import * as averageContextOps from './mixers/average-context/op.js';
import * as flashAttentionOps from './mixers/flash-style-tiled-attention/op.js';
import * as blockSparseOps from './mixers/block-sparse/op.js';
import * as expressiveAttentionOps from './mixers/expressive-attention/op.js';
import * as selectiveSSMOps from './mixers/selective-ssm/op.js';
import * as causalGenerationLayer from './mixers/causal-generation/layer.js';
import * as averageContextLayer from './mixers/average-context/layer.js';
import * as flashAttentionLayer from './mixers/flash-style-tiled-attention/layer.js';
import * as blockSparseLayer from './mixers/block-sparse/layer.js';
import * as expressiveAttentionLayer from './mixers/expressive-attention/layer.js';
import * as selectiveSSMLayer from './mixers/selective-ssm/layer.js';

/** Differentiable functional ops, one per mixer (shapes as in each op's docs). */
export const ops = {
  causalGeneration: causalGenerationOps.causalGeneration,
  causalGenerationStep: causalGenerationOps.causalGenerationStep,
  averageContext: averageContextOps.averageContext,
  averageContextStep: averageContextOps.averageContextStep,
  causalMean: averageContextOps.causalMean,
  flashAttention: flashAttentionOps.flashAttention,
  blockSparseAttention: blockSparseOps.blockSparseAttention,
  expressiveAttention: expressiveAttentionOps.expressiveAttention,
  expressiveAttentionRecurrentStep: expressiveAttentionOps.expressiveAttentionRecurrentStep,
  selectiveScan: selectiveSSMOps.selectiveScan,
  selectiveScanWithState: selectiveSSMOps.selectiveScanWithState,
  selectiveScanStep: selectiveSSMOps.selectiveScanStep,
};

/** Layer factories, lowerCamelCase as `tf.layers.*`. */
export const layers = {
  causalGeneration: causalGenerationLayer.causalGeneration,
  averageContext: averageContextLayer.averageContext,
  flashStyleTiledAttention: flashAttentionLayer.flashStyleTiledAttention,
  blockSparse: blockSparseLayer.blockSparse,
  expressiveAttention: expressiveAttentionLayer.expressiveAttention,
  selectiveSSM: selectiveSSMLayer.selectiveSSM,
};

export { CausalGeneration } from './mixers/causal-generation/layer.js';
export type { CausalGenerationArgs, CausalGenerationState } from './mixers/causal-generation/layer.js';
export { AverageContext } from './mixers/average-context/layer.js';
export type { AverageContextArgs, AverageContextState } from './mixers/average-context/layer.js';
export { FlashStyleTiledAttention } from './mixers/flash-style-tiled-attention/layer.js';
export type { FlashStyleTiledAttentionArgs } from './mixers/flash-style-tiled-attention/layer.js';
export type { AttentionLayerArgs, KVCacheState } from './attention/attention-layer.js';
export { BlockSparse } from './mixers/block-sparse/layer.js';
export type { BlockSparseArgs } from './mixers/block-sparse/layer.js';
export type { BlockSparseAttentionOptions } from './mixers/block-sparse/op.js';
export { DEFAULT_LAYOUT, drawBlockSparseLayout, visibleKeys } from './mixers/block-sparse/layout.js';
export type { BlockSparseLayout } from './mixers/block-sparse/layout.js';
export type { CausalGenerationOptions, Reduce } from './mixers/causal-generation/op.js';
export type { AverageContextOptions, Combine } from './mixers/average-context/op.js';
export type { FlashAttentionOptions, Split } from './mixers/flash-style-tiled-attention/op.js';
export type { ProjectedMixerArgs, LayerArgs } from './layers/projected-mixer.js';
export type { Implementation } from './validate.js';
export { ExpressiveAttention } from './mixers/expressive-attention/layer.js';
export type {
  ExpressiveAttentionArgs, ExpressiveAttentionDecode, ExpressiveAttentionRecurrentState, ExpressiveAttentionState,
} from './mixers/expressive-attention/layer.js';
export type { ExpressiveAttentionOptions, ExpressiveAttentionRecurrentStepOptions } from './mixers/expressive-attention/op.js';
export type { SelectiveScanOptions, SelectiveScanResult, SelectiveScanStepOptions } from './mixers/selective-ssm/op.js';
export { SelectiveSSM } from './mixers/selective-ssm/layer.js';
export type { SelectiveSSMArgs, SelectiveSSMState } from './mixers/selective-ssm/layer.js';
