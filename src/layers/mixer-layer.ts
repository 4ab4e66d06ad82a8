import * as tf from '@tensorflow/tfjs';
import {
  IMPLEMENTATIONS, argumentError, checkOneOf, checkOptionNames, checkStepToken, checkTensor, describe,
  differentiableZeros, formatShape, optionNames, useKernel, type Implementation,
} from '../validate.js';
import { dense } from '../dense/op.js';
import { denseGroups } from '../dense/groups.js';
import { fillPadding, prefillInputs } from './decode-state.js';
import type { PrefillOptions } from './prefill.js';

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

/**
 * The keyword arguments of a layer's `apply`, which tfjs passes on to `call`: `mask` where tfjs
 * propagates one, and a layer's own (an attention layer's `segmentIds`).
 */
export type CallKwargs = Record<string, unknown>;

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

/** A weight initializer, as `tf.initializers.*` make them (tfjs exports no name for its type). */
export type Initializer = ReturnType<typeof tf.initializers.zeros>;

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

// layers that have said they run the reference in place of 'webgpu'
const warnedFallback = new WeakSet<tf.layers.Layer>();

/**
 * The implementation a layer's ops run: its own, except the reference in place of `'webgpu'`
 * while another backend is active (a model saved with `'webgpu'` and loaded elsewhere), said
 * once per layer with `console.warn`. `label` names the layer's class in the warning.
 *
 * @example
 * ```ts
 * const layer = layers.multiHeadAttention({ numHeads: 2, keyDim: 8, implementation: 'webgpu' });
 * await tf.setBackend('cpu');
 * layerImplementation(layer, 'MultiHeadAttention', 'webgpu'); // 'reference', and one warning
 * ```
 */
