import * as tf from '@tensorflow/tfjs';
import { copy } from '../../cpu-host.js';
import {
  AttentionLayer, type KVCacheOptions, type KVCacheState, type WindowedAttentionLayerArgs,
} from '../../attention/attention-layer.js';
import type { VisibilityOptions } from '../../attention/visibility.js';
import type { DropoutOptions } from '../../attention/dropout.js';
import { checkPositions, fillPadding, prefillInputs, realSteps } from '../../layers/decode-state.js';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import type { PrefillOptions } from '../../layers/prefill.js';
import { argumentError, checkShape, checkTensor, checkOneOf, optionNames, useKernel } from '../../validate.js';
import {
  checkEpsilon, expressiveAttention as expressiveAttentionOp, expressiveAttentionRecurrentStep, expressiveAttentionWithDenominators,
} from './op.js';
import { MIN_DENOMINATOR, quadraticFeatures } from './reference.js';
import { halfFloatStorage } from '../../tensors.js';
import { EXPRESSIVE_ATTENTION_RECURRENT_PROMPT_READOUT, EXPRESSIVE_ATTENTION_RECURRENT_SUMS } from './kernel.js';
import { advancedPositions } from '../../positions.js';

export { quadraticFeatures };

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
  /** int32 `[B]`: the tokens row b has consumed. */
  positions: tf.Tensor1D;
};

/** Decode state of an {@link ExpressiveAttention} layer, by its `decode` argument. */
export type ExpressiveAttentionState = KVCacheState | ExpressiveAttentionRecurrentState;

const DECODES: readonly ExpressiveAttentionDecode[] = ['cache', 'recurrent'];

/**
 * The ε under which a prefill that continues a recurrent state reads the prompt's own Σ s²
 * from the attention op: with values of 1 it returns w = Σ s² / (E + Σ s²), and
 * Σ s² = E·w / (1 − w) is accurate while Σ s² < E (w < 1/2, so 1 − w is exact to an ulp).
 * A power of two, so the products with it are exact; 2⁴⁰ keeps w a normal float32 down to
 * Σ s² ≈ 2⁻⁸⁶. Where the backend stores half floats (largest 65504, see `hiddenScore`) it is 2⁸:
 * w is a normal half float down to Σ s² ≈ 2⁻⁶, and above 2⁸ the sum loses (Σ s²/2⁸)·2⁻¹¹ of itself.
 */
function sumEpsilon(): number {
  return halfFloatStorage() ? 2 ** 8 : 2 ** 40;
}

/**
 * The tfjs flag that sets how a recurrent prefill on the kernels cuts its prompt: `'auto'` (the
 * default; chunks of {@link PREFILL_CHUNK} tokens where that computes less than attending over
 * the whole prompt, see {@link prefillChunk}) or a number of tokens C, a multiple of 4 (the
 * readout's kernel takes four tokens at a time), chunks of C in every prompt longer than C.
 */
export const EXPRESSIVE_PREFILL_CHUNK_FLAG = 'MIXERS_EXPRESSIVE_PREFILL_CHUNK';
tf.env().registerFlag(EXPRESSIVE_PREFILL_CHUNK_FLAG, () => 'auto');

/** Tokens per chunk of a recurrent prefill on the kernels, by default. */
const PREFILL_CHUNK = 64;

/**
 * The chunk of a recurrent prefill of T tokens with P = K(K+1)/2 state rows on the kernels, or 0
 * to take the prompt whole ({@link EXPRESSIVE_PREFILL_CHUNK_FLAG}). Per query, attending over the
 * whole prompt costs about 2·T·K flops (half of it, a product and an update per key), a chunk of C
 * 2·C·K and reading the state entering it 2·P·K, which a prompt that continues a state pays
 * anyway: chunks pay where T > C + P (T > C when continuing).
 */
