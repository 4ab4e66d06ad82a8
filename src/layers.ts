/**
 * Layer factories, lowerCamelCase as `tf.layers.*`: `import { layers } from 'tfjs-mixers'`,
 * then e.g. `layers.causalGeneration({ reduce: 'min' })`. Each returns an instance of the layer
 * class of the same name (exported by name too), which serialises with `model.save`.
 * Each mixer's guide gives its maths, cost and decode state: {@link "causal-generation" | CausalGeneration},
 * {@link "average-context" | AverageContext}, {@link "expressive-attention" | ExpressiveAttention},
 * {@link "block-sparse" | BlockSparse}, {@link "selective-ssm" | SelectiveSSM},
 * {@link "flash-style-tiled-attention" | FlashStyleTiledAttention}, {@link "aaren" | Aaren},
 * {@link "gated-linear-attention" | GatedLinearAttention}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { layers } from 'tfjs-mixers';
 *
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 128 }),
 *   layers.causalGeneration({ reduce: 'min' }),
 *   tf.layers.dense({ units: 65 }),
 * ] });
 * ```
 *
 * @module
 */
export { causalGeneration } from './mixers/causal-generation/layer.js';
export { averageContext } from './mixers/average-context/layer.js';
export { flashStyleTiledAttention } from './mixers/flash-style-tiled-attention/layer.js';
export { blockSparse } from './mixers/block-sparse/layer.js';
export { expressiveAttention } from './mixers/expressive-attention/layer.js';
export { selectiveSSM } from './mixers/selective-ssm/layer.js';
export { aaren } from './mixers/aaren/layer.js';
export { gatedLinearAttention } from './mixers/gated-linear-attention/layer.js';
export { multiHeadAttention } from './mixers/multi-head-attention/layer.js';