export function layerImplementation(layer: tf.layers.Layer, label: string, implementation: Implementation): Implementation {
  const backend = tf.getBackend();
  if (implementation !== 'webgpu' || backend === 'webgpu') return implementation;
  if (!warnedFallback.has(layer)) {
    warnedFallback.add(layer);
    console.warn(`${label} '${layer.name}': implementation 'webgpu' needs the 'webgpu' backend, ` +
      `but the active backend is '${backend}'; the layer runs the reference implementation instead.`);
  }
  return 'reference';
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

/** The shape of a single input, or an error naming the count (its `[B, T, D]` form is checked by the layer). */
function singleShape(layer: string, inputShape: tf.Shape | tf.Shape[]): tf.Shape {
  if (Array.isArray(inputShape[0]) && (inputShape as tf.Shape[]).length !== 1) {
    throw new Error(`${layer} expects a single input; received ${inputShape.length} inputs.`);
  }
  return (Array.isArray(inputShape[0]) ? (inputShape as tf.Shape[])[0] : inputShape) as tf.Shape;
}

/**
 * Base of every mixer layer: `[B, T, D] → [B, T, D]`. It checks the arguments' names, the
 * input (float32, `[B, T, D]`, D the width the layer was built for), returns an empty output
 * for an empty batch or sequence, runs the reference in place of `'webgpu'` off WebGPU, and
 * checks the decode arguments shared by every `initState` and `step`. A subclass adds its
 * weights in `createWeights(D)` and mixes in `forward(x, kwargs)`. A layer with more inputs
 * (an attention layer's context) overrides `build`, `computeOutputShape` and `call`, and
 * checks x and builds through `checkedShape`, `buildFor`, `checkedInput` and `mixNonEmpty`.
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
export abstract class MixerLayer<Sizes extends object = object> extends tf.layers.Layer {
  readonly implementation: Implementation;
  private width: number | null = null;
  private sizes: Sizes | null = null;
  private readonly weightsByName = new Map<string, tf.LayerVariable>();
  /** What `keepFromWeights` keeps: the tensor, how it is formed, and from which weights' data. */
  private readonly keptTensors = new Map<string, { names: readonly string[]; form: () => tf.Tensor; from: object[]; tensor: tf.Tensor }>();

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

  /**
   * The mixer, `[B, T, D] → [B, T, D]`, on a checked, non-empty input, inside a `tf.tidy`;
   * `kwargs` are those of `apply` (tfjs adds `mask` where it propagates one).
   */
  protected abstract forward(x: tf.Tensor3D, kwargs: CallKwargs): tf.Tensor3D;

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    this.buildFor(singleShape(this.layerName, inputShape));
  }

  /** Adds the weights for x of `shape` `[B, T, D]`: what `build` does once the input shapes are checked. */
  protected buildFor(shape: tf.Shape): void {
    const D = this.checkedShape(shape)[2]!;
    this.createWeights(D);
    this.width = D;
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return this.checkedShape(singleShape(this.layerName, inputShape));
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: CallKwargs = {}): tf.Tensor {
    if (Array.isArray(inputs) && inputs.length !== 1) {
      throw new Error(`${this.layerName} expects a single input; received ${inputs.length} inputs.`);
    }
    const x = this.checkedInput(Array.isArray(inputs) ? inputs[0] : inputs);
    return this.mixNonEmpty([x], () => this.forward(x, kwargs));
  }

  /**
   * `forward()` inside a `tf.tidy`, or an empty output of x's shape when x (`inputs[0]`) is an
   * empty batch or sequence, whose gradient reaches every one of `inputs` as zeros.
   */
  protected mixNonEmpty(inputs: tf.Tensor3D[], forward: () => tf.Tensor3D): tf.Tensor {
    const x = inputs[0]!;
    // an empty batch or sequence has an empty output, as tfjs's own layers give
    if (x.size === 0) return differentiableZeros(x.shape, inputs);
    return tf.tidy(forward);
  }

  /** x checked: float32 `[B, T, D]`, with the layer's D once built. */
  protected checkedInput(x: unknown): tf.Tensor3D {
    const checked = checkTensor<tf.Rank.R3>(this.layerName, 'inputs', x, ['B', 'T', 'D']);
    this.checkWidth(checked.shape);
    return checked;
  }

  /** x's shape checked: `[B, T, D]` with a known D, the width the layer was built for once it is built. */
  protected checkedShape(shape: tf.Shape): tf.Shape {
    if (shape.length !== 3 || shape[2] == null) {
      throw new Error(`${this.layerName} expects input of shape [B, T, D] with a known D. Received: ${formatShape(shape)}.`);
    }
    this.checkWidth(shape);
    return shape;
  }

  private checkWidth(shape: tf.Shape): void {
    if (this.width != null && shape[2] !== this.width) {
      throw argumentError(this.layerName, `argument 'inputs' must have shape [B, T, D] = ${formatShape([shape[0], shape[1], this.width])}; ` +
        `received ${formatShape(shape)}. The layer was built for D = ${this.width}.`);
    }
  }

  /**
   * Adds a float32 weight under `name` (its name in saved models) and keeps it for
   * `weight` and `dense`.
   */
  protected addNamedWeight(name: string, shape: number[], initializer: Initializer): tf.LayerVariable {
    const w = this.addWeight(name, shape, 'float32', initializer);
    this.weightsByName.set(name, w);
    return w;
  }

  /** The weight added under `name`. */
  protected weight(name: string): tf.LayerVariable {
    const w = this.weightsByName.get(name);
    if (!w) throw new Error(`${this.layerName}: no weight '${name}'; the layer is not built yet, or has no such weight.`);
    return w;
  }

  /**
   * Keeps under `key` the tensor that `form()` makes from the weights `names` alone (call it in
   * `createWeights`, once they are added): `kept` hands it out, made again only
   * once one of those weights holds new data. A decode step would otherwise form it from the
   * weights at every call. It is made now, so that the layer holds as many tensors from its
   * build on, and freed with the weights.
   */
  protected keepFromWeights(key: string, names: readonly string[], form: () => tf.Tensor): void {
    this.keptTensors.get(key)?.tensor.dispose();
    this.keptTensors.set(key, { names, form, from: this.dataOf(names), tensor: tf.keep(tf.tidy(form)) });
  }

  /**
   * The tensor kept under `key` (`keepFromWeights`), made again first if one
   * of its weights holds new data (every assignment to a variable gives it new data: an
   * optimizer's step, `setWeights`, a load); undefined if nothing is kept under `key`. Where a
   * gradient is being recorded it is formed afresh instead, so that gradients reach the weights.
   * The layer owns what it keeps: do not dispose it.
   */
  protected kept(key: string): tf.Tensor | undefined {
    const entry = this.keptTensors.get(key);
    if (!entry) return undefined;
    if (tf.engine().state.gradientDepth > 0) return entry.form();
    const from = this.dataOf(entry.names);
    if (from.some((id, i) => id !== entry.from[i])) {
      entry.tensor.dispose();
      Object.assign(entry, { from, tensor: tf.keep(tf.tidy(entry.form)) });
    }
    return entry.tensor;
  }

  private dataOf(names: readonly string[]): object[] {
    return names.map((name) => this.weight(name).read().dataId);
  }

  /** Frees what the layer keeps (`keepFromWeights`) with its weights, when no other model holds it. */
  override dispose(): ReturnType<tf.layers.Layer['dispose']> {
    const result = super.dispose();
    if (result.refCountAfterDispose === 0) {
      for (const entry of this.keptTensors.values()) entry.tensor.dispose();
      this.keptTensors.clear();
    }
    return result;
  }

  /**
   * Keeps the biases of `names` packed end to end (`keepFromWeights`), which
   * `denseAll` then hands its kernel where no gradient is recorded: otherwise
   * every call packs them in a launch of its own. Call it in `createWeights`, after adding them.
   */
  protected keepPackedBiases(names: readonly string[]): void {
    const biases = names.map((name) => `${name}Bias`);
    this.keepFromWeights(packedKey(names), biases, () => tf.concat(biases.map((b) => this.weight(b).read())));
  }

  /**
   * `x·W (+ b)` over the last axis of `[..., in]`: W the weight `name` `[in, out]`, b the weight
   * `${name}Bias` `[out]` when the layer added one.
   */
  protected dense(x: tf.Tensor, name: string): tf.Tensor {
    const bias = this.weightsByName.get(`${name}Bias`)?.read() as tf.Tensor1D | undefined;
    return dense(x, this.weight(name).read() as tf.Tensor2D, { bias, implementation: this.activeImplementation() });
  }

  /**
   * {@link dense} of one input by several weights (`names`, each with its bias when the layer
   * added one), in one launch on webgpu where the shapes fit: a layer's query, key and value.
   */
  protected denseAll(x: tf.Tensor, names: readonly string[]): tf.Tensor[] {
    const biases = names.map((name) => this.weightsByName.get(`${name}Bias`)?.read() as tf.Tensor1D | undefined);
    // all with a bias or none (as the layers add them): otherwise one by one
    if (biases.some((b) => b) && !biases.every((b) => b)) return names.map((name) => this.dense(x, name));
    const kernels = names.map((name) => this.weight(name).read() as tf.Tensor2D);
    // packed once (keepPackedBiases), where no gradient needs them apart
    const packed = biases[0] && tf.engine().state.gradientDepth === 0 ? this.kept(packedKey(names)) as tf.Tensor1D | undefined : undefined;
    return denseGroups(x, kernels, biases[0] ? biases as tf.Tensor1D[] : undefined, this.activeImplementation(), packed);
  }

  /** Records the sizes that `createWeights` resolved (heads, widths, ...), for `dims`. */
  protected setDims(sizes: Sizes): void {
    this.sizes = sizes;
  }

  /** D and the sizes `createWeights` recorded, once built; before, the not-built error. */
  protected dims(): Sizes & { D: number } {
    const D = this.builtWidth();
    return { ...this.sizes!, D };
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
    return layerImplementation(this, this.layerName, this.implementation);
  }

  /** Whether the layer's ops run the WGSL kernels ({@link activeImplementation} on webgpu). */
  protected onKernels(): boolean {
    return useKernel(this.layerName, this.activeImplementation());
  }

  /**
   * Whether the layer runs the kernels that have no gradient (a prefill's, a decode's): on the
   * WGSL kernels, where no gradient is recorded.
   */
  protected untapedKernels(): boolean {
    return this.onKernels() && tf.engine().state.gradientDepth === 0;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), implementation: this.implementation };
  }

  /**
   * The prefill every layer with a fixed-size state runs: checks x, the lengths and a given
   * state (`how.check`), then, in a tidy, hands `how.run` x with its padded steps zeroed (if any), the
   * state to continue (the given one, or `how.init(B)`), the lengths and whether some row may be
   * padded (`padded`: false where every row is whole, known on the host); `run` returns the
   * outputs and the state's other fields, and the positions advance by the lengths. An empty
   * batch or prompt gives zeros and a copy of the state.
   */
  protected prefillState<S extends { positions: tf.Tensor1D }>(
    x: tf.Tensor3D, state: S | undefined, options: PrefillOptions | undefined, how: {
      init(B: number): S;
      check(method: string, state: S, B: number): void;
      run(a: { x: tf.Tensor3D; start: S; lengths: tf.Tensor1D; padded: boolean }): [tf.Tensor3D, Omit<S, 'positions'>];
    },
  ): [tf.Tensor3D, S] {
    const method = `${this.layerName}.prefill`;
    const D = this.builtWidth();
    const { B, T, lengths, full } = prefillInputs(method, x, D, options);
    try {
      if (state !== undefined) how.check(method, state, B);
      return tf.tidy((): [tf.Tensor3D, S] => {
        const start = state ?? how.init(B);
        if (B === 0 || T === 0) {
          return [tf.zeros([B, T, D]), Object.fromEntries(Object.entries(start).map(([name, t]) => [name, (t as tf.Tensor).clone()])) as S];
        }
        const [y, next] = how.run({ x: full ? x : fillPadding(x, lengths, { onKernel: this.onKernels() }), start, lengths, padded: !full });
        return [y, { ...next, positions: tf.add(start.positions, lengths) } as S];
      });
    } finally {
      lengths.dispose();
    }
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

/** The key under which a layer keeps the packed biases of `names` (`keepPackedBiases`). */
function packedKey(names: readonly string[]): string {
  return `packed biases of ${names.join(', ')}`;
}
