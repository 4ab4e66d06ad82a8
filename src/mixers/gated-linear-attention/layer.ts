import * as tf from '@tensorflow/tfjs';
import { checkPositions, fillPadding } from '../../layers/decode-state.js';
import { MixerLayer, mixerClassName, registerMixerLayer, type Initializer, type MixerLayerArgs } from '../../layers/mixer-layer.js';
import type { PrefillOptions } from '../../layers/prefill.js';
import {
  argumentError, checkPositiveInteger, checkShape, checkStepToken, checkTensor, describe, optionNames, useKernel,
} from '../../validate.js';
import { rmsNormSwishGate } from '../../layer-norm/op.js';
import {
  gatedLinearAttentionStep, gatedLinearAttentionStepFromLowRank, gatedLinearAttentionWithState, logForgetGate,
} from './op.js';
import { advancedPositions } from '../../positions.js';

/** Arguments of the {@link GatedLinearAttention} layer (flash-linear-attention's names in parentheses). */
export interface GatedLinearAttentionArgs extends MixerLayerArgs {
  /** Heads H (`num_heads`), a positive integer. Default `4`. */
  numHeads?: number;
  /** The key width is floor(expandK·D), H·K (`expand_k`), a number > 0. Default `0.5`. */
  expandK?: number;
  /** The value width is floor(expandV·D), H·V (`expand_v`), a number > 0. Default `1`. */
  expandV?: number;
  /** The rank r of the forget gate's projection (`gate_low_rank_dim`), a positive integer. Default `16`. */
  gateLowRankDim?: number;
}

const OPTIONS = optionNames<Omit<GatedLinearAttentionArgs, keyof MixerLayerArgs>>({
  numHeads: true, expandK: true, expandV: true, gateLowRankDim: true,
});

/** Decode state of {@link GatedLinearAttention}: a fixed size, whatever the tokens seen. */
export type GatedLinearAttentionState = {
  /** `[B, H, K, V]`: each row's state S per head. */
  S: tf.Tensor4D;
  /** int32 `[B]`: the tokens each row has consumed. */
  positions: tf.Tensor1D;
};

/** The key under which the layer keeps the forget gate's up projection and bias, one tensor `[r + 1, H·K]`. */
const GATE_UP = 'forgetUp | forgetUpBias';

/** fla's `gate_logit_normalizer`: log gates are logsigmoid(·)/16, so a fresh layer forgets slowly. */
const GATE_NORMALIZER = 16;
/** fla's `norm_eps` of the per-head RMSNorm. */
const NORM_EPS = 1e-5;

function positiveNumber(layer: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw argumentError(layer, `argument '${name}' must be a finite number > 0; received ${describe(value)}.`);
  }
  return value;
}

/**
 * Gated linear attention as a layer (Yang et al. 2024; the {@link "gated-linear-attention" | GatedLinearAttention guide}),
 * flash-linear-attention's `GatedLinearAttention` block with its defaults: `[B, T, D] → [B, T, D]`,
 * with H heads, H·K = floor(expandK·D), H·V = floor(expandV·D), r = gateLowRankDim:
 * ```
 * q, k = x·query, x·key                           [B, T, H, K]
 * v    = x·value                                  [B, T, H, V]
 * g    = logsigmoid(x·forgetDown·forgetUp + forgetUpBias) / 16     ≤ 0, [B, T, H, K]
 * o    = gatedLinearAttention(q, k, v, g)         [B, T, H, V]
 * out  = (rmsNorm(o)·norm ⊙ swish(x·outputGate))·output       the norm per head, over V
 * ```
 * Weights: `query`, `key` `[D, H·K]`, `value`, `outputGate` `[D, H·V]`, `forgetDown` `[D, r]`,
 * `forgetUp` `[r, H·K]` with `forgetUpBias` `[H·K]`, `norm` `[V]`, `output` `[H·V, D]`; the
 * matrices glorotUniform (tfjs's Dense default, where fla draws N(0, 0.02)), the bias zeros, the
 * norm's scale ones. Decoding keeps S `[B, H, K, V]`, so each `step` costs O(D·(K+V)·H + H·K·V)
 * whatever the position; `prefill` runs a prompt through the chunked op and returns the same state.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 64 }),
 *   layers.gatedLinearAttention({ numHeads: 4 }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 *
 * const mixer = model.layers[1] as GatedLinearAttention;
 * const state = mixer.initState(1);
 * const [y, next] = mixer.step(tf.randomNormal([1, 64]), state); // y [1, 64]
 * tf.dispose([state, y, next]);
 * ```
 */
export class GatedLinearAttention extends MixerLayer<{ H: number; K: number; V: number }> {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('GatedLinearAttention');
  readonly numHeads: number;
  readonly expandK: number;
  readonly expandV: number;
  readonly gateLowRankDim: number;

