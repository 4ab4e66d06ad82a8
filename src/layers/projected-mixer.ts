import * as tf from '@tensorflow/tfjs';
import { IMPLEMENTATIONS, checkOneOf, checkStepToken, type Implementation } from '../validate.js';

/** tfjs's own `LayerArgs` (name, trainable, inputShape, …). */
export type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;

/** Arguments shared by the parameter-free mixers that keep an output projection. */
export interface ProjectedMixerArgs extends LayerArgs {
  /**
   * Apply the output projection `y = mix(x)·W + b` (W `[D, D]`, b `[D]`). Default `true`:
   * the author's block keeps the output projection and drops the Q, K, V projections.
   */
  projection?: boolean;
  /** Which implementation the mixer runs. Default `'auto'`. */
  implementation?: Implementation;
}


/** The shape a sequence layer accepts, or an error in tfjs-layers' "Received: …" style. */
export function sequenceShape(layer: string, inputShape: tf.Shape | tf.Shape[]): tf.Shape {
  const shape = (Array.isArray(inputShape[0]) ? (inputShape as tf.Shape[])[0] : inputShape) as tf.Shape;
  if (Array.isArray(inputShape[0]) && (inputShape as tf.Shape[]).length !== 1) {
    throw new Error(`${layer} expects a single input; received ${inputShape.length} inputs.`);
  }
  if (shape.length !== 3 || shape[2] == null) {
    throw new Error(`${layer} expects input of shape [B, T, D] with a known D. Received: [${shape.join(', ')}].`);
  }
  return shape;
}

/**
 * Base of {@link CausalGeneration} and {@link AverageContext}: a parameter-free sequence
 * mixer followed by an optional dense output projection, with a decode `step`.
 */
export abstract class ProjectedMixer extends tf.layers.Layer {
  readonly projection: boolean;
  readonly implementation: Implementation;
  private kernel: tf.LayerVariable | null = null;
  private bias: tf.LayerVariable | null = null;
  private width: number | null = null;

  constructor(args: ProjectedMixerArgs) {
    super(args);
    this.projection = args.projection ?? true;
    if (typeof this.projection !== 'boolean') {
      throw new Error(`${this.getClassName()}: argument 'projection' must be a boolean; received ${String(this.projection)}.`);
    }
    this.implementation = checkOneOf(this.getClassName(), 'implementation', args.implementation, IMPLEMENTATIONS, 'auto');
  }

  /** The mixer itself, `[B, T, D] → [B, T, D]`. */
  protected abstract mix(x: tf.Tensor3D): tf.Tensor3D;

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const D = sequenceShape(this.getClassName(), inputShape)[2]!;
    this.width = D;
    if (this.projection) {
      this.kernel = this.addWeight('kernel', [D, D], 'float32', tf.initializers.glorotUniform({}));
      this.bias = this.addWeight('bias', [D], 'float32', tf.initializers.zeros());
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return sequenceShape(this.getClassName(), inputShape);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      sequenceShape(this.getClassName(), x.shape);
      return this.project(this.mix(x));
    });
  }

  /** `y·W + b` over the last axis, or `y` when the projection is off. */
  protected project<T extends tf.Tensor>(y: T): T {
    if (!this.projection) return y;
    const D = this.widthOrThrow();
    const flat = tf.matMul(y.reshape([-1, D]), this.kernel!.read());
    return tf.add(flat, this.bias!.read()).reshape(y.shape) as T;
  }

  /** D, once built; decode needs it before any input has been seen. */
  protected widthOrThrow(): number {
    if (this.width == null) {
      throw new Error(`${this.getClassName()}: the layer is not built yet; call it on an input (or add it to a model) before decoding.`);
    }
    return this.width;
  }

  /** Checks one decode token: `[B, D]` float32 with the layer's D. */
  protected checkStepInput(x: tf.Tensor2D): void {
    checkStepToken(this.getClassName(), x, this.widthOrThrow());
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), projection: this.projection, implementation: this.implementation };
  }
}
