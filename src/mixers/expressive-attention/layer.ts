import * as tf from '@tensorflow/tfjs';
import { AttentionLayer, type KVCacheState, type WindowedAttentionLayerArgs } from '../../attention/attention-layer.js';
import type { VisibilityOptions } from '../../attention/visibility.js';
import type { DropoutOptions } from '../../attention/dropout.js';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { argumentError, checkOneOf, optionNames } from '../../validate.js';
import { checkEpsilon, expressiveAttention as expressiveAttentionOp, expressiveAttentionRecurrentStep } from './op.js';

export { quadraticFeatures } from './reference.js';

/**
 * How {@link ExpressiveAttention} decodes: `'cache'` keeps every key and value (state grows by
 * 2·Hkv·K floats a token); `'recurrent'` keeps the fixed-size sums of the exact recurrent form.
 */
export type ExpressiveAttentionDecode = 'cache' | 'recurrent';

/** Arguments of the {@link ExpressiveAttention} layer. */
export interface ExpressiveAttentionArgs extends WindowedAttentionLayerArgs {
  /** Added to the denominator Σ s², a finite number ≥ 0. Default `1e-6`. */
  epsilon?: number;
  /**
   * The decode state used by `initState` and `step`. Default `'cache'`. `'recurrent'` sums over
   * every token seen, so it takes no `window`.
   */
  decode?: ExpressiveAttentionDecode;
}

/**
 * Decode state of the recurrent form, per batch row and key/value head, P = K(K+1)/2:
 * its size does not grow with the tokens seen.
 */
export type ExpressiveAttentionRecurrentState = {
  /** `[B, Hkv, P, K]`: Σ_s φ(k_s)·v_sᵀ over the tokens seen. */
  M: tf.Tensor4D;
  /** `[B, Hkv, P]`: Σ_s φ(k_s). */
  z: tf.Tensor3D;
  /** Tokens seen so far. */
  position: number;
};

/** Decode state of an {@link ExpressiveAttention} layer, by its `decode` argument. */
export type ExpressiveAttentionState = KVCacheState | ExpressiveAttentionRecurrentState;

const DECODES: readonly ExpressiveAttentionDecode[] = ['cache', 'recurrent'];
const OPTIONS = optionNames<Omit<ExpressiveAttentionArgs, keyof WindowedAttentionLayerArgs>>({ epsilon: true, decode: true });

/**
 * Multi-head attention whose weights are squared scores normalised directly (Gros 2024; the
 * {@link "expressive-attention" | ExpressiveAttention guide}): `[B, T, D] → [B, T, D]` with query, key, value and output
 * projections and grouped-query heads (`numKvHeads`). The attention runs as
 * `ops.expressiveAttention`, tiled on WebGPU. Causal self-attention by default; `causal: false`
 * makes an encoder layer, `window` a sliding-window one, and `apply([x, context])`
 * cross-attention (queries from x `[B, Tq, D]`, keys and values from context `[B, Tk, Dc]`, not
 * causal unless `causal: true`). `apply(x, { segmentIds })` attends within packed sequences, and
 * a padding mask that tfjs propagates (`tf.layers.embedding({ maskZero: true })`) hides the
 * padded keys.
 *
 * Decoding: with `decode: 'cache'` (default) `step` appends to a key/value cache, which grows
 * by 2·Hkv·K floats per token. With `decode: 'recurrent'` it keeps, per key/value head,
 * `M = Σ φ(k)·vᵀ [K(K+1)/2, K]` and `z = Σ φ(k) [K(K+1)/2]` and outputs
 * `φ(scale·q)·M / (ε + φ(scale·q)·z)`: the same attention, exactly, in fixed memory. On the
 * webgpu backend that step is one WGSL kernel pair (`expressiveAttentionRecurrentStep`).
 *
 * Weights: `query [D, H·K]`, `key` and `value [Dc, Hkv·K]` (Dc = D but in cross-attention),
 * `output [H·K, D]`, and their biases when `useBias` is on.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 128 }),
 *   layers.expressiveAttention({ numHeads: 4, numKvHeads: 2 }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 * ```
 */
export class ExpressiveAttention extends AttentionLayer {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('ExpressiveAttention');
  readonly epsilon: number;
  readonly decode: ExpressiveAttentionDecode;