  constructor(args?: GatedLinearAttentionArgs) {
    super(args, OPTIONS);
    const name = this.layerName;
    this.numHeads = checkPositiveInteger(name, 'numHeads', args?.numHeads ?? 4);
    this.expandK = positiveNumber(name, 'expandK', args?.expandK ?? 0.5);
    this.expandV = positiveNumber(name, 'expandV', args?.expandV ?? 1);
    this.gateLowRankDim = checkPositiveInteger(name, 'gateLowRankDim', args?.gateLowRankDim ?? 16);
  }

  protected createWeights(D: number): void {
    const H = this.numHeads;
    const width = (expand: number, arg: string) => {
      const n = Math.floor(expand * D);
      if (n < H || n % H !== 0) {
        throw new Error(`${this.layerName}: floor(${arg}·D) = floor(${expand}·${D}) = ${n} must be a positive multiple of ` +
          `numHeads = ${H}; change ${arg} or numHeads.`);
      }
      return n;
    };
    const HK = width(this.expandK, 'expandK');
    const HV = width(this.expandV, 'expandV');
    const add = (n: string, shape: number[], init: Initializer) => this.addNamedWeight(n, shape, init);
    const glorot = () => tf.initializers.glorotUniform({});
    add('query', [D, HK], glorot());
    add('key', [D, HK], glorot());
    add('value', [D, HV], glorot());
    add('outputGate', [D, HV], glorot());
    add('forgetDown', [D, this.gateLowRankDim], glorot());
    add('forgetUp', [this.gateLowRankDim, HK], glorot());
    add('forgetUpBias', [HK], tf.initializers.zeros());
    add('norm', [HV / H], tf.initializers.ones());
    add('output', [HV, D], glorot());
    this.setDims({ H, K: HK / H, V: HV / H });
    // the step kernel's up projection of the forget gate with its bias as a last row, so that it
    // forms the gate from the low-rank features in the launch that steps
    this.keepFromWeights(GATE_UP, ['forgetUp', 'forgetUpBias'], () =>
      tf.concat([this.weight('forgetUp').read(), this.weight('forgetUpBias').read().reshape([1, HK])]));
  }

  /**
   * The projections of x `[B, T, D]`, in two launches where they fit (a grouped launch may bind at
   * most three weights: a kernel counts on only 8 storage buffers): q and k `[B, T, H, K]`, v
   * `[B, T, H, V]`, the forget gate's low-rank features `[B, T, r]` and the output gate before its
   * swish `[B, T, H·V]`.
   */
  private projections(x: tf.Tensor3D): { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D; low: tf.Tensor3D; gate: tf.Tensor } {
    const { H, K, V } = this.dims();
    const [B, T] = x.shape;
    const heads = (t: tf.Tensor, width: number) => t.reshape([B, T, H, width]) as tf.Tensor4D;
    const [q, k, v] = this.denseAll(x, ['query', 'key', 'value']);
    const [low, gate] = this.denseAll(x, ['forgetDown', 'outputGate']);
    return { q: heads(q!, K), k: heads(k!, K), v: heads(v!, V), low: low as tf.Tensor3D, gate: gate! };
  }

  /** The log forget gates `[B, T, H, K]` of the low-rank features `[B, T, r]`: their up projection, then {@link logForgetGate}. */
  private logGates(low: tf.Tensor3D): tf.Tensor4D {
    const { H, K } = this.dims();
    const [B, T] = low.shape;
    const z = this.dense(low, 'forgetUp').reshape([B, T, H, K]) as tf.Tensor4D;
    return logForgetGate(z, GATE_NORMALIZER, this.activeImplementation());
  }

  /**
   * From o `[B, T, H, V]` to the output `[B, T, D]`: per-head RMSNorm times the swish of the
   * output gate `[B, T, H·V]`, then the projection.
   */
  private readout(o: tf.Tensor4D, gate: tf.Tensor): tf.Tensor3D {
    const [B, T, H, V] = o.shape;
    const gated = rmsNormSwishGate(o, this.weight('norm').read() as tf.Tensor1D, gate.reshape(o.shape), {
      epsilon: NORM_EPS, implementation: this.activeImplementation(),
    });
    return this.dense(gated.reshape([B, T, H * V]), 'output') as tf.Tensor3D;
  }

  protected forward(x: tf.Tensor3D): tf.Tensor3D {
    const { q, k, v, low, gate } = this.projections(x);
    const { output, state } = gatedLinearAttentionWithState(q, k, v, this.logGates(low), { implementation: this.activeImplementation() });
    state.dispose();
    return this.readout(output, gate);
  }

  /** A fresh decode state for `batch` sequences (a non-negative integer): S zeros, every position 0. */
  initState(batch: number): GatedLinearAttentionState {
    this.checkBatch(batch);
    const { H, K, V } = this.dims();
    return { S: tf.zeros([batch, H, K, V]), positions: tf.zeros([batch], 'int32') };
  }

