import * as tf from '@tensorflow/tfjs';
import { AttentionLayer, type WindowedAttentionLayerArgs } from '../../attention/attention-layer.js';
import type { VisibilityOptions } from '../../attention/visibility.js';
import type { DropoutOptions } from '../../attention/dropout.js';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { flashAttention } from './op.js';

/** Arguments of the {@link FlashStyleTiledAttention} layer. */
export type FlashStyleTiledAttentionArgs = WindowedAttentionLayerArgs;

/**
 * Multi-head attention whose attention runs as FlashAttention-2 tiles with an online softmax
 * (the {@link "flash-style-tiled-attention" | FlashStyleTiledAttention guide}): `[B, T, D] → [B, T, D]` with query, key, value and output
 * projections, grouped-query heads (`numKvHeads`), and a key/value cache for decoding.
 * Causal self-attention by default; `causal: false` makes an encoder layer, `window` a
 * sliding-window one, and `apply([x, context])` cross-attention (queries from x `[B, Tq, D]`,
 * keys and values from context `[B, Tk, Dc]`, not causal unless `causal: true`).
 * `apply(x, { segmentIds })` attends within packed sequences, and a padding mask that tfjs
 * propagates (`tf.layers.embedding({ maskZero: true })`) hides the padded keys.
 *
 * Weights: `query [D, H·K]`, `key` and `value [Dc, Hkv·K]` (Dc = D but in cross-attention),
 * `output [H·K, D]`, and their biases when `useBias` is on.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 128 }),
 *   layers.flashStyleTiledAttention({ numHeads: 4, numKvHeads: 2 }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 *
 * // an encoder over padded ids, and a decoder that also attends to it
 * const ids = tf.input({ shape: [null] });
 * const encoded = layers.flashStyleTiledAttention({ numHeads: 4, causal: false })
 *   .apply(tf.layers.embedding({ inputDim: 65, outputDim: 128, maskZero: true }).apply(ids)) as tf.SymbolicTensor;
 * const target = tf.input({ shape: [null, 64] });
 * const decoded = layers.flashStyleTiledAttention({ numHeads: 4 }).apply([target, encoded]); // [null, null, 64]
 * ```
 */
export class FlashStyleTiledAttention extends AttentionLayer {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('FlashStyleTiledAttention');

  constructor(args: FlashStyleTiledAttentionArgs) {
    super(args, [], { bidirectional: true, window: true });
  }

  protected attend(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, visibility: VisibilityOptions, dropout: DropoutOptions,
  ): tf.Tensor4D {
    return flashAttention(q, k, v, { ...visibility, ...dropout, implementation: this.activeImplementation() });
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
