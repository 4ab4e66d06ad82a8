/**
 * Differentiable functional ops, one family per mixer: `import { ops } from 'tfjs-mixers'`,
 * then e.g. `ops.flashAttention(q, k, v)`. Each runs the WGSL kernels on tfjs's webgpu backend
 * and the tfjs-ops reference elsewhere (`implementation` picks one); shapes are in each op's docs.
 * The guides ({@link "causal-generation" | CausalGeneration}, {@link "average-context" | AverageContext},
 * {@link "expressive-attention" | ExpressiveAttention}, {@link "block-sparse" | BlockSparse},
 * {@link "selective-ssm" | SelectiveSSM}, {@link "flash-style-tiled-attention" | FlashStyleTiledAttention},
 * {@link "aaren" | Aaren}, {@link "gated-linear-attention" | GatedLinearAttention})
 * derive the maths and the gradients; {@link "rotary" | the rotary guide} covers `ops.rotary`;
 * `ops.dense` (the projection the layers run), `ops.layerNorm` and `ops.addLayerNorm` are the rest of a transformer block.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { ops } from 'tfjs-mixers';
 *
 * const x = tf.tensor3d([[[1, 5], [3, 2], [0, 4]]]);   // [1, 3, 2]
 * ops.causalGeneration(x, { reduce: 'min' }).print();  // [[[1, 5], [1, 2], [0, 2]]]
 * ```
 *
 * @module
 */
export { causalGeneration, causalGenerationStep } from './mixers/causal-generation/op.js';
export { averageContext, averageContextPrefill, averageContextStep, causalMean } from './mixers/average-context/op.js';
export { flashAttention } from './mixers/flash-style-tiled-attention/op.js';
export { blockSparseAttention } from './mixers/block-sparse/op.js';
export { expressiveAttention, expressiveAttentionRecurrentStep } from './mixers/expressive-attention/op.js';
export { selectiveScan, selectiveScanStep, selectiveScanWithState } from './mixers/selective-ssm/op.js';
export { aaren, aarenWithState } from './mixers/aaren/op.js';
export { gatedLinearAttention, gatedLinearAttentionWithState } from './mixers/gated-linear-attention/op.js';
export { rotary } from './rotary/op.js';
export { dense } from './dense/op.js';
export { addLayerNorm, layerNorm } from './layer-norm/op.js';