  /**
   * Runs one token through the layer: S advances one step and every row's position by one.
   * Stepping through a sequence reproduces the parallel forward. The input state is left as it
   * is: dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @param state from {@link GatedLinearAttention.initState}, a previous step or a prefill.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  step(x: tf.Tensor2D, state: GatedLinearAttentionState): [tf.Tensor2D, GatedLinearAttentionState] {
    const { D } = this.dims();
    checkStepToken(this.layerName, x, D);
    this.checkState(`${this.layerName}.step`, state, x.shape[0]);
    return tf.tidy((): [tf.Tensor2D, GatedLinearAttentionState] => {
      const token = x.expandDims(1) as tf.Tensor3D;
      const { q, k, v, low, gate } = this.projections(token);
      const implementation = this.activeImplementation();
      const onKernel = useKernel(this.layerName, implementation);
      // on the kernel the step forms the log gates from the low-rank features itself
      const next = onKernel && x.shape[0] > 0
        ? gatedLinearAttentionStepFromLowRank(q, k, v, low, this.kept(GATE_UP) as tf.Tensor2D, GATE_NORMALIZER, state.S)
        : gatedLinearAttentionStep(q, k, v, this.logGates(low), state.S, { implementation });
      const y = this.readout(next.output, gate).squeeze([1]) as tf.Tensor2D;
      return [y, { S: next.state, positions: advancedPositions(state.positions, onKernel) }];
    });
  }

  /**
   * Runs a prompt through the layer in parallel: the outputs, and the state that stepping its
   * real tokens one by one from `state` would leave. x is right-padded: row b holds
   * `options.lengths[b]` real tokens (default all T), and its state advances by that many from
   * its own position. At a padded step the key and the log gate are 0, so S stays as the row's
   * last real token left it (exp(0)·S + 0ᵀv). The input state is left as it is.
   *
   * @param x `[B, T, D]` float32, the prompt, right-padded.
   * @param state from {@link GatedLinearAttention.initState}, {@link GatedLinearAttention.step} or a
   *   previous prefill; default a fresh state.
   * @returns `[y, nextState]`, y `[B, T, D]`; y at a padded step is unspecified but finite.
   *
   * @example
   * ```ts
   * const layer = layers.gatedLinearAttention({ numHeads: 2 });
   * layer.apply(tf.zeros([1, 1, 8]));                       // builds it for D = 8
   * const [y, state] = layer.prefill(tf.randomNormal([2, 5, 8]), undefined, { lengths: [5, 2] });
   * const [next, after] = layer.step(tf.randomNormal([2, 8]), state);   // row 0 at 5, row 1 at 2
   * after.positions.print();                                 // [6, 3]
   * tf.dispose([y, state, next, after]);
   * ```
   */
  prefill(x: tf.Tensor3D, state?: GatedLinearAttentionState, options?: PrefillOptions): [tf.Tensor3D, GatedLinearAttentionState] {
    return this.prefillState(x, state, options, {
      init: (B) => this.initState(B),
      check: (method, given, B) => this.checkState(method, given, B),
      run: ({ x: clean, start, lengths, padded }) => {
        const { q, k, v, low, gate } = this.projections(clean);
        const g = this.logGates(low);
        const keep = (t: tf.Tensor4D) => padded ? fillPadding(t, lengths, { onKernel: this.onKernels() }) : t;
        const run = gatedLinearAttentionWithState(q, keep(k), v, keep(g), { initialState: start.S, implementation: this.activeImplementation() });
        return [this.readout(run.output, gate), { S: run.state }];
      },
    });
  }

  /** Checks a decode state given to `method`: S `[B, H, K, V]` and the positions. */
  private checkState(method: string, state: GatedLinearAttentionState, B: number): void {
    const { H, K, V } = this.dims();
    const layout = ['B', 'H', 'K', 'V'];
    checkShape(method, 'state.S', checkTensor(method, 'state.S', state?.S, layout), [B, H, K, V], layout);
    checkPositions(method, state, B);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numHeads: this.numHeads,
      expandK: this.expandK,
      expandV: this.expandV,
      gateLowRankDim: this.gateLowRankDim,
    };
  }
}
registerMixerLayer(GatedLinearAttention);

/**
 * Creates a {@link GatedLinearAttention} layer, as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * const mixer = layers.gatedLinearAttention({ numHeads: 4, expandK: 0.5, expandV: 1 });
 * mixer.apply(tf.randomNormal([2, 32, 64])); // [2, 32, 64]
 * ```
 */
export function gatedLinearAttention(args?: GatedLinearAttentionArgs): GatedLinearAttention {
  return new GatedLinearAttention(args);
}