function prefillChunk(T: number, P: number, continuing: boolean): number {
  const chosen = tf.env().get(EXPRESSIVE_PREFILL_CHUNK_FLAG);
  if (chosen === 'auto') return T > PREFILL_CHUNK + (continuing ? 0 : P) ? PREFILL_CHUNK : 0;
  if (typeof chosen !== 'number' || !Number.isInteger(chosen) || chosen < 4 || chosen % 4 !== 0) {
    throw new Error(`tfjs-mixers: flag ${EXPRESSIVE_PREFILL_CHUNK_FLAG} must be 'auto' or a number of tokens that is a positive ` +
      `multiple of 4; received ${JSON.stringify(chosen)}.`);
  }
  return T > chosen ? chosen : 0;
}
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
 * `prefill` runs a prompt in parallel with either decode and returns the state stepping it
 * would leave; every state records each row's position. The recurrent form rounds less
 * kindly for queries nearly orthogonal to every key seen (see the guide's "Precision of the
 * two decodes").
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
   * An empty decode state for `batch` sequences, every row at position 0: a key/value cache
   * (`options.capacity` preallocates it: see {@link AttentionLayer.initState}), or with
   * `decode: 'recurrent'` zero sums `M [B, Hkv, P, K]` and `z [B, Hkv, P]`, P = K(K+1)/2,
   * whose size never grows (so it takes no `capacity`).
   */
  override initState(batch: number, options?: KVCacheOptions): ExpressiveAttentionState;
  // AttentionLayer's signature, so that this layer still is one
  override initState(batch: number, options?: KVCacheOptions): KVCacheState;
  override initState(batch: number, options?: KVCacheOptions): ExpressiveAttentionState {
    if (this.decode === 'cache') return super.initState(batch, options);
    this.checkBatch(batch);
    this.checkDecodes('initState');
    if (options?.capacity !== undefined) {
      throw argumentError(`${this.layerName}.initState`, `option 'capacity' needs decode: 'cache': the recurrent state has a ` +
        `fixed size and nothing to preallocate; received capacity = ${String(options.capacity)} with decode: 'recurrent'.`);
    }
    const { K } = this.dims();
    const P = (K * (K + 1)) / 2;
    return {
      M: tf.zeros([batch, this.numKvHeads, P, K]), z: tf.zeros([batch, this.numKvHeads, P]), positions: tf.zeros([batch], 'int32'),
    };
  }

  /**
   * Runs one token through the layer and returns its output and the next state, which
   * reproduces the parallel forward when stepped through a sequence; every row's position
   * advances by one. With `decode: 'cache'` its query attends to the cache (see
   * {@link FlashStyleTiledAttention.step}); with `decode: 'recurrent'` the token's φ(k)·vᵀ and φ(k) are
   * added to the sums and its query reads them, each row from its own sums, so rows at
   * different positions decode in one batch. A recurrent state is left as it is: dispose it
   * once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @param state from {@link ExpressiveAttention.initState}, a previous step or a prefill.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  override step(x: tf.Tensor2D, state: ExpressiveAttentionState): [tf.Tensor2D, ExpressiveAttentionState];
  // AttentionLayer's signature, so that this layer still is one
  override step(x: tf.Tensor2D, state: KVCacheState): [tf.Tensor2D, KVCacheState];
  override step(x: tf.Tensor2D, state: ExpressiveAttentionState): [tf.Tensor2D, ExpressiveAttentionState] {
    if (!this.isRecurrent('step', state)) return super.step(x, state);
    this.checkDecodes('step');
    this.checkStep(x, state, 'M');
    this.checkRecurrentState(`${this.layerName}.step`, state, x.shape[0]);
    const { K } = this.dims();
    return tf.tidy((): [tf.Tensor2D, ExpressiveAttentionRecurrentState] => {
      const B = x.shape[0];
      const H = this.numHeads;
      // the token of row b sits at positions[b]
      const [q0, k0, v0] = this.denseAll(x, ['query', 'key', 'value']);
      const [q4, k4] = this.rotate(q0!.reshape([B, 1, H, K]) as tf.Tensor4D,
        k0!.reshape([B, 1, this.numKvHeads, K]) as tf.Tensor4D, { offset: state.positions });
      const q = q4.reshape([B, H, K]) as tf.Tensor3D;
      const k = k4.reshape([B, this.numKvHeads, K]) as tf.Tensor3D;
      const v = v0!.reshape([B, this.numKvHeads, K]) as tf.Tensor3D;
      // the WGSL step on webgpu (useKernel), the tfjs-ops step elsewhere
      const implementation = this.activeImplementation();
      const [o, M, z] = expressiveAttentionRecurrentStep(q, k, v, state.M, state.z,
        { scale: 1 / Math.sqrt(K), epsilon: this.epsilon, implementation });
      const positions = advancedPositions(state.positions, useKernel(this.layerName, implementation));
      return [this.dense(o.reshape([B, H * K]), 'output') as tf.Tensor2D, { M, z, positions }];
    });
  }

  /**
   * Runs a prompt through the layer in parallel and returns its outputs and the state that
   * stepping its real tokens one by one from `state` would leave. x is right-padded: row b
   * holds `options.lengths[b]` real tokens (default all T) and continues from its own
   * position. With `decode: 'cache'` see {@link FlashStyleTiledAttention.prefill}. With
   * `decode: 'recurrent'`:
   * - the prompt's attention to itself is the layer's forward, `ops.expressiveAttention`
   *   (the tiled kernel on webgpu), causal;
   * - continuing a given state, each query also reads the state's sums, N₀ = φ(scale·q)·M and
   *   S₀ = φ(scale·q)·z, and o = (N₀ + N)/(ε + S₀ + S) with N, S the prompt's own
   *   Σ s²·v and Σ s² (on webgpu N₀ and S₀ are one kernel and ε + S is the attention kernel's
   *   own denominator, returned beside o; elsewhere the queries' features and a matMul form N₀
   *   and S₀, and S comes from a second call of the op, with values 1 and ε = 2⁴⁰);
   * - the new sums add the real tokens' φ(k)·vᵀ and φ(k): on webgpu one kernel that adds them
   *   token by token as the step does, leaving the state stepping would, to the bit; elsewhere
   *   one batched matMul over the prompt, the padded tokens' selected away.
   * Off webgpu it needs B·T·Hkv·K(K+1)/2 floats for the keys' features (and B·T·H·K(K+1)/2 for
   * the queries' when continuing a state). The input state is left as it is: dispose it once it
   * is no longer needed.
   *
   * @param x `[B, T, D]` float32, the prompt, right-padded.
   * @param state from {@link ExpressiveAttention.initState}, a step or a prefill; default
   *   `initState(B)`.
   * @returns `[y, nextState]`, y `[B, T, D]`; y at a padded position (t ≥ lengths[b]) is
   *   unspecified but finite (padded tokens are read as zeros, so even a NaN there reaches no
   *   output and not the state).
   * @example
   * ```ts
   * const layer = layers.expressiveAttention({ numHeads: 4, decode: 'recurrent' });
   * layer.apply(tf.zeros([1, 1, 32]));                                 // builds it for D = 32
   * const [y, state] = layer.prefill(tf.randomNormal([2, 6, 32]), undefined, { lengths: [6, 2] });
   * const [next, after] = layer.step(tf.randomNormal([2, 32]), state); // row 0 at 6, row 1 at 2
   * after.positions.print();                                           // [7, 3]
   * tf.dispose([y, state, next, after]);
   * ```
   */
  override prefill(x: tf.Tensor3D, state?: ExpressiveAttentionState, options?: PrefillOptions): [tf.Tensor3D, ExpressiveAttentionState];
  // AttentionLayer's signature, so that this layer still is one
  override prefill(x: tf.Tensor3D, state?: KVCacheState, options?: PrefillOptions): [tf.Tensor3D, KVCacheState];
  override prefill(x: tf.Tensor3D, state?: ExpressiveAttentionState, options?: PrefillOptions): [tf.Tensor3D, ExpressiveAttentionState] {
    if (this.decode === 'cache') {
      if (state !== undefined) this.isRecurrent('prefill', state);
      return super.prefill(x, state as KVCacheState | undefined, options);
    }
    const method = `${this.layerName}.prefill`;
    this.checkDecodes('prefill');
    if (state !== undefined) this.isRecurrent('prefill', state);
    const { D, K } = this.dims();
    const { B, T, lengths, full } = prefillInputs(method, x, D, options);
    try {
      if (state !== undefined) this.checkRecurrentState(method, state as ExpressiveAttentionRecurrentState, B);
      const given = state as ExpressiveAttentionRecurrentState | undefined;
      return tf.tidy((): [tf.Tensor3D, ExpressiveAttentionRecurrentState] => {
        const start = given ?? (this.initState(B) as ExpressiveAttentionRecurrentState);
        if (B * T === 0) {
          return [tf.zeros([B, T, D]), { M: start.M.clone(), z: start.z.clone(), positions: start.positions.clone() }];
        }
        const H = this.numHeads;
        const Hkv = this.numKvHeads;
        const scale = 1 / Math.sqrt(K);
        const implementation = this.activeImplementation();
        // padded tokens are read as zeros: nothing there, not even a NaN, reaches an output
        const source = full ? x : fillPadding(x, lengths, { onKernel: this.onKernels() });
        // token t of row b sits at positions[b] + t
        const [q0, k0, v0] = this.denseAll(source, ['query', 'key', 'value']);
        const [q, k] = this.rotate(q0!.reshape([B, T, H, K]) as tf.Tensor4D,
          k0!.reshape([B, T, Hkv, K]) as tf.Tensor4D, { offset: start.positions });
        const v = v0!.reshape([B, T, Hkv, K]) as tf.Tensor4D;
        let o: tf.Tensor4D;
        let next: Pick<ExpressiveAttentionRecurrentState, 'M' | 'z'>;
        if (this.untapedKernels()) {
          ({ o, ...next } = this.prefillOnKernels(q, k, v, lengths, start, given !== undefined, scale));
        } else {
          // the prompt's attention to itself; right-padded, so a real query sees only real keys
          const attention = (values: tf.Tensor4D, epsilon: number) =>
            expressiveAttentionOp(q, k, values, { causal: true, scale, epsilon, implementation });
          o = given ? this.withStateShare(q, v, start, scale, attention) : attention(v, this.epsilon);
          next = this.promptState(k, v, full ? null : lengths, start);
        }
        const y = this.dense(o.reshape([B, T, H * K]), 'output') as tf.Tensor3D;
        return [y, { ...next, positions: tf.add(start.positions, lengths) as tf.Tensor1D }];
      });
    } finally {
      lengths.dispose();
    }
  }

  /** The least denominator of a prefill's outputs, max(ε, 2⁻⁶⁰), as the step's readout clamps it. */
  private denominatorFloor(): number {
    return Math.max(this.epsilon, MIN_DENOMINATOR);
  }

  /**
   * A prompt's outputs o `[B, T, H, K]` and the state after it, on the kernels (no gradient is
   * recorded). Each chunk of C tokens ({@link prefillChunk}) reads the state entering it and
   * attends within itself, o = (N₀ + N)/(ε + S₀ + S) = o_p + (N₀ − S₀·o_p)/(ε + S₀ + S): N₀ and
   * S₀ the state's share at φ(scale·q) (`recurrent-prompt-readout.wgsl`, compensated as the
   * step's), o_p and ε + S the chunk's own causal attention and its denominators, one pass
   * (`expressiveAttentionWithDenominators`). The states come from one launch that adds the real
   * tokens in order with the step's operations (`recurrent-sums.wgsl`), so each, the last too, is
   * the one stepping would leave, to the bit. A prompt taken whole reads the state it continues
   * (S₀ = N₀ = 0 for an empty one), or from the empty state is the attention alone.
   */
  private prefillOnKernels(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, lengths: tf.Tensor1D, start: ExpressiveAttentionRecurrentState,
    continuing: boolean, scale: number,
  ): { o: tf.Tensor4D; M: tf.Tensor4D; z: tf.Tensor3D } {
    const [B, T, , K] = q.shape;
    const Hkv = this.numKvHeads;
    const P = (K * (K + 1)) / 2;
    const chunk = prefillChunk(T, P, continuing);
    const [Ms, zs] = tf.engine().runKernel(EXPRESSIVE_ATTENTION_RECURRENT_SUMS, { k, v, lengths, M: start.M, z: start.z }, { chunk }) as
      [tf.Tensor4D, tf.Tensor3D];
    // the last entry is the state after the prompt
    const entries = Ms.shape[1];
    const last = <R extends tf.Rank>(sums: tf.Tensor, shape: number[]) => (entries === 1 ? sums
      : sums.slice([0, entries - 1], [B * Hkv, 1])).reshape(shape) as tf.Tensor<R>;
    const M = last<tf.Rank.R4>(Ms, [B, Hkv, P, K]);
    const z = last<tf.Rank.R3>(zs, [B, Hkv, P]);
    if (chunk === 0 && !continuing) {
      return { o: expressiveAttentionOp(q, k, v, { causal: true, scale, epsilon: this.epsilon, implementation: 'webgpu' }), M, z };
    }
    // the states the queries read: their chunk's, or the one the whole prompt continues
    const [read, readZ, C] = chunk > 0 ? [Ms, zs, chunk] : [start.M.reshape([B * Hkv, 1, P, K]), start.z.reshape([B * Hkv, 1, P]), T];
    const segmentIds = chunk > 0 ? tf.tensor2d(Int32Array.from({ length: B * T }, (_, i) => Math.floor((i % T) / C)), [B, T], 'int32') : undefined;
    const [own, denominators] = expressiveAttentionWithDenominators(q, k, v, { causal: true, scale, epsilon: this.epsilon, segmentIds });
    const [o] = tf.engine().runKernel(EXPRESSIVE_ATTENTION_RECURRENT_PROMPT_READOUT, { q, M: read, z: readZ, o: own, denominators },
      { scale, chunk: C, floor: this.denominatorFloor() }) as tf.Tensor4D[];
    return { o: o!, M, z };
  }

  /**
   * A prompt's outputs o `[B, T, H, K]` continuing the recurrent state `start`, off the kernels:
   * each query also reads the state's sums at φ(scale·q),
   * o = (N₀ + N)/(ε + S₀ + S) = o_p + (N₀ − S₀·o_p)/(ε + S₀ + S), with o_p = N/(ε + S) the
   * prompt's own (`attention`, causal, at values v and ε) and S₀ = 0 = N₀ for a row whose state
   * is empty. The queries' features and a matMul form N₀ and S₀; the op returns normalised
   * outputs, so S comes from a second call with values 1.
   */
  private withStateShare(
    q: tf.Tensor4D, v: tf.Tensor4D, start: ExpressiveAttentionRecurrentState, scale: number,
    attention: (values: tf.Tensor4D, epsilon: number) => tf.Tensor4D,
  ): tf.Tensor4D {
    const [N0, S0] = this.stateReadout(q, start, scale);
    // S from the op: w = S/(E + S) with values 1, S = E·w/(1 − w)
    const [B, T, H] = q.shape;
    const E = sumEpsilon();
    const w = copy.slice(attention(tf.onesLike(v), E), [0, 0, 0, 0], [B, T, H, 1]);
    const S = tf.div(tf.mul(w, E), tf.sub(1, w));
    const own = attention(v, this.epsilon);
    const denominator = tf.maximum(tf.add(tf.add(S0, S), this.epsilon), this.denominatorFloor());
    return tf.add(own, tf.div(tf.sub(N0, tf.mul(S0, own)), denominator)) as tf.Tensor4D;
  }

  /**
   * The state's share of each prompt query off the kernels, N₀ = φ(scale·q)·M `[B, T, H, K]` and
   * S₀ = max(φ(scale·q)·z, 0) `[B, T, H, 1]` (Σ (q·k)² ≥ 0, as the step clamps it), by the
   * queries' features and a batched matMul over the P state rows.
   */
  private stateReadout(q: tf.Tensor4D, start: ExpressiveAttentionRecurrentState, scale: number): [tf.Tensor, tf.Tensor] {
    const [B, T, H, K] = q.shape;
    const Hkv = this.numKvHeads;
    const P = (K * (K + 1)) / 2;
    // query head h reads kv head ⌊h·Hkv/H⌋: the G = H/Hkv query heads of a kv head are
    // adjacent (rank ≤ 4 throughout: tfjs's webgpu shaders stop there)
    const G = H / Hkv;
    const phiQ = quadraticFeatures(tf.mul(q, scale).reshape([B, T, Hkv, G * K]).transpose([0, 2, 1, 3])
      .reshape([B * Hkv, T * G, K]));                                               // [B·Hkv, T·G, P]
    const fromState = (sums: tf.Tensor, width: number) => tf.matMul(phiQ, sums.reshape([B * Hkv, P, width]))
      .reshape([B, Hkv, T, G * width]).transpose([0, 2, 1, 3]).reshape([B, T, H, width]);
    return [fromState(start.M, K), tf.relu(fromState(start.z, 1))];
  }

  /**
   * The recurrent sums after a right-padded prompt's real tokens (`lengths` `[B]`, or null when
   * every token is) off the kernels, from `start`: M + Σ φ(k)·vᵀ and z + Σ φ(k) over rotated k and
   * v `[B, T, Hkv, K]`, by the features and a batched matMul over the prompt. Padded tokens'
   * k and v are multiplied by 0: the padding of x was zeroed before the projections, so they
   * are finite, and φ(0) = 0 (a select would broadcast its condition by a tile, slow on wasm).
   */
  private promptState(k: tf.Tensor4D, v: tf.Tensor4D, lengths: tf.Tensor1D | null, start: ExpressiveAttentionRecurrentState):
    Pick<ExpressiveAttentionRecurrentState, 'M' | 'z'> {
    const [B, T] = k.shape;
    const keep = lengths && tf.cast(realSteps(lengths, T), 'float32').reshape([B, T, 1, 1]);
    const [keys, values] = keep ? [tf.mul(k, keep), tf.mul(v, keep)] : [k, v];
    const phiK = quadraticFeatures(keys).transpose([0, 2, 3, 1]) as tf.Tensor4D;    // [B, Hkv, P, T]
    const M = tf.matMul(phiK, values.transpose([0, 2, 1, 3]) as tf.Tensor4D);       // [B, Hkv, P, K]
    return { M: tf.add(start.M, M) as tf.Tensor4D, z: tf.add(start.z, tf.sum(phiK, 3)) as tf.Tensor3D };
  }

  /**
   * Whether `state` is a recurrent state; throws, naming `method`, when it is not the kind
   * this layer's `decode` makes.
   */
  private isRecurrent(method: 'step' | 'prefill', state: ExpressiveAttentionState): state is ExpressiveAttentionRecurrentState {
    const recurrent = state !== null && typeof state === 'object' && 'M' in state;
    if (recurrent !== (this.decode === 'recurrent')) {
      throw new Error(`${this.layerName}.${method}: this layer decodes with decode = '${this.decode}', but argument 'state' is ` +
        `${recurrent ? 'a recurrent state' : 'a key/value cache'}; use the state from this layer's initState().`);
    }
    return recurrent;
  }

  /** Checks a recurrent state's sums and positions for a batch of B, naming `method`. */
  private checkRecurrentState(method: string, state: ExpressiveAttentionRecurrentState, B: number): void {
    const { K } = this.dims();
    const P = (K * (K + 1)) / 2;
    const Hkv = this.numKvHeads;
    checkShape(method, 'state.M', checkTensor(method, 'state.M', state.M, ['B', 'Hkv', 'P', 'K']), [B, Hkv, P, K], ['B', 'Hkv', 'P', 'K']);
    checkShape(method, 'state.z', checkTensor(method, 'state.z', state.z, ['B', 'Hkv', 'P']), [B, Hkv, P], ['B', 'Hkv', 'P']);
    checkPositions(method, state, B);
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
