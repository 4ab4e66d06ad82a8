import * as tf from '@tensorflow/tfjs';
import { dense } from '../dense/op.js';
import { checkBoolean, optionNames } from '../validate.js';
import { MixerLayer, type MixerLayerArgs } from './mixer-layer.js';

export type { LayerArgs } from './mixer-layer.js';

/** Arguments shared by the parameter-free mixers that keep an output projection. */
export interface ProjectedMixerArgs extends MixerLayerArgs {
  /**
   * Apply the output projection `y = mix(x)·W + b` (W `[D, D]`, b `[D]`). Default `true`:
   * the author's block keeps the output projection and drops the Q, K, V projections.
   */
  projection?: boolean;
}

const PROJECTED_MIXER_OPTIONS = optionNames<Omit<ProjectedMixerArgs, keyof MixerLayerArgs>>({ projection: true });

/**
 * Base of {@link CausalGeneration} and {@link AverageContext}: a parameter-free sequence
 * mixer followed by an optional dense output projection. Each subclass decodes with its own
 * `initState`, `prefill` and `step`, whose states record every row's position (int32 `[B]`);
 * the projection is the same for one token or a prompt.
 */
export abstract class ProjectedMixer extends MixerLayer {
  readonly projection: boolean;
  private kernel: tf.LayerVariable | null = null;
  private bias: tf.LayerVariable | null = null;

  /** @param options the names of the subclass's own arguments, beyond {@link ProjectedMixerArgs}. */
  protected constructor(args: ProjectedMixerArgs | undefined, options: readonly string[]) {
    super(args, [...PROJECTED_MIXER_OPTIONS, ...options]);
    this.projection = checkBoolean(this.layerName, 'projection', args?.projection, true);
  }

  /** The mixer itself, `[B, T, D] → [B, T, D]`. */
  protected abstract mix(x: tf.Tensor3D): tf.Tensor3D;

  protected createWeights(D: number): void {
    if (this.projection) {
      this.kernel = this.addWeight('kernel', [D, D], 'float32', tf.initializers.glorotUniform({}));
      this.bias = this.addWeight('bias', [D], 'float32', tf.initializers.zeros());
    }
  }

  protected forward(x: tf.Tensor3D): tf.Tensor3D {
    return this.project(this.mix(x));
  }

  /** `y·W + b` over the last axis, or `y` when the projection is off. */
  protected project<T extends tf.Tensor>(y: T): T {
    if (!this.projection) return y;
    const bias = this.bias!.read() as tf.Tensor1D;
    return dense(y, this.kernel!.read() as tf.Tensor2D, { bias, implementation: this.activeImplementation() }) as T;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), projection: this.projection };
  }
}
