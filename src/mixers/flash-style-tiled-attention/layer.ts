import * as tf from '@tensorflow/tfjs';
import { AttentionLayer, type AttentionLayerArgs } from '../../attention/attention-layer.js';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { flashAttention } from './op.js';

/** Arguments of the {@link FlashStyleTiledAttention} layer. */
export type FlashStyleTiledAttentionArgs = AttentionLayerArgs;

/**
 * Causal multi-head self-attention whose attention runs as FlashAttention-2 tiles with an
 * online softmax (the {@link "flash-style-tiled-attention" | FlashStyleTiledAttention guide}): `[B, T, D] → [B, T, D]` with query, key, value and output
 * projections, grouped-query heads (`numKvHeads`), and a key/value cache for decoding.
 *
 * Weights: `query [D, H·K]`, `key` and `value [D, Hkv·K]`, `output [H·K, D]`, and their biases
 * when `useBias` is on.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 128 }),
 *   layers.flashStyleTiledAttention({ numHeads: 4, numKvHeads: 2 }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 * ```
 */
export class FlashStyleTiledAttention extends AttentionLayer {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('FlashStyleTiledAttention');

  constructor(args: FlashStyleTiledAttentionArgs) {
    super(args, []);
  }

  protected attend(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
    return flashAttention(q, k, v, { causal: true, implementation: this.activeImplementation() });
  }
}
registerMixerLayer(FlashStyleTiledAttention);

/**
 * Creates a {@link FlashStyleTiledAttention} layer, as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * const attention = layers.flashStyleTiledAttention({ numHeads: 8, numKvHeads: 1 }); // multi-query
 * ```
 */
export function flashStyleTiledAttention(args: FlashStyleTiledAttentionArgs): FlashStyleTiledAttention {
  return new FlashStyleTiledAttention(args);
}
