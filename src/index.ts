/**
 * tfjs-mixers: attention-replacement sequence mixers for TensorFlow.js, each a tfjs layer
 * and a differentiable op, with a tfjs-ops reference on every backend and hand-written WGSL
 * kernels on the WebGPU backend.
 *
 * @example
 * ```ts
 * // in a browser; in Node, call installWebGPU() from 'tfjs-mixers/node' before importing
 * // tfjs-backend-webgpu, or run the same ops on tf.setBackend('cpu')
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
export * as ops from './ops.js';

export * as layers from './layers.js';

export { registerSubgroupBackend } from './webgpu/subgroups.js';
export { applyKernelTuning, tuneKernels } from './tuning.js';
export type {
  AttentionTuningShape, AverageContextTuningShape, KernelFlagValue, KernelTiming, KernelTuning, SelectiveScanTuningShape, TuneKernelsOptions,
} from './tuning.js';
export { mixers, mixerNamed } from './mixers/registry.js';
export type { BlockSizes, MixerCase, MixerDescriptor } from './mixers/descriptor.js';

export { CausalGeneration } from './mixers/causal-generation/layer.js';
export type { CausalGenerationArgs, CausalGenerationState } from './mixers/causal-generation/layer.js';
export { AverageContext } from './mixers/average-context/layer.js';
export type { AverageContextArgs, AverageContextState } from './mixers/average-context/layer.js';
export { FlashStyleTiledAttention } from './mixers/flash-style-tiled-attention/layer.js';
export type { FlashStyleTiledAttentionArgs } from './mixers/flash-style-tiled-attention/layer.js';
export type { AttentionCallArgs, AttentionLayerArgs, KVCacheOptions, KVCacheState, WindowedAttentionLayerArgs } from './attention/attention-layer.js';
export { BlockSparse } from './mixers/block-sparse/layer.js';
export type { BlockSparseArgs } from './mixers/block-sparse/layer.js';
export type { BlockSparseAttentionOptions } from './mixers/block-sparse/op.js';
export { DEFAULT_LAYOUT, drawBlockSparseLayout, visibleKeys } from './mixers/block-sparse/layout.js';
export type { BlockSparseLayout } from './mixers/block-sparse/layout.js';
export type { CausalGenerationOptions, CausalGenerationStepOptions, Reduce } from './mixers/causal-generation/op.js';
export type {
  AverageContextOptions, AverageContextStepOptions, CausalMeanOptions, Combine,
} from './mixers/average-context/op.js';
export type { FlashAttentionOptions } from './mixers/flash-style-tiled-attention/op.js';
export type { Split, SplitOptions } from './attention/split.js';
export type { VisibilityOptions } from './attention/visibility.js';
export type { DropoutOptions } from './attention/dropout.js';
export type { ProjectedMixerArgs, LayerArgs } from './layers/projected-mixer.js';
export type { PrefillOptions } from './layers/prefill.js';
export type { CallKwargs, MixerLayerArgs } from './layers/mixer-layer.js';
export type { Implementation } from './validate.js';
export { ExpressiveAttention } from './mixers/expressive-attention/layer.js';
export type {
  ExpressiveAttentionArgs, ExpressiveAttentionDecode, ExpressiveAttentionRecurrentState, ExpressiveAttentionState,
} from './mixers/expressive-attention/layer.js';
export type { ExpressiveAttentionOptions, ExpressiveAttentionRecurrentStepOptions } from './mixers/expressive-attention/op.js';
export type { SelectiveScanOptions, SelectiveScanResult, SelectiveScanStepOptions } from './mixers/selective-ssm/op.js';
export { SelectiveSSM } from './mixers/selective-ssm/layer.js';
export type { SelectiveSSMArgs, SelectiveSSMState } from './mixers/selective-ssm/layer.js';
export { Aaren } from './mixers/aaren/layer.js';
export type { AarenLayerArgs, AarenLayerState } from './mixers/aaren/layer.js';
export type { AarenOptions, AarenResult, AarenState } from './mixers/aaren/op.js';
export { GatedLinearAttention } from './mixers/gated-linear-attention/layer.js';
export type { GatedLinearAttentionArgs, GatedLinearAttentionState } from './mixers/gated-linear-attention/layer.js';
export type { GatedLinearAttentionOptions, GatedLinearAttentionResult } from './mixers/gated-linear-attention/op.js';
export { MultiHeadAttention } from './mixers/multi-head-attention/layer.js';
export type { MultiHeadAttentionArgs, MultiHeadAttentionCallArgs } from './mixers/multi-head-attention/layer.js';
export type { SerializableArg } from './mixers/multi-head-attention/serializables.js';
export type { RotaryConfig, RotaryOptions } from './rotary/op.js';
export type { DenseOptions } from './dense/op.js';
export type { LayerNormOptions } from './layer-norm/op.js';
