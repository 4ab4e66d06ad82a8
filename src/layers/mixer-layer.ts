import * as tf from '@tensorflow/tfjs';
import {
  IMPLEMENTATIONS, argumentError, checkOneOf, checkOptionNames, checkStepToken, checkTensor, describe,
  differentiableZeros, formatShape, optionNames, type Implementation,
} from '../validate.js';

/** tfjs's own `LayerArgs` (name, trainable, inputShape, …). */
export type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;

/**
 * The argument names every mixer layer takes from tfjs's base layer, with `customObjects`,
 * which tfjs adds to a layer's saved config when it reloads a model (`getConfig()` saves
 * `name`, `trainable`, `batchInputShape` and `dtype`).
 *
 * @example
 * ```ts
 * LAYER_ARG_NAMES.includes('batchInputShape'); // true
 * ```
 */
export const LAYER_ARG_NAMES: readonly string[] = [
  ...optionNames<LayerArgs>({
    name: true, trainable: true, inputShape: true, batchInputShape: true, batchSize: true, dtype: true, inputDType: true, weights: true,
  }),
  'customObjects',
];

/** Arguments every mixer layer takes. */
export interface MixerLayerArgs extends LayerArgs {
  /**
   * Which implementation the layer runs. Default `'auto'`: the WGSL kernels on the `webgpu`
   * backend, the tfjs-ops reference elsewhere. A layer with `'webgpu'` (a model saved that way,
   * say) runs the reference while another backend is active, and says so once per layer with
   * `console.warn`; the ops, given `'webgpu'` on another backend, throw instead.
   */
  implementation?: Implementation;
}

/** The package part of the names the layers are saved under, as in `tfjs-mixers>SelectiveSSM`. */
export const PACKAGE = 'tfjs-mixers';

/**
 * The name tfjs saves a mixer layer under, qualified by the package so that a user's class of
 * the same name cannot shadow it.
 *
 * @example
 * ```ts
 * mixerClassName('SelectiveSSM'); // 'tfjs-mixers>SelectiveSSM'
 * ```
 */
export function mixerClassName(name: string): string {
  return `${PACKAGE}>${name}`;
}

/** `SelectiveSSM` of `tfjs-mixers>SelectiveSSM`. */
function shortName(className: string): string {
  return className.slice(className.indexOf('>') + 1);
}

/**
 * Registers a mixer layer class for `tf.loadLayersModel`: under its package-qualified
 * `className` (`tfjs-mixers>SelectiveSSM`), which new saves write, and under its plain name
 * (`SelectiveSSM`), which models saved before carry, unless a class (the user's own, say)
 * already holds that plain name. A user's class registered under the plain name later takes
 * it over for such older models; models saved with the qualified name still load ours.
 *
 * @example
 * ```ts
 * class Identity extends MixerLayer {
 *   static className = mixerClassName('Identity');
 *   constructor(args?: MixerLayerArgs) { super(args, []); }
 *   protected createWeights(): void {}
 *   protected forward(x: tf.Tensor3D): tf.Tensor3D { return x.clone(); }
 * }
 * registerMixerLayer(Identity); // loads 'tfjs-mixers>Identity', and 'Identity' unless taken
 * ```
 */
export function registerMixerLayer(cls: tf.serialization.SerializableConstructor<tf.serialization.Serializable>): void {
  const name = shortName(cls.className);
  tf.serialization.registerClass(cls, PACKAGE, name);
  const map = tf.serialization.SerializationMap.getMap().classNameMap;
  map[name] ??= [cls, cls.fromConfig];
}

const layerCounts = new Map<string, number>();

/**
 * `selective_ssm_3` for the third SelectiveSSM. tfjs would derive the name from the qualified
 * class name, whose `>` no weight name may hold.
 */
function defaultLayerName(name: string): string {
  const count = (layerCounts.get(name) ?? 0) + 1;
  layerCounts.set(name, count);
  return `${name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2').toLowerCase()}_${count}`;
}

/** The shape a sequence layer accepts (one input, `[B, T, D]`, D known), or an error in tfjs-layers' "Received: …" style. */
function sequenceShape(layer: string, inputShape: tf.Shape | tf.Shape[]): tf.Shape {
  if (Array.isArray(inputShape[0]) && (inputShape as tf.Shape[]).length !== 1) {
    throw new Error(`${layer} expects a single input; received ${inputShape.length} inputs.`);
  }
  const shape = (Array.isArray(inputShape[0]) ? (inputShape as tf.Shape[])[0] : inputShape) as tf.Shape;
  if (shape.length !== 3 || shape[2] == null) {
    throw new Error(`${layer} expects input of shape [B, T, D] with a known D. Received: ${formatShape(shape)}.`);
  }
  return shape;
}

/**
 * Base of every mixer layer: `[B, T, D] → [B, T, D]`. It checks the arguments' names, the
 * input (float32, `[B, T, D]`, D the width the layer was built for), returns an empty output
 * for an empty batch or sequence, runs the reference in place of `'webgpu'` off WebGPU, and
 * checks the decode arguments shared by every `initState` and `step`. A subclass adds its
 * weights in `createWeights(D)` and mixes in `forward(x)`.
 *
 * @example
 * ```ts
 * class Identity extends MixerLayer {
 *   static className = mixerClassName('Identity');
 *   constructor(args?: MixerLayerArgs) { super(args, []); }
 *   protected createWeights(): void {}
 *   protected forward(x: tf.Tensor3D): tf.Tensor3D { return x.clone(); }
 * }
 * new Identity().apply(tf.zeros([2, 0, 16])); // an empty [2, 0, 16]
 * ```
 */
