import * as tf from '@tensorflow/tfjs';
import { AttentionLayer, type AttentionLayerArgs, type KVCacheState } from '../../attention/attention-layer.js';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { checkOneOf, optionNames } from '../../validate.js';
import { checkEpsilon, expressiveAttention as expressiveAttentionOp, expressiveAttentionRecurrentStep } from './op.js';

export { quadraticFeatures } from './reference.js';

/**
 * How {@link ExpressiveAttention} decodes: `'cache'` keeps every key and value (state grows by
 * 2·Hkv·K floats a token); `'recurrent'` keeps the fixed-size sums of the exact recurrent form.
 */
export type ExpressiveAttentionDecode = 'cache' | 'recurrent';

/** Arguments of the {@link ExpressiveAttention} layer. */
export interface ExpressiveAttentionArgs extends AttentionLayerArgs {
  /** Added to the denominator Σ s², a finite number ≥ 0. Default `1e-6`. */
  epsilon?: number;
  /** The decode state used by `initState` and `step`. Default `'cache'`. */
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
const OPTIONS = optionNames<Omit<ExpressiveAttentionArgs, keyof AttentionLayerArgs>>({ epsilon: true, decode: true });

/**
 * Causal multi-head self-attention whose weights are squared scores normalised directly
 * (Gros 2024; the {@link "expressive-attention" | ExpressiveAttention guide}): `[B, T, D] → [B, T, D]` with query, key, value and output
 * projections and grouped-query heads (`numKvHeads`). The attention runs as
 * `ops.expressiveAttention`, tiled on WebGPU.
 *
 * Decoding: with `decode: 'cache'` (default) `step` appends to a key/value cache, which grows
 * by 2·Hkv·K floats per token. With `decode: 'recurrent'` it keeps, per key/value head,
 * `M = Σ φ(k)·vᵀ [K(K+1)/2, K]` and `z = Σ φ(k) [K(K+1)/2]` and outputs
 * `φ(scale·q)·M / (ε + φ(scale·q)·z)`: the same attention, exactly, in fixed memory. On the
 * webgpu backend that step is one WGSL kernel pair (`expressiveAttentionRecurrentStep`).
 *
 * Weights: `query [D, H·K]`, `key` and `value [D, Hkv·K]`, `output [H·K, D]`, and their biases
 * when `useBias` is on.
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
  private projections = new Map<string, tf.LayerVariable>();

  constructor(args: ExpressiveAttentionArgs) {
    super(args, OPTIONS);
    this.epsilon = checkEpsilon(this.layerName, args.epsilon);
    this.decode = checkOneOf(this.layerName, 'decode', args.decode, DECODES, 'cache');
  }

  protected attend(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
    return expressiveAttentionOp(q, k, v, { causal: true, epsilon: this.epsilon, implementation: this.activeImplementation() });
  }

  protected override createWeights(D: number): void {
    super.createWeights(D);
    // the recurrent step projects by itself: keep the weights AttentionLayer added, by name
    for (const w of this.weights) this.projections.set(w.originalName.split('/').pop()!, w);
  }

  /** One token's projection, `x [B, in]·W (+ b)`. */
  private tokenDense(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const y = tf.matMul(x, this.projections.get(name)!.read()) as tf.Tensor2D;
    if (!this.useBias) return y;
    return tf.add(y, this.projections.get(`${name}Bias`)!.read()) as tf.Tensor2D;
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
    this.checkStep(x, state, 'M');
    const { K } = this.dimsOrThrow();
    return tf.tidy((): [tf.Tensor2D, ExpressiveAttentionRecurrentState] => {
      const B = x.shape[0];
      const H = this.numHeads;
      const q = this.tokenDense(x, 'query').reshape([B, H, K]) as tf.Tensor3D;
      const k = this.tokenDense(x, 'key').reshape([B, this.numKvHeads, K]) as tf.Tensor3D;
      const v = this.tokenDense(x, 'value').reshape([B, this.numKvHeads, K]) as tf.Tensor3D;
      // the WGSL step on webgpu (useKernel), the tfjs-ops step elsewhere
      const [o, M, z] = expressiveAttentionRecurrentStep(q, k, v, state.M, state.z,
        { scale: 1 / Math.sqrt(K), epsilon: this.epsilon, implementation: this.activeImplementation() });
      return [this.tokenDense(o.reshape([B, H * K]), 'output'), { M, z, position: state.position + 1 }];
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
