import * as tf from '@tensorflow/tfjs';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { ProjectedMixer, type ProjectedMixerArgs } from '../../layers/projected-mixer.js';
import { checkBoolean, checkOneOf, optionNames } from '../../validate.js';
import { averageContext as averageContextOp, averageContextStep, COMBINES, type Combine } from './op.js';

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

/** Decode state of {@link AverageContext}. */
export type AverageContextState = {
  /** `[B, D]`: the last token seen (zeros before the first). */
  previous: tf.Tensor2D;
  /** `[B, D]`: the sum of every token seen. */
  sum: tf.Tensor2D;
  /** Tokens seen so far. */
  position: number;
};

/**
 * AverageContext as a layer: `y = averageContext(x)·W + b` (the {@link "average-context" | AverageContext guide}), CausalGeneration
 * plus a running-mean context vector. Input and output `[B, T, D]`; weights `kernel [D, D]`
 * and `bias [D]` when `projection` is on. Decode state: previous token, running sum, count.
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
   * A fresh decode state for `batch` sequences, a non-negative integer. Throws for
   * `causal: false`, which has no decode form.
   */
  initState(batch: number): AverageContextState {
    this.checkBatch(batch);
    if (!this.causal) {
      throw new Error('AverageContext: a layer with causal: false averages over the whole sequence, ' +
        'so it cannot decode token by token; use causal: true.');
    }
    const D = this.builtWidth();
    return { previous: tf.zeros([batch, D]), sum: tf.zeros([batch, D]), position: 0 };
  }

  /**
   * Runs one token through the layer; stepping through a sequence reproduces the parallel
   * forward. The input state is left as it is: dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  step(x: tf.Tensor2D, state: AverageContextState): [tf.Tensor2D, AverageContextState] {
    this.checkStep(x, state, 'previous');
    return tf.tidy((): [tf.Tensor2D, AverageContextState] => {
      const [mixed, sum] = averageContextStep(x, state.previous, state.sum, state.position,
        { combine: this.combine, implementation: this.activeImplementation() });
      return [this.project(mixed), { previous: x.clone(), sum, position: state.position + 1 }];
    });
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