export abstract class MixerLayer extends tf.layers.Layer {
  readonly implementation: Implementation;
  private width: number | null = null;
  private warnedFallback = false;

  /**
   * @param args the layer's arguments.
   * @param options the names of the subclass's own arguments, beyond {@link MixerLayerArgs}.
   */
  protected constructor(args: MixerLayerArgs | undefined, options: readonly string[]) {
    super(MixerLayer.baseArgs((new.target as unknown as { className: string }).className, args, options));
    this.implementation = checkOneOf(this.layerName, 'implementation', args?.implementation, IMPLEMENTATIONS, 'auto');
  }

  private static baseArgs(className: string, args: MixerLayerArgs | undefined, options: readonly string[]): LayerArgs {
    const name = shortName(className);
    checkOptionNames(name, args, [...LAYER_ARG_NAMES, 'implementation', ...options]);
    return { ...args, name: args?.name ?? defaultLayerName(name) };
  }

  /** The class's name in messages: `SelectiveSSM`. */
  protected get layerName(): string {
    return shortName(this.getClassName());
  }

  /** Adds the layer's weights for input width D. */
  protected abstract createWeights(D: number): void;

  /** The mixer, `[B, T, D] → [B, T, D]`, on a checked, non-empty input, inside a `tf.tidy`. */
  protected abstract forward(x: tf.Tensor3D): tf.Tensor3D;

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const D = this.checkedShape(inputShape)[2]!;
    this.createWeights(D);
    this.width = D;
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return this.checkedShape(inputShape);
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    if (Array.isArray(inputs) && inputs.length !== 1) {
      throw new Error(`${this.layerName} expects a single input; received ${inputs.length} inputs.`);
    }
    const x = checkTensor<tf.Rank.R3>(this.layerName, 'inputs', Array.isArray(inputs) ? inputs[0] : inputs, ['B', 'T', 'D']);
    this.checkWidth(x.shape);
    // an empty batch or sequence has an empty output, as tfjs's own layers give
    if (x.size === 0) return differentiableZeros(x.shape, [x]);
    return tf.tidy(() => this.forward(x));
  }

  /** {@link sequenceShape}, with D the width the layer was built for once it is built. */
  private checkedShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = sequenceShape(this.layerName, inputShape);
    this.checkWidth(shape);
    return shape;
  }

  private checkWidth(shape: tf.Shape): void {
    if (this.width != null && shape[2] !== this.width) {
      throw argumentError(this.layerName, `argument 'inputs' must have shape [B, T, D] = ${formatShape([shape[0], shape[1], this.width])}; ` +
        `received ${formatShape(shape)}. The layer was built for D = ${this.width}.`);
    }
  }

  /** D, once built; decoding needs it before any input has been seen. */
  protected builtWidth(): number {
    if (this.width == null) {
      throw new Error(`${this.layerName}: the layer is not built yet; call it on an input (or add it to a model) before decoding.`);
    }
    return this.width;
  }

  /**
   * The implementation the ops run: the layer's own, except the reference in place of
   * `'webgpu'` while another backend is active (warned once per layer).
   */
  protected activeImplementation(): Implementation {
    const backend = tf.getBackend();
    if (this.implementation !== 'webgpu' || backend === 'webgpu') return this.implementation;
    if (!this.warnedFallback) {
      this.warnedFallback = true;
      console.warn(`${this.layerName} '${this.name}': implementation 'webgpu' needs the 'webgpu' backend, ` +
        `but the active backend is '${backend}'; the layer runs the reference implementation instead.`);
    }
    return 'reference';
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), implementation: this.implementation };
  }

  /** Checks `initState`'s batch: a non-negative integer. */
  protected checkBatch(batch: unknown): number {
    if (typeof batch !== 'number' || !Number.isInteger(batch) || batch < 0) {
      throw argumentError(`${this.layerName}.initState`, `argument 'batch' must be a non-negative integer; received ${describe(batch)}.`);
    }
    return batch;
  }

  /**
   * Checks `step`'s token, `[B, D]` float32 with the layer's D, against the state: its
   * `field` (a tensor whose first axis is the batch) must hold the same B.
   */
  protected checkStep(x: unknown, state: unknown, field: string): void {
    checkStepToken(this.layerName, x, this.builtWidth());
    const held: unknown = (state as Record<string, unknown> | null | undefined)?.[field];
    if (!(held instanceof tf.Tensor)) {
      throw argumentError(`${this.layerName}.step`, `argument 'state.${field}' must be a tensor from initState(); received ${describe(held)}.`);
    }
    const B = (x as tf.Tensor2D).shape[0];
    if (held.shape[0] !== B) {
      throw argumentError(`${this.layerName}.step`, `argument 'x' holds a batch of ${B} but argument 'state' one of ${held.shape[0]} ` +
        `(state.${field} of shape ${formatShape(held.shape)}); decode a batch of ${B} from initState(${B}).`);
    }
  }
}
