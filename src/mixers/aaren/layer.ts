import * as tf from '@tensorflow/tfjs';
import { checkPositions, realSteps } from '../../layers/decode-state.js';
import { MixerLayer, mixerClassName, registerMixerLayer, type Initializer, type MixerLayerArgs } from '../../layers/mixer-layer.js';
import type { PrefillOptions } from '../../layers/prefill.js';
import { argumentError, checkPositiveInteger, checkShape, checkStepToken, checkTensor, optionNames } from '../../validate.js';
import { aaren as aarenOp, aarenStep, aarenWithState, aarenWithStateOver, type AarenState } from './op.js';
import { emptyState } from './reference.js';

/** Arguments of the {@link Aaren} layer. */
export interface AarenLayerArgs extends MixerLayerArgs {
  /** Heads H, each with its own learned query: a positive integer, required. */
  numHeads: number;
  /** The head width K, a positive integer. Default D / numHeads. */
  headDim?: number;
}

const OPTIONS = optionNames<Omit<AarenLayerArgs, keyof MixerLayerArgs>>({ numHeads: true, headDim: true });

/** Decode state of {@link Aaren}: a fixed size, whatever the tokens seen. */
export type AarenLayerState = {
  /** `[B, H]`: the largest score so far (−∞ before the first token). */
  m: tf.Tensor2D;
  /** `[B, H]`: Σ e^{s_j − m} over the tokens so far. */
  u: tf.Tensor2D;
  /** `[B, H, K]`: Σ e^{s_j − m}·v_j over the tokens so far. */
  w: tf.Tensor3D;
  /** int32 `[B]`: the tokens each row has consumed. */
  positions: tf.Tensor1D;
};

/**
 * Aaren as a layer (Feng et al. 2024, "Attention as an RNN"; the {@link "aaren" | Aaren guide}):
 * attention whose query is a learned token per head, so that every prefix's output is one
 * scan, `[B, T, D] → [B, T, D]` with H heads of width K:
 * ```
 * k, v = x·key, x·value                             [B, T, H, K]
 * o_t  = Σ_{j≤t} softmax_j(q_h·k_j / √K) · v_j       q_h = queries[h], [B, T, H, K]
 * out  = o·output
 * ```
 * Weights: `key`, `value` `[D, H·K]`, `queries` `[H, K]`, `output` `[H·K, D]`, no biases (the
 * specification's block), all glorotUniform (tfjs's Dense default). Decoding keeps (m, u, w) per head, O(H·K) in
 * all, so each `step` costs O(D·H·K) whatever the position; `prefill` runs a prompt through the
 * op and returns the same state.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 64 }),
 *   layers.aaren({ numHeads: 4 }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 *
 * const mixer = model.layers[1] as Aaren;
 * const state = mixer.initState(1);
 * const [y, next] = mixer.step(tf.randomNormal([1, 64]), state); // y [1, 64]
 * tf.dispose([state, y, next]);
 * ```
 */
export class Aaren extends MixerLayer<{ H: number; K: number }> {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('Aaren');
  readonly numHeads: number;
  /** K as given; `null` for the default D / numHeads, resolved when the layer is built. */
  readonly headDim: number | null;

  constructor(args: AarenLayerArgs) {
    super(args, OPTIONS);
    const name = this.layerName;
    if (args?.numHeads === undefined) {
      throw argumentError(name, `argument 'numHeads', the number of heads (a positive integer), is required; received none.`);
    }
    this.numHeads = checkPositiveInteger(name, 'numHeads', args.numHeads);
    this.headDim = args.headDim == null ? null : checkPositiveInteger(name, 'headDim', args.headDim);
  }

  protected createWeights(D: number): void {
    const H = this.numHeads;
    if (this.headDim == null && D % H !== 0) {
      throw new Error(`${this.layerName}: the input width D = ${D} is not divisible by numHeads = ${H}; set headDim.`);
    }
    const K = this.headDim ?? D / H;
    const add = (n: string, shape: number[], init: Initializer) => this.addNamedWeight(n, shape, init);
    add('key', [D, H * K], tf.initializers.glorotUniform({}));
    add('value', [D, H * K], tf.initializers.glorotUniform({}));
    add('queries', [H, K], tf.initializers.glorotUniform({}));
    add('output', [H * K, D], tf.initializers.glorotUniform({}));
    this.setDims({ H, K });
  }

  /** k and v `[B, T, H, K]` of x `[B, T, D]`. */
  private keysValues(x: tf.Tensor3D): { k: tf.Tensor4D; v: tf.Tensor4D } {
    const { H, K } = this.dims();
    const [B, T] = x.shape;
    const [k, v] = this.denseAll(x, ['key', 'value']);
    return { k: k!.reshape([B, T, H, K]), v: v!.reshape([B, T, H, K]) };
  }

