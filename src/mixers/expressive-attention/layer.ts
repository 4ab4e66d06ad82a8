import * as tf from '@tensorflow/tfjs';
import { AttentionLayer, type AttentionLayerArgs, type KVCacheState } from '../../attention/attention-layer.js';
import { checkOneOf, checkStepToken } from '../../validate.js';
import { checkEpsilon, expressiveAttention as expressiveAttentionOp } from './op.js';
import { MIN_DENOMINATOR } from './reference.js';

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

/**
 * The symmetric-packed square φ(x) of `x [..., K]`, `[..., K(K+1)/2]`: x_a² for every a, then
 * √2·x_a·x_b for every a < b, so that ⟨φ(q), φ(k)⟩ = (q·k)².
 *
 * @example
 * ```ts
 * const q = tf.tensor1d([1, 2]);
 * const k = tf.tensor1d([3, -1]);
 * tf.sum(tf.mul(quadraticFeatures(q), quadraticFeatures(k))); // (1·3 − 2·1)² = 1
 * ```
 */
export function quadraticFeatures(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const K = x.shape[x.rank - 1]!;
    const a: number[] = [];
    const b: number[] = [];
    const w: number[] = [];
    for (let i = 0; i < K; i++) { a.push(i); b.push(i); w.push(1); }
    for (let i = 0; i < K; i++) {
      for (let j = i + 1; j < K; j++) { a.push(i); b.push(j); w.push(Math.SQRT2); }
    }
    const at = (idx: number[]) => tf.gather(x, tf.tensor1d(idx, 'int32'), x.rank - 1);
    return tf.mul(tf.mul(at(a), at(b)), tf.tensor1d(w));
  });
}

/**
 * Causal multi-head self-attention whose weights are squared scores normalised directly
 * (Gros 2024; MIXERS.md §3): `[B, T, D] → [B, T, D]` with query, key, value and output
 * projections and grouped-query heads (`numKvHeads`). The attention runs as
 * `ops.expressiveAttention`, tiled on WebGPU.
 *
 * Decoding: with `decode: 'cache'` (default) `step` appends to a key/value cache, which grows
 * by 2·Hkv·K floats per token. With `decode: 'recurrent'` it keeps, per key/value head,
 * `M = Σ φ(k)·vᵀ [K(K+1)/2, K]` and `z = Σ φ(k) [K(K+1)/2]` and outputs
 * `φ(scale·q)·M / (ε + φ(scale·q)·z)`: the same attention, exactly, in fixed memory.
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
  static className = 'ExpressiveAttention';
  readonly epsilon: number;
  readonly decode: ExpressiveAttentionDecode;
  private projections = new Map<string, tf.LayerVariable>();

  constructor(args: ExpressiveAttentionArgs) {
    super(args);
    this.epsilon = checkEpsilon(ExpressiveAttention.className, args.epsilon);
    this.decode = checkOneOf(ExpressiveAttention.className, 'decode', args.decode, DECODES, 'cache');
  }

  protected attend(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
    return expressiveAttentionOp(q, k, v, { causal: true, epsilon: this.epsilon, implementation: this.implementation });
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    super.build(inputShape);
    // the recurrent step projects by itself: keep the weights AttentionLayer added, by name
    for (const w of this.weights) this.projections.set(w.originalName.split('/').pop()!, w);
  }

  /** One token's projection, `x [B, in]·W (+ b)`. */
  private tokenDense(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const y = tf.matMul(x, this.projections.get(name)!.read()) as tf.Tensor2D;
    if (!this.useBias) return y;
    return tf.add(y, this.projections.get(`${name}Bias`)!.read()) as tf.Tensor2D;
  }

  /** D and K of the built layer, or the error AttentionLayer gives before it is built. */
  private recurrentDims(): { D: number; K: number } {
    const query = this.projections.get('query');
    if (!query) {
      throw new Error(`${this.getClassName()}: the layer is not built yet; call it on an input (or add it to a model) before decoding.`);
    }
    return { D: query.shape[0]!, K: query.shape[1]! / this.numHeads };
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
    const { K } = this.recurrentDims();
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
    const name = `${this.getClassName()}.step`;
    const recurrent = 'M' in state;
    if (recurrent !== (this.decode === 'recurrent')) {
      throw new Error(`${name}: this layer decodes with decode = '${this.decode}', but argument 'state' is ` +
        `${recurrent ? 'a recurrent state' : 'a key/value cache'}; use the state from this layer's initState().`);
    }
    if (!('M' in state)) return super.step(x, state);
    const { D, K } = this.recurrentDims();
    checkStepToken(this.getClassName(), x, D);
    return tf.tidy((): [tf.Tensor2D, ExpressiveAttentionRecurrentState] => {
      const B = x.shape[0];
      const H = this.numHeads;
      const Hkv = this.numKvHeads;
      const P = (K * (K + 1)) / 2;
      // scale folded into q: φ(scale·q) = scale²·φ(q)
      const q = tf.mul(this.tokenDense(x, 'query'), 1 / Math.sqrt(K)).reshape([B * Hkv, H / Hkv, K]);
      const k = this.tokenDense(x, 'key').reshape([B, Hkv, K]);
      const v = this.tokenDense(x, 'value').reshape([B, Hkv, K]);
      const phiK = quadraticFeatures(k);
      const M = tf.add(state.M, tf.mul(phiK.expandDims(3), v.expandDims(2))) as tf.Tensor4D;
      const z = tf.add(state.z, phiK) as tf.Tensor3D;
      // query head h reads kv head ⌊h·Hkv/H⌋: the H/Hkv query heads of a kv head are adjacent
      const phiQ = quadraticFeatures(q);
      const numerator = tf.matMul(phiQ, M.reshape([B * Hkv, P, K]));
      // Σ_s (q·k_s)² ≥ 0, but the packed sum cancels and may round below 0: ε + max(Σ, 0),
      // floored as the parallel forward's denominator is
      const sums = tf.matMul(phiQ, z.reshape([B * Hkv, P, 1]));
      const denominator = tf.maximum(tf.add(sums, this.epsilon), Math.max(this.epsilon, MIN_DENOMINATOR));
      const o = tf.div(numerator, denominator).reshape([B, H * K]) as tf.Tensor2D;
      return [this.tokenDense(o, 'output'), { M, z, position: state.position + 1 }];
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon, decode: this.decode };
  }
}
tf.serialization.registerClass(ExpressiveAttention);

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
