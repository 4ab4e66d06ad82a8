import * as tf from '@tensorflow/tfjs';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { ProjectedMixer, type ProjectedMixerArgs } from '../../layers/projected-mixer.js';
import { checkPositions, windowAfter } from '../../layers/decode-state.js';
import type { PrefillOptions } from '../../layers/prefill.js';
import { checkOneOf, checkShape, checkTensor, optionNames } from '../../validate.js';
import { causalGeneration as causalGenerationOp, causalGenerationAdvance, causalGenerationPrefill, REDUCES, type Reduce } from './op.js';

/** Arguments of the {@link CausalGeneration} layer. */
export interface CausalGenerationArgs extends ProjectedMixerArgs {
  /** The elementwise comparison of a token with its predecessor. Default `'min'`. */
  reduce?: Reduce;
}

const OPTIONS = optionNames<Omit<CausalGenerationArgs, keyof ProjectedMixerArgs>>({ reduce: true });

/**
 * Decode state of {@link CausalGeneration}: each row's previous token and position. The mixer
 * compares a token with its predecessor only, so nothing older is kept.
 */
export type CausalGenerationState = {
  /** `[B, D]`: each row's last token (zeros in a row that has seen none). */
  previous: tf.Tensor2D;
  /** int32 `[B]`: the tokens each row has consumed; at 0 a row's next token has no predecessor. */
  positions: tf.Tensor1D;
};

/**
 * CausalGeneration as a layer: `y = causalGeneration(x)·W + b`, a drop-in replacement for
 * self-attention with no Q, K, V projections (the {@link "causal-generation" | CausalGeneration guide}).
 *
 * Input and output `[B, T, D]`. Weights: `kernel [D, D]` and `bias [D]` when `projection`
 * is on (the default). Decode with {@link CausalGeneration.initState},
 * {@link CausalGeneration.prefill} and {@link CausalGeneration.step}; the state is the previous token.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 64 }),
 *   layers.causalGeneration({ reduce: 'min' }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 * ```
 */
export class CausalGeneration extends ProjectedMixer {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('CausalGeneration');
  readonly reduce: Reduce;

  constructor(args?: CausalGenerationArgs) {
    super(args, OPTIONS);
    this.reduce = checkOneOf(this.layerName, 'reduce', args?.reduce, REDUCES, 'min');
  }

  protected mix(x: tf.Tensor3D): tf.Tensor3D {
    return causalGenerationOp(x, { reduce: this.reduce, implementation: this.activeImplementation() });
  }

  /** A fresh decode state for `batch` sequences, a non-negative integer: zeros, every position 0. */
  initState(batch: number): CausalGenerationState {
    this.checkBatch(batch);
    return { previous: tf.zeros([batch, this.builtWidth()]), positions: tf.zeros([batch], 'int32') };
  }

  /**
   * Runs one token through the layer, each row at its own position (`state.positions`, which
   * the returned state advances by one). Running `step` over a sequence reproduces the
   * parallel forward. The input state is left as it is: dispose it (`tf.dispose(state)`)
   * once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @returns `[y, nextState]` with y `[B, D]`.
   *
   * @example
   * ```ts
   * const layer = layers.causalGeneration();
   * layer.apply(tf.zeros([1, 1, 8]));                       // builds it for D = 8
   * const state = layer.initState(2);
   * const [y, next] = layer.step(tf.ones([2, 8]), state);   // y [2, 8]; next.positions [1, 1]
   * tf.dispose([state, y, next]);
   * ```
   */
  step(x: tf.Tensor2D, state: CausalGenerationState): [tf.Tensor2D, CausalGenerationState] {
    this.checkStep(x, state, 'previous');
    const positions = checkPositions(`${this.layerName}.step`, state, x.shape[0]);
    return tf.tidy((): [tf.Tensor2D, CausalGenerationState] => {
      const [mixed, next] = causalGenerationAdvance('causalGenerationStep', x, state.previous,
        { position: positions, reduce: this.reduce, implementation: this.activeImplementation() });
      return [this.project(mixed), { previous: x.clone(), positions: next }];
    });
  }

  /**
   * Runs a prompt through the layer in parallel (the forward's kernel on webgpu): the outputs,
   * and the state that stepping its real tokens one by one from `state` would leave. x is
   * right-padded: row b holds `options.lengths[b]` real tokens (default all T), and its state
   * advances by that many from its own position; a given state's last token is the predecessor
   * of x's first. The input state is left as it is: dispose it once it is no longer needed.
   *
   * @param x `[B, T, D]` float32, the prompt, right-padded.
   * @param state from {@link CausalGeneration.initState}, {@link CausalGeneration.step} or a
   *   previous prefill; default a fresh state.
   * @returns `[y, nextState]`, y `[B, T, D]`; y at a padded step (t ≥ lengths[b]) is unspecified
   *   but finite (padded tokens are read as zeros, so even a NaN there reaches no output).
   *
   * @example
   * ```ts
   * const layer = layers.causalGeneration();
   * layer.apply(tf.zeros([1, 1, 8]));                       // builds it for D = 8
   * const [y, state] = layer.prefill(tf.randomNormal([2, 5, 8]), undefined, { lengths: [5, 2] });
   * state.positions.print();                                 // [5, 2]
   * tf.dispose([y, state]);
   * ```
   */
  prefill(x: tf.Tensor3D, state?: CausalGenerationState, options?: PrefillOptions): [tf.Tensor3D, CausalGenerationState] {
    return this.prefillState(x, state, options, {
      init: (B) => this.initState(B),
      check: (method, given, B) => {
        const D = this.builtWidth();
        checkShape(method, 'state.previous', checkTensor(method, 'state.previous', given?.previous, ['B', 'D']), [B, D], ['B', 'D']);
        checkPositions(method, given, B);
      },
      run: ({ x: $x, start, lengths }) => {
        // the forward gives x[0] no predecessor; continuing a row, its predecessor is the state's token
        const mixed = state === undefined ? this.mix($x)
          : causalGenerationPrefill($x, state.previous, state.positions, { reduce: this.reduce, implementation: this.activeImplementation() });
        return [this.project(mixed), { previous: windowAfter(start.previous.expandDims(1), $x, lengths, this.onKernels()).squeeze([1]) as tf.Tensor2D }];
      },
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), reduce: this.reduce };
  }
}
registerMixerLayer(CausalGeneration);

/**
 * Creates a {@link CausalGeneration} layer, as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * const mixer = layers.causalGeneration({ reduce: 'max' });
 * ```
 */
export function causalGeneration(args?: CausalGenerationArgs): CausalGeneration {
  return new CausalGeneration(args);
}
