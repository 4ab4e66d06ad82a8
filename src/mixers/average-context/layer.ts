import * as tf from '@tensorflow/tfjs';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { ProjectedMixer, type ProjectedMixerArgs } from '../../layers/projected-mixer.js';
import { checkPositions, windowAfter } from '../../layers/decode-state.js';
import type { PrefillOptions } from '../../layers/prefill.js';
import { checkBoolean, checkOneOf, checkShape, checkTensor, optionNames } from '../../validate.js';
import { averageContext as averageContextOp, averageContextAdvance, averageContextPrefill, COMBINES, type Combine } from './op.js';

/** Arguments of the {@link AverageContext} layer. */
export interface AverageContextArgs extends ProjectedMixerArgs {
  /** How token, predecessor and context are combined, elementwise. Default `'max'`. */
  combine?: Combine;
  /**
   * `true` (default): causal running-mean context. `false`: whole-sequence mean, the author's
   * original, which leaks future tokens; such a layer cannot decode step by step.
   */
  causal?: boolean;
}

const OPTIONS = optionNames<Omit<AverageContextArgs, keyof ProjectedMixerArgs>>({ combine: true, causal: true });

/**
 * Decode state of {@link AverageContext}: a fixed size, whatever the tokens seen. A row that
 * has seen no token yet holds zeros.
 */
export type AverageContextState = {
  /** `[B, D]`: each row's last token. */
  previous: tf.Tensor2D;
  /** `[B, D]`: the sum of each row's tokens. */
  sum: tf.Tensor2D;
  /** int32 `[B]`: the tokens each row has consumed, the running mean's count. */
  positions: tf.Tensor1D;
};

/**
 * AverageContext as a layer: `y = averageContext(x)·W + b` (the {@link "average-context" | AverageContext guide}), CausalGeneration
 * plus a running-mean context vector. Input and output `[B, T, D]`; weights `kernel [D, D]`
 * and `bias [D]` when `projection` is on. Decode with {@link AverageContext.initState},
 * {@link AverageContext.prefill} and {@link AverageContext.step}; the state holds each row's
 * previous token, running sum and count.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 64 }),
 *   layers.averageContext({ combine: 'max' }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 * ```
 */
export class AverageContext extends ProjectedMixer {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('AverageContext');
  readonly combine: Combine;
  readonly causal: boolean;

  constructor(args?: AverageContextArgs) {
    super(args, OPTIONS);
    this.combine = checkOneOf(this.layerName, 'combine', args?.combine, COMBINES, 'max');
    this.causal = checkBoolean(this.layerName, 'causal', args?.causal, true);
  }

  protected mix(x: tf.Tensor3D): tf.Tensor3D {
    return averageContextOp(x, { combine: this.combine, causal: this.causal, implementation: this.activeImplementation() });
  }

  /**
   * A fresh decode state for `batch` sequences, a non-negative integer: zeros, and every
   * position 0. Throws for `causal: false`, which has no decode form.
   */
  initState(batch: number): AverageContextState {
    this.checkBatch(batch);
    this.checkCausal('initState');
    const D = this.builtWidth();
    return { previous: tf.zeros([batch, D]), sum: tf.zeros([batch, D]), positions: tf.zeros([batch], 'int32') };
  }

  /**
   * Runs one token through the layer, each row at its own position (`state.positions`, which
   * the returned state advances by one); stepping through a sequence reproduces the parallel
   * forward. The input state is left as it is: dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @returns `[y, nextState]` with y `[B, D]`.
   *
   * @example
   * ```ts
   * const layer = layers.averageContext();
   * layer.apply(tf.zeros([1, 1, 8]));                       // builds it for D = 8
   * const state = layer.initState(2);
   * const [y, next] = layer.step(tf.ones([2, 8]), state);   // y [2, 8]; next.positions [1, 1]
   * tf.dispose([state, y, next]);
   * ```
   */
  step(x: tf.Tensor2D, state: AverageContextState): [tf.Tensor2D, AverageContextState] {
    this.checkStep(x, state, 'previous');
    const positions = checkPositions(`${this.layerName}.step`, state, x.shape[0]);
    return tf.tidy((): [tf.Tensor2D, AverageContextState] => {
      const [mixed, sum, next] = averageContextAdvance('averageContextStep', x, state.previous, state.sum, positions,
        { combine: this.combine, implementation: this.activeImplementation() });
      return [this.project(mixed), { previous: x.clone(), sum, positions: next }];
    });
  }

  /**
   * Runs a prompt through the layer in parallel: the outputs, and the state that stepping its
   * real tokens one by one from `state` would leave. x is right-padded: row b holds
   * `options.lengths[b]` real tokens (default all T), and its state advances by that many from
   * its own position. The prompt runs through the scan kernel on webgpu: the layer's forward
   * without `state`, `ops.averageContextPrefill` (the scan starting from the state's sum, count
   * and last token) with one. The input state is left as it is: dispose it once it is no longer
   * needed.
   *
   * @param x `[B, T, D]` float32, the prompt, right-padded.
   * @param state from {@link AverageContext.initState}, {@link AverageContext.step} or a
   *   previous prefill; default a fresh state.
   * @returns `[y, nextState]`, y `[B, T, D]`; y at a padded step (t ≥ lengths[b]) is unspecified
   *   but finite (padded tokens are read as zeros, so even a NaN there reaches no output).
   *
   * @example
   * ```ts
   * const layer = layers.averageContext();
   * layer.apply(tf.zeros([1, 1, 8]));                       // builds it for D = 8
   * const [y, state] = layer.prefill(tf.randomNormal([2, 5, 8]), undefined, { lengths: [5, 2] });
   * state.positions.print();                                 // [5, 2]
   * tf.dispose([y, state]);
   * ```
   */
  prefill(x: tf.Tensor3D, state?: AverageContextState, options?: PrefillOptions): [tf.Tensor3D, AverageContextState] {
    this.checkCausal('prefill');
    return this.prefillState(x, state, options, {
      init: (B) => this.initState(B),
      check: (method, given, B) => this.checkState(method, given, B, this.builtWidth()),
      run: ({ x: $x, start, lengths }) => {
        const mixed = state === undefined ? this.mix($x) : averageContextPrefill($x, start.previous, start.sum, start.positions,
          { combine: this.combine, implementation: this.activeImplementation() });
        return [this.project(mixed), {
          previous: windowAfter(start.previous.expandDims(1), $x, lengths, this.onKernels()).squeeze([1]) as tf.Tensor2D,
          sum: tf.add(start.sum, tf.sum($x, 1)) as tf.Tensor2D,
        }];
      },
    });
  }

  /** Checks a state given to `method`: previous and sum float32 `[B, D]`, positions int32 `[B]`. */
  private checkState(method: string, state: AverageContextState, B: number, D: number): void {
    for (const field of ['previous', 'sum'] as const) {
      checkShape(method, `state.${field}`, checkTensor(method, `state.${field}`, state?.[field], ['B', 'D']), [B, D], ['B', 'D']);
    }
    checkPositions(method, state, B);
  }

  private checkCausal(method: string): void {
    if (!this.causal) {
      throw new Error(`AverageContext.${method}: a layer with causal: false averages over the whole sequence, ` +
        'so it cannot decode token by token; use causal: true.');
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), combine: this.combine, causal: this.causal };
  }
}
registerMixerLayer(AverageContext);

/**
 * Creates an {@link AverageContext} layer, as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * const mixer = layers.averageContext({ combine: 'mean' });
 * ```
 */
export function averageContext(args?: AverageContextArgs): AverageContext {
  return new AverageContext(args);
}
