import * as tf from '@tensorflow/tfjs';
import { AttentionLayer, type AttentionLayerArgs, type KVCacheState } from '../../attention/attention-layer.js';
import type { VisibilityOptions } from '../../attention/visibility.js';
import type { DropoutOptions } from '../../attention/dropout.js';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { checkOptionNames, describe, optionNames } from '../../validate.js';
import { flashAttention } from '../flash-style-tiled-attention/op.js';
import { LAYOUT_FIELDS, resolveLayout, visibleKeys, type BlockSparseLayout } from './layout.js';
import { blockSparseAttention } from './op.js';

/** Arguments of the {@link BlockSparse} layer. */
export interface BlockSparseArgs extends AttentionLayerArgs {
  /**
   * The block-sparse layout; each field not given defaults as in `ops.blockSparseAttention`
   * (`blockSize` 64, `localBlocks` 4, `globalBlocks` 1, `stride` 0).
   */
  layout?: Partial<BlockSparseLayout>;
}

const OPTIONS = optionNames<Omit<BlockSparseArgs, keyof AttentionLayerArgs>>({ layout: true });

/**
 * Causal multi-head self-attention restricted to a block-sparse layout (the {@link "block-sparse" | BlockSparse guide}):
 * `[B, T, D] → [B, T, D]` with query, key, value and output projections, grouped-query heads
 * (`numKvHeads`), and a key/value cache for decoding. The attention is
 * `ops.blockSparseAttention` with the layer's `layout`, causal by definition: the layer takes
 * no `causal: false` and no cross-attention. `apply(x, { segmentIds })` attends within packed
 * sequences, and a padding mask that tfjs propagates (`tf.layers.embedding({ maskZero: true })`)
 * hides the padded keys.
 *
 * Weights: `query [D, H·K]`, `key` and `value [D, Hkv·K]`, `output [H·K, D]`, and their biases
 * when `useBias` is on.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 128 }),
 *   layers.blockSparse({ numHeads: 4, layout: { blockSize: 32, localBlocks: 2, globalBlocks: 1, stride: 4 } }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 * ```
 */
export class BlockSparse extends AttentionLayer {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('BlockSparse');
  /** The layout, every field resolved. */
  readonly layout: BlockSparseLayout;

  constructor(args: BlockSparseArgs) {
    super(args, OPTIONS, { bidirectional: false, window: false });
    const given = args.layout ?? {};
    if (typeof given !== 'object' || Array.isArray(given)) {
      throw new Error(`${this.layerName}: argument 'layout' must be an object { ${LAYOUT_FIELDS.join(', ')} }; received ${describe(given)}.`);
    }
    checkOptionNames(`${this.layerName} layout`, given, LAYOUT_FIELDS);
    this.layout = resolveLayout(`${this.layerName} layout`, given);
  }

  /**
   * The layer's forward (q, k and v of one length T) runs the block-sparse op. The decode step
   * brings one query, at position t = Tk − 1 of the cache: it attends to the keys the layout
   * shows row t, gathered from the cache, which is dense attention over that list.
   */
  protected attend(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, visibility: VisibilityOptions, dropout: DropoutOptions,
  ): tf.Tensor4D {
    const [, Tq] = q.shape;
    const Tk = k.shape[1];
    const implementation = this.activeImplementation();
    if (Tq === Tk) return blockSparseAttention(q, k, v, { ...this.layout, ...visibility, ...dropout, implementation });
    if (Tq !== 1) throw new Error(`${this.layerName}: attention over a cache takes one query at a time; received ${Tq}.`);
    const keys = tf.tensor1d(visibleKeys(Tk - 1, this.layout), 'int32');
    return flashAttention(q, tf.gather(k, keys, 1), tf.gather(v, keys, 1), { causal: false, implementation });
  }

  /**
   * Runs one token through the layer: projects it, appends its key and value to the cache, and
   * lets its query, at position t (the tokens seen before it), attend to the keys that the
   * layout shows row t (its active blocks, up to t), gathered from the cache. The cost is those
   * keys, not t. Stepping through a sequence reproduces the parallel forward. The input state is
   * left as it is: dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  override step(x: tf.Tensor2D, state: KVCacheState): [tf.Tensor2D, KVCacheState] {
    return super.step(x, state);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), layout: { ...this.layout } };
  }
}
registerMixerLayer(BlockSparse);

/**
 * Creates a {@link BlockSparse} layer, as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * // Longformer-like: a 512-token window in 64-token blocks and one 64-token sink
 * const attention = layers.blockSparse({ numHeads: 8, layout: { blockSize: 64, localBlocks: 8, globalBlocks: 1 } });
 * ```
 */
export function blockSparse(args: BlockSparseArgs): BlockSparse {
  return new BlockSparse(args);
}
