import * as tf from '@tensorflow/tfjs';
import { mixerClassName, registerMixerLayer } from '../../layers/mixer-layer.js';
import { ProjectedMixer, type ProjectedMixerArgs } from '../../layers/projected-mixer.js';
import { checkOneOf, optionNames } from '../../validate.js';
import { causalGeneration as causalGenerationOp, causalGenerationStep, REDUCES, type Reduce } from './op.js';

/** Arguments of the {@link CausalGeneration} layer. */
export interface CausalGenerationArgs extends ProjectedMixerArgs {
  /** The elementwise comparison of a token with its predecessor. Default `'min'`. */
  reduce?: Reduce;
}

const OPTIONS = optionNames<Omit<CausalGenerationArgs, keyof ProjectedMixerArgs>>({ reduce: true });

/** Decode state of {@link CausalGeneration}: the previous token and how many were seen. */
export type CausalGenerationState = {
  /** `[B, D]`: the last token seen (zeros before the first). */
  previous: tf.Tensor2D;
  /** Tokens seen so far. */
  position: number;
};

/**
 * CausalGeneration as a layer: `y = causalGeneration(x)·W + b`, a drop-in replacement for
 * self-attention with no Q, K, V projections (the {@link "causal-generation" | CausalGeneration guide}).
 *
 * Input and output `[B, T, D]`. Weights: `kernel [D, D]` and `bias [D]` when `projection`
 * is on (the default). Decode with {@link CausalGeneration.initState} and
 * {@link CausalGeneration.step}; the state is the previous token.
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

  /** A fresh decode state for `batch` sequences, a non-negative integer. */
  initState(batch: number): CausalGenerationState {
    this.checkBatch(batch);
    return { previous: tf.zeros([batch, this.builtWidth()]), position: 0 };
  }

  /**
   * Runs one token through the layer. Running `step` over a sequence reproduces the
   * parallel forward. The input state is left as it is: dispose it (`tf.dispose(state)`)
   * once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  step(x: tf.Tensor2D, state: CausalGenerationState): [tf.Tensor2D, CausalGenerationState] {
    this.checkStep(x, state, 'previous');
    return tf.tidy((): [tf.Tensor2D, CausalGenerationState] => {
      // the first token has no predecessor: R(x, x) = x
      const previous = state.position === 0 ? x : state.previous;
      const mixed = causalGenerationStep(x, previous, { reduce: this.reduce, implementation: this.activeImplementation() });
      return [this.project(mixed), { previous: x.clone(), position: state.position + 1 }];
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
