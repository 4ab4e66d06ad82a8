import * as tf from '@tensorflow/tfjs';
import { AttentionLayer, type AttentionLayerArgs, type KVCacheState } from '../../attention/attention-layer.js';
import type { VisibilityOptions } from '../../attention/visibility.js';
import { int } from '../../attention/kv-cache.js';
import type { DropoutOptions } from '../../attention/dropout.js';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { checkOptionNames, describe, optionNames, useKernel } from '../../validate.js';
import { flashAttention, flashAttentionOverList } from '../flash-style-tiled-attention/op.js';
import { LAYOUT_FIELDS, resolveLayout, visibleKeyCount, visibleKeys, type BlockSparseLayout } from './layout.js';
import { cacheMaskKernel, stepKeysKernel } from './kernel.js';
import { blockSparseAttention } from './op.js';
import { gatherRows } from '../../tensors.js';

/** Gather lists `[B, M]` (zeros after each list) and their lengths `[B]`, made on the host. */
function hostLists(lists: Int32Array[], M: number): { keys: tf.Tensor2D; counts: tf.Tensor1D } {
  const index = new Int32Array(lists.length * M);
  lists.forEach((l, b) => index.set(l, b * M));
  return { keys: tf.tensor2d(index, [lists.length, M], 'int32'), counts: tf.tensor1d(lists.map((l) => l.length), 'int32') };
}

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

  /** The layer's forward, q, k and v of one length T: the block-sparse op. */
  protected attend(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, visibility: VisibilityOptions, dropout: DropoutOptions,
  ): tf.Tensor4D {
    return blockSparseAttention(q, k, v, { ...this.layout, ...visibility, ...dropout, implementation: this.activeImplementation() });
  }

  /**
   * Decoding over the cache: row b's queries sit at `queryOffsets[b] + i` and key j at position
   * j. A step whose positions t_b the host knows attends, per row, to the keys the layout shows
   * row t_b (`visibleKeys`: its active blocks, up to t_b): on the kernels the split-K decode reads
   * them where they lie, from lists formed on the GPU; on the reference they are gathered, padded
   * to the longest list and cut by `kvLengths`. A step costs those keys, not t. Otherwise
   * (a prefill over a cache, or positions known only on the device) the layout becomes a mask
   * `[B, Tq, S]` of the blocks each query's position shows (on the kernels one launch,
   * `kernels/block-sparse/cache-mask.wgsl`), and-ed with the causal and length conditions in
   * `flashAttention` (the block-sparse op takes only self-attention).
   */
  protected override attendCache(
    q: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, visibility: VisibilityOptions, offsets?: readonly number[],
  ): tf.Tensor4D {
    const Tq = q.shape[1];
    const implementation = this.activeImplementation();
    if (Tq === 1 && offsets) {
      const M = Math.max(1, ...offsets.map((t) => visibleKeyCount(t, this.layout)));
      return tf.tidy(() => {
        if (useKernel(this.layerName, implementation)) {
          // the lists formed from the positions on the GPU, not uploaded, and the keys read where
          // they lie in the cache, not gathered
          const listed = stepKeysKernel(visibility.queryOffsets as tf.Tensor1D, this.layout, M, keys.shape[1]);
          return flashAttentionOverList(q, keys, values, listed);
        }
        const { keys: rows, counts } = hostLists(offsets.map((t) => visibleKeys(t, this.layout)), M);
        return flashAttention(q, gatherRows(keys, rows), gatherRows(values, rows),
          { causal: false, kvLengths: counts, implementation });
      });
    }
    const S = keys.shape[1];
    const { blockSize, localBlocks, globalBlocks, stride } = this.layout;
    const starts = visibility.queryOffsets as tf.Tensor1D;
    // on the kernels one launch
    const kernel = useKernel(this.layerName, implementation) && q.shape[0] * Tq * S > 0;
    const mask = kernel ? cacheMaskKernel(starts, Tq, S, this.layout) : tf.tidy(() => {
      const at = tf.add(starts.expandDims(1), tf.range(0, Tq, 1, 'int32').expandDims(0));      // [B, Tq]
      const I = tf.floorDiv(at, int(blockSize)).expandDims(2);                                   // [B, Tq, 1]
      const J = tf.floorDiv(tf.range(0, S, 1, 'int32'), int(blockSize)).reshape([1, 1, S]);       // [1, 1, S]
      const d = tf.sub(I, J);
      let active = tf.logicalOr(tf.less(d, int(localBlocks)), tf.less(J, int(globalBlocks)));
      if (stride > 0) active = tf.logicalOr(active, tf.equal(tf.mod(d, int(stride)), int(0)));
      return tf.logicalAnd(active, tf.greaterEqual(d, int(0)));
    });
    try {
      return flashAttention(q, keys, values, { ...visibility, mask, implementation });
    } finally {
      mask.dispose();
    }
  }

  /**
   * Runs one token through the layer, each row at its own position t (`state.positions`): it
   * writes its key and value to the cache and lets its query attend to the keys that the
   * layout shows row t (its active blocks, up to t), read from the cache (gathered, off the
   * kernels) while the host knows each row's t (every prefill took its lengths as numbers), so
   * that a step costs those keys, not t. Stepping through a sequence reproduces the parallel forward. A concatenating
   * state is left as it is (dispose it once no longer needed); a preallocated one is updated in
   * place and returned (see {@link AttentionLayer.initState}).
   *
   * @param x `[B, D]` float32, the next token.
   * @returns `[y, nextState]` with y `[B, D]`.
   * @example
   * ```ts
   * const layer = layers.blockSparse({ numHeads: 2, layout: { blockSize: 4, localBlocks: 2 } });
   * layer.apply(tf.zeros([1, 1, 16]));                   // builds it for D = 16
   * const state = layer.initState(1, { capacity: 64 });
   * const [y] = layer.step(tf.ones([1, 16]), state);     // y [1, 16]; state updated in place
   * tf.dispose([y, state]);
   * ```
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