  constructor(args: ExpressiveAttentionArgs) {
    super(args, OPTIONS, { bidirectional: true, window: true });
    this.epsilon = checkEpsilon(this.layerName, args.epsilon);
    this.decode = checkOneOf(this.layerName, 'decode', args.decode, DECODES, 'cache');
    if (this.decode === 'recurrent' && this.window !== null) {
      throw argumentError(this.layerName, `option 'window' needs decode: 'cache': the recurrent sums keep every token seen and cannot ` +
        `drop those that leave the window; received window = ${this.window} with decode: 'recurrent'.`);
    }
  }

  protected attend(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, visibility: VisibilityOptions, dropout: DropoutOptions,
  ): tf.Tensor4D {
    return expressiveAttentionOp(q, k, v, {
      ...visibility, ...dropout, epsilon: this.epsilon, implementation: this.activeImplementation(),
    });
  }

  /**
   * An empty decode state for `batch` sequences: a key/value cache, or with
   * `decode: 'recurrent'` zero sums `M [B, Hkv, P, K]` and `z [B, Hkv, P]`, P = K(K+1)/2.
   */
  override initState(batch: number): ExpressiveAttentionState;
  // AttentionLayer's signature, so that this layer still is one
  override initState(batch: number): KVCacheState;
  override initState(batch: number): ExpressiveAttentionState {
    if (this.decode === 'cache') return super.initState(batch);
    this.checkBatch(batch);
    this.checkDecodes('initState');
    const { K } = this.dimsOrThrow();
    const P = (K * (K + 1)) / 2;
    return { M: tf.zeros([batch, this.numKvHeads, P, K]), z: tf.zeros([batch, this.numKvHeads, P]), position: 0 };
  }

  /**
   * Runs one token through the layer and returns its output and the next state, which
   * reproduces the parallel forward when stepped through a sequence. With `decode: 'cache'`
   * its query attends to the growing cache; with `decode: 'recurrent'` the token's φ(k)·vᵀ and
   * φ(k) are added to the sums and its query reads them. The input state is left as it is:
   * dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @param state from {@link ExpressiveAttention.initState} or a previous step.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  override step(x: tf.Tensor2D, state: ExpressiveAttentionState): [tf.Tensor2D, ExpressiveAttentionState];
  // AttentionLayer's signature, so that this layer still is one
  override step(x: tf.Tensor2D, state: KVCacheState): [tf.Tensor2D, KVCacheState];
  override step(x: tf.Tensor2D, state: ExpressiveAttentionState): [tf.Tensor2D, ExpressiveAttentionState] {
    const name = `${this.layerName}.step`;
    const recurrent = 'M' in state;
    if (recurrent !== (this.decode === 'recurrent')) {
      throw new Error(`${name}: this layer decodes with decode = '${this.decode}', but argument 'state' is ` +
        `${recurrent ? 'a recurrent state' : 'a key/value cache'}; use the state from this layer's initState().`);
    }
    if (!('M' in state)) return super.step(x, state);
    this.checkDecodes('step');
    this.checkStep(x, state, 'M');
    const { K } = this.dimsOrThrow();
    return tf.tidy((): [tf.Tensor2D, ExpressiveAttentionRecurrentState] => {
      const B = x.shape[0];
      const H = this.numHeads;
      const q = this.dense(x, 'query').reshape([B, H, K]) as tf.Tensor3D;
      const k = this.dense(x, 'key').reshape([B, this.numKvHeads, K]) as tf.Tensor3D;
      const v = this.dense(x, 'value').reshape([B, this.numKvHeads, K]) as tf.Tensor3D;
      // the WGSL step on webgpu (useKernel), the tfjs-ops step elsewhere
      const [o, M, z] = expressiveAttentionRecurrentStep(q, k, v, state.M, state.z,
        { scale: 1 / Math.sqrt(K), epsilon: this.epsilon, implementation: this.activeImplementation() });
      return [this.dense(o.reshape([B, H * K]), 'output') as tf.Tensor2D, { M, z, position: state.position + 1 }];
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon, decode: this.decode };
  }
}
registerMixerLayer(ExpressiveAttention);

/**
 * Creates an {@link ExpressiveAttention} layer, as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * const attention = layers.expressiveAttention({ numHeads: 8, numKvHeads: 2, decode: 'recurrent' });
 * ```
 */
export function expressiveAttention(args: ExpressiveAttentionArgs): ExpressiveAttention {
  return new ExpressiveAttention(args);
}