  /**
   * The op on x `[B, T, D]` from `start` (default the empty state), projected: `[B, T, D]` and the
   * op's final state; with `real` `[B, T]` (1 real, 0 padding), the state after each row's real
   * tokens; with `step`, one decode token of rows at `step.positions` (the step kernel on webgpu),
   * and those positions plus one; with `withState` false (the forward), no state, whose launches
   * the kernels then skip.
   */
  private run(x: tf.Tensor3D, how: { start?: AarenState; real?: tf.Tensor2D; step?: { positions: tf.Tensor1D }; withState?: boolean } = {}):
    { y: tf.Tensor3D; state?: AarenState; positions?: tf.Tensor1D } {
    const { H, K } = this.dims();
    const [B, T] = x.shape;
    const { k, v } = this.keysValues(x);
    const { start, real, step, withState = true } = how;
    const options = {
      ...(start ? { initialState: { m: start.m, u: start.u, w: start.w } } : {}), implementation: this.activeImplementation(),
    };
    const q = this.weight('queries').read() as tf.Tensor2D;
    const project = (o: tf.Tensor4D) => this.dense(o.reshape([B, T, H * K]), 'output') as tf.Tensor3D;
    if (!withState) return { y: project(aarenOp(q, k, v, options)) };
    if (step) {
      const { output, state, positions } = aarenStep(q, k, v, step.positions, options);
      return { y: project(output), state, positions };
    }
    const { output, state } = real ? aarenWithStateOver(q, k, v, real, options) : aarenWithState(q, k, v, options);
    return { y: project(output), state };
  }

  protected forward(x: tf.Tensor3D): tf.Tensor3D {
    return this.run(x, { withState: false }).y;
  }

  /**
   * A fresh decode state for `batch` sequences (a non-negative integer): the empty state
   * (m = −∞, u = 0, w = 0, the identity of the scan's merge), every position 0.
   */
  initState(batch: number): AarenLayerState {
    this.checkBatch(batch);
    const { H, K } = this.dims();
    return { ...emptyState(batch, H, K), positions: tf.zeros([batch], 'int32') };
  }

  /**
   * Runs one token through the layer: the state merges the token and every row's position
   * advances by one. Stepping through a sequence reproduces the parallel forward. The input
   * state is left as it is: dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @param state from {@link Aaren.initState}, a previous step or a prefill.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  step(x: tf.Tensor2D, state: AarenLayerState): [tf.Tensor2D, AarenLayerState] {
    const { D } = this.dims();
    checkStepToken(this.layerName, x, D);
    this.checkState(`${this.layerName}.step`, state, x.shape[0]);
    return tf.tidy((): [tf.Tensor2D, AarenLayerState] => {
      const { y, state: next, positions } = this.run(x.expandDims(1) as tf.Tensor3D, { start: state, step: { positions: state.positions } });
      return [y.squeeze([1]) as tf.Tensor2D, { ...next!, positions: positions! }];
    });
  }

  /**
   * Runs a prompt through the layer in parallel: the outputs, and the state that stepping its
   * real tokens one by one from `state` would leave. x is right-padded: row b holds
   * `options.lengths[b]` real tokens (default all T), and its state advances by that many from
   * its own position. The op takes the padded tokens as the merge's identity, so its final state
   * is each row's after its real tokens. The input state is left as it is.
   *
   * @param x `[B, T, D]` float32, the prompt, right-padded.
   * @param state from {@link Aaren.initState}, {@link Aaren.step} or a previous prefill; default
   *   a fresh state.
   * @returns `[y, nextState]`, y `[B, T, D]`; y at a padded step is unspecified but finite.
   *
   * @example
   * ```ts
   * const layer = layers.aaren({ numHeads: 2 });
   * layer.apply(tf.zeros([1, 1, 8]));                       // builds it for D = 8
   * const [y, state] = layer.prefill(tf.randomNormal([2, 5, 8]), undefined, { lengths: [5, 2] });
   * const [next, after] = layer.step(tf.randomNormal([2, 8]), state);   // row 0 at 5, row 1 at 2
   * after.positions.print();                                 // [6, 3]
   * tf.dispose([y, state, next, after]);
   * ```
   */
  prefill(x: tf.Tensor3D, state?: AarenLayerState, options?: PrefillOptions): [tf.Tensor3D, AarenLayerState] {
    return this.prefillState(x, state, options, {
      init: (B) => this.initState(B),
      check: (method, given, B) => this.checkState(method, given, B),
      run: ({ x: clean, start, lengths, padded }) => {
        const real = padded ? { real: tf.cast(realSteps(lengths, clean.shape[1]), 'float32') as tf.Tensor2D } : {};
        const { y, state: next } = this.run(clean, { start, ...real });
        return [y, next!];
      },
    });
  }

  /** Checks a decode state given to `method`: m and u `[B, H]`, w `[B, H, K]`, and the positions. */
  private checkState(method: string, state: AarenLayerState, B: number): void {
    const { H, K } = this.dims();
    for (const [field, shape, layout] of [['m', [B, H], ['B', 'H']], ['u', [B, H], ['B', 'H']], ['w', [B, H, K], ['B', 'H', 'K']]] as const) {
      checkShape(method, `state.${field}`, checkTensor(method, `state.${field}`, state?.[field], [...layout]), [...shape], [...layout]);
    }
    checkPositions(method, state, B);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), numHeads: this.numHeads, headDim: this.headDim };
  }
}
registerMixerLayer(Aaren);

/**
 * Creates an {@link Aaren} layer, as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * const mixer = layers.aaren({ numHeads: 4 });
 * mixer.apply(tf.randomNormal([2, 32, 64])); // [2, 32, 64]
 * ```
 */
export function aaren(args: AarenLayerArgs): Aaren {
  return new Aaren(args);
}
