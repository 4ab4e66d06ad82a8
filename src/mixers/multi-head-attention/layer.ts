import * as tf from '@tensorflow/tfjs';
import { copy } from '../../cpu-host.js';
import { MAX_HEAD_DIM } from '../../attention/validate.js';
import { checkDropoutRate, freshSeed, type DropoutOptions } from '../../attention/dropout.js';
import { LAYER_ARG_NAMES, layerImplementation, type LayerArgs } from '../../layers/mixer-layer.js';
import {
  IMPLEMENTATIONS, argumentError, checkBoolean, checkOneOf, checkOptionNames, checkPositiveInteger, checkTensor,
  describe, formatShape, optionNames, type Implementation,
} from '../../validate.js';
import { flashAttention } from '../flash-style-tiled-attention/op.js';
import { dense } from '../../dense/op.js';
import { resolveSerializable, serializeObject, type SerializableArg } from './serializables.js';

/**
 * Arguments of {@link MultiHeadAttention}: Keras's `MultiHeadAttention` arguments in
 * lowerCamelCase (see the {@link "multi-head-attention" | guide}'s porting table).
 */
export interface MultiHeadAttentionArgs extends LayerArgs {
  /** Attention heads H. */
  numHeads: number;
  /** Size of each query and key head (≤ 256). */
  keyDim: number;
  /** Size of each value head (≤ 256). Default `keyDim`. */
  valueDim?: number | null;
  /**
   * Keras's attention dropout rate in [0, 1): in training (`training: true`) each normalised
   * attention weight is dropped with this probability and the kept ones scaled by 1/(1 − p)
   * (see `DropoutOptions`); inference ignores it, as Keras does. Default 0.
   */
  dropout?: number;
  /** Biases on the four projections. Default `true`. */
  useBias?: boolean;
  /** Width of the output, a positive integer (or `[n]`). Default: the query's last dimension. */
  outputShape?: number | number[] | null;
  /** Only the default, the sequence axis (`null`, `1` or `[1]`); other axes are rejected. */
  attentionAxes?: number | number[] | null;
  /** Initialiser of the four kernels. Default `'glorotUniform'`. */
  kernelInitializer?: SerializableArg<tf.serialization.Serializable>;
  /** Initialiser of the four biases. Default `'zeros'`. */
  biasInitializer?: SerializableArg<tf.serialization.Serializable>;
  /** Regulariser of the four kernels, e.g. `tf.regularizers.l2()`. Default none. */
  kernelRegularizer?: SerializableArg<tf.serialization.Serializable>;
  /** Regulariser of the four biases. Default none. */
  biasRegularizer?: SerializableArg<tf.serialization.Serializable>;
  /** Not supported: tfjs models cannot run activity regularisers; only `null` is accepted. */
  activityRegularizer?: null;
  /** Constraint on the four kernels, e.g. `tf.constraints.maxNorm({ maxValue: 2 })`. Default none. */
  kernelConstraint?: SerializableArg<tf.serialization.Serializable>;
  /** Constraint on the four biases. Default none. */
  biasConstraint?: SerializableArg<tf.serialization.Serializable>;
  /**
   * Keras 3's dropout seed: training call n (from 0) drops its weights under seed + n (mod 2³²),
   * so a run is reproducible. Default `null`: each training call draws a seed from `Math.random`.
   */
  seed?: number | null;
  /** Keras 2's built shapes, present in converted models' configs; the weights' shapes come from the inputs. */
  queryShape?: tf.Shape | null;
  /** See {@link MultiHeadAttentionArgs.queryShape}. */
  keyShape?: tf.Shape | null;
  /** See {@link MultiHeadAttentionArgs.queryShape}. */
  valueShape?: tf.Shape | null;
  /** Which implementation the attention runs. Default `'auto'`. */
  implementation?: Implementation;
}

/** The keyword arguments of {@link MultiHeadAttention.apply}. */
export interface MultiHeadAttentionCallArgs {
  /** `[B, Tk, Dv]`: the values, and the keys when `key` is absent. Required. */
  value?: tf.Tensor | tf.SymbolicTensor;
  /** `[B, Tk, Dk]`. Default `value`. */
  key?: tf.Tensor | tf.SymbolicTensor;
  /**
   * `[B, Tq, Tk]` (or broadcast from `[B|1, Tq|1, Tk]`), bool or numeric: query i sees key j
   * where it is true or non-zero. Eager calls only.
   */
  attentionMask?: tf.Tensor;
  /** Query i sees keys j ≤ i (top-left aligned, as Keras). Default `false`. */
  useCausalMask?: boolean;
  /** Training mode (tfjs sets it in `fit`). */
  training?: boolean;
  /** Padding masks, as tfjs passes them (`[B, T]` per input); read from the inputs otherwise. */
  mask?: tf.Tensor | Array<tf.Tensor | null | undefined> | null;
}

const ARG_NAMES = optionNames<Omit<MultiHeadAttentionArgs, keyof LayerArgs>>({
  numHeads: true, keyDim: true, valueDim: true, dropout: true, useBias: true, outputShape: true, attentionAxes: true,
  kernelInitializer: true, biasInitializer: true, kernelRegularizer: true, biasRegularizer: true,
  activityRegularizer: true, kernelConstraint: true, biasConstraint: true, seed: true,
  queryShape: true, keyShape: true, valueShape: true, implementation: true,
});
const CALL_ARG_NAMES = optionNames<MultiHeadAttentionCallArgs>({
  value: true, key: true, attentionMask: true, useCausalMask: true, training: true, mask: true,
});

const LAYER = 'MultiHeadAttention';

function checkOutputShape(value: unknown): number | null {
  if (value == null) return null;
  const n = Array.isArray(value) && value.length === 1 ? value[0] : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw argumentError(LAYER, `argument 'outputShape' must be a positive integer or [n] (the output width); ` +
      `received ${describe(value)}. Multi-dimensional outputs are not supported.`);
  }
  return n;
}

function checkAttentionAxes(value: unknown): [1] | null {
  if (value == null) return null;
  const axes = Array.isArray(value) ? value : [value];
  if (axes.length !== 1 || axes[0] !== 1) {
    throw argumentError(LAYER, `argument 'attentionAxes' must be null, 1 or [1] (the sequence axis of [B, T, D] inputs); ` +
      `received ${describe(value)}. Attention over other axes is not supported.`);
  }
  return [1];
}

/** A `[B, T]` padding mask as `[B, T]` bool, or null. */
function paddingMask(mask: unknown): tf.Tensor | null {
  return mask instanceof tf.Tensor ? tf.cast(mask, 'bool') : null;
}

/**
 * Keras's `MultiHeadAttention` on `[B, T, D]` sequences, with its arguments, weights and call:
 * projections q = query·Wq, k = key·Wk, v = value·Wv into H heads, softmax attention
 * `softmax(q·kᵀ/√keyDim)·v` per head over the visible keys (run by
 * {@link flashAttention}: the WGSL kernel on WebGPU, the reference elsewhere), and the output
 * projection. See the {@link "multi-head-attention" | guide} for porting from Keras.
 *
 * Shapes: query `[B, Tq, Dq]`, value `[B, Tk, Dv]`, key `[B, Tk, Dk]` (default value) →
 * `[B, Tq, outputShape ?? Dq]`.
 *
 * Weights, in Keras's order and under Keras's names (prefixed by the layer's name, as tfjs
 * saves them): `query/kernel [Dq, H, keyDim]`, `query/bias [H, keyDim]`, `key/kernel
 * [Dk, H, keyDim]`, `key/bias [H, keyDim]`, `value/kernel [Dv, H, valueDim]`, `value/bias
 * [H, valueDim]`, `attention_output/kernel [H, valueDim, out]`, `attention_output/bias [out]`
 * (no biases when `useBias` is false).
 *
 * Visibility, as Keras: `useCausalMask` lets query i see keys j ≤ i (top-left aligned, also
 * when Tq ≠ Tk); `attentionMask [B, Tq, Tk]` hides the pairs where it is false; padding masks
 * that tfjs propagates (an `embedding` with `maskZero`) hide padded keys and padded queries
 * (`mask_q[:, :, None] & mask_v[:, None, :]`, and the key's mask when a separate key is given).
 * The output carries the query's mask. One difference: a query that sees no key gets an
 * attention output of 0 (so the layer outputs `attention_output/bias`), where Keras averages
 * every value.
 *
 * In a functional model, `useCausalMask` given to the symbolic call is kept by the layer,
 * since tfjs's `predict` and `fit` do not pass a node's call arguments on; `attentionMask`
 * works in eager calls only.
 *
 * @example
 * ```ts
 * const layer = layers.multiHeadAttention({ numHeads: 2, keyDim: 8 });
 * const x = tf.randomNormal([2, 5, 16]);
 * const context = tf.randomNormal([2, 7, 12]);
 * layer.apply(x, { value: x, useCausalMask: true });   // self-attention, [2, 5, 16]
 * layers.multiHeadAttention({ numHeads: 2, keyDim: 8 }).apply(x, { value: context }); // cross, [2, 5, 16]
 * ```
 */
export class MultiHeadAttention extends tf.layers.Layer {
  /** The name tfjs saves the layer under, Keras's. */
  static className = 'MultiHeadAttention';
  readonly numHeads: number;
  readonly keyDim: number;
  readonly valueDim: number;
  readonly dropout: number;
  readonly useBias: boolean;
  readonly implementation: Implementation;
  private readonly outputWidth: number | null;
  private readonly attentionAxes: [1] | null;
  private readonly seed: number | null;
  private readonly kernelInitializer: tf.serialization.Serializable;
  private readonly biasInitializer: tf.serialization.Serializable;
  private readonly kernelRegularizer: tf.serialization.Serializable | null;
  private readonly biasRegularizer: tf.serialization.Serializable | null;
  private readonly kernelConstraint: tf.serialization.Serializable | null;
  private readonly biasConstraint: tf.serialization.Serializable | null;
  private readonly weightsByName = new Map<string, tf.LayerVariable>();
  private shapes: { query: tf.Shape; key: tf.Shape; value: tf.Shape } | null = null;
  private graphCausal: boolean | null = null;
  /** Training calls with dropout so far, which step the seed. */
  private trainingCalls = 0;

  constructor(args: MultiHeadAttentionArgs) {
    checkOptionNames(LAYER, args, [...LAYER_ARG_NAMES, ...ARG_NAMES]);
    const {
      numHeads, keyDim, valueDim, dropout, useBias, outputShape, attentionAxes, kernelInitializer, biasInitializer,
      kernelRegularizer, biasRegularizer, activityRegularizer, kernelConstraint, biasConstraint, seed,
      queryShape: _q, keyShape: _k, valueShape: _v, implementation, ...base
    } = args ?? ({} as MultiHeadAttentionArgs);
    super(base);
    this.supportsMasking = true;
    for (const [name, value] of [['numHeads', numHeads], ['keyDim', keyDim]] as const) {
      if (value === undefined) throw argumentError(LAYER, `argument '${name}', a positive integer, is required; received none.`);
    }
    this.numHeads = checkPositiveInteger(LAYER, 'numHeads', numHeads);
    this.keyDim = checkPositiveInteger(LAYER, 'keyDim', keyDim);
    this.valueDim = checkPositiveInteger(LAYER, 'valueDim', valueDim ?? keyDim);
    for (const [name, value] of [['keyDim', this.keyDim], ['valueDim', this.valueDim]] as const) {
      if (value > MAX_HEAD_DIM) throw argumentError(LAYER, `argument '${name}' must be at most ${MAX_HEAD_DIM}; received ${value}.`);
    }
    this.dropout = checkDropoutRate(LAYER, dropout, 'argument');
    this.useBias = checkBoolean(LAYER, 'useBias', useBias, true);
    this.outputWidth = checkOutputShape(outputShape);
    this.attentionAxes = checkAttentionAxes(attentionAxes);
    if (seed != null && (typeof seed !== 'number' || !Number.isInteger(seed))) {
      throw argumentError(LAYER, `argument 'seed' must be an integer or null; received ${describe(seed)}.`);
    }
    this.seed = seed ?? null;
    if (activityRegularizer != null) {
      throw argumentError(LAYER, `argument 'activityRegularizer' is not supported (tfjs models cannot run activity ` +
        `regularisers); received ${describe(activityRegularizer)}. Omit it or pass null.`);
    }
    this.kernelInitializer = resolveSerializable(LAYER, 'kernelInitializer', 'initializer', kernelInitializer ?? 'glorotUniform')!;
    this.biasInitializer = resolveSerializable(LAYER, 'biasInitializer', 'initializer', biasInitializer ?? 'zeros')!;
    this.kernelRegularizer = resolveSerializable(LAYER, 'kernelRegularizer', 'regularizer', kernelRegularizer);
    this.biasRegularizer = resolveSerializable(LAYER, 'biasRegularizer', 'regularizer', biasRegularizer);
    this.kernelConstraint = resolveSerializable(LAYER, 'kernelConstraint', 'constraint', kernelConstraint);
    this.biasConstraint = resolveSerializable(LAYER, 'biasConstraint', 'constraint', biasConstraint);
    this.implementation = checkOneOf(LAYER, 'implementation', implementation, IMPLEMENTATIONS, 'auto');
  }

  /**
   * Calls the layer: `apply(query, { value, key, attentionMask, useCausalMask })` as Keras's
   * `layer(query, value, key, attention_mask=…, use_causal_mask=…)`, or `apply([query, value,
   * key?], { … })`. Inputs may be tensors or symbolic tensors.
   */
  override apply(
    inputs: tf.Tensor | tf.SymbolicTensor | Array<tf.Tensor | tf.SymbolicTensor>,
    kwargs: MultiHeadAttentionCallArgs = {},
  ): tf.Tensor | tf.Tensor[] | tf.SymbolicTensor | tf.SymbolicTensor[] {
    checkOptionNames(LAYER, kwargs, CALL_ARG_NAMES);
    const { value, key, ...rest } = kwargs;
    let list: Array<tf.Tensor | tf.SymbolicTensor>;
    if (Array.isArray(inputs)) {
      if ((inputs.length !== 2 && inputs.length !== 3) || value !== undefined || key !== undefined) {
        throw argumentError(LAYER, `takes apply(query, { value, key? }) or apply([query, value, key?]); received ` +
          `${inputs.length} inputs${value !== undefined || key !== undefined ? ' and a value or key option' : ''}.`);
      }
      list = inputs;
    } else {
      if (value == null) {
        throw argumentError(LAYER, `option 'value' is required: apply(query, { value, key? }); received ${describe(value)}.`);
      }
      list = key == null ? [inputs, value] : [inputs, value, key];
    }
    ['query', 'value', 'key'].forEach((name, n) => {
      const x = list[n];
      if (n < list.length && !(x instanceof tf.Tensor || x instanceof tf.SymbolicTensor)) {
        // a Keras graph that names its value by layer (['input_1', 0, 0]) ends up here through tfjs's loader
        throw argumentError(LAYER, `'${name}' must be a tensor or a symbolic tensor; received ${describe(x)}.`);
      }
    });
    if (list.some((x) => x instanceof tf.SymbolicTensor)) {
      if (rest.attentionMask != null) {
        throw argumentError(LAYER, `option 'attentionMask' works in eager calls only; in a model, give the inputs ` +
          `padding masks (e.g. tf.layers.embedding({ maskZero: true })) or use useCausalMask.`);
      }
      const causal = checkBoolean(LAYER, 'useCausalMask', rest.useCausalMask, false);
      if (this.graphCausal !== null && this.graphCausal !== causal) {
        throw argumentError(LAYER, `option 'useCausalMask' must be the same in every symbolic call of one layer; ` +
          `received ${causal} after ${this.graphCausal}.`);
      }
      this.graphCausal = causal;
    }
    return super.apply(list as tf.Tensor[], rest);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const [query, value, key] = this.inputShapes(inputShape);
    this.shapes = { query, value, key };
    const H = this.numHeads;
    const out = this.outputWidth ?? query[2]!;
    const add = (name: string, shape: number[], kernel: boolean) => this.weightsByName.set(name, this.addWeight(
      name, shape, 'float32',
      (kernel ? this.kernelInitializer : this.biasInitializer) as Parameters<tf.layers.Layer['addWeight']>[3],
      (kernel ? this.kernelRegularizer : this.biasRegularizer) as Parameters<tf.layers.Layer['addWeight']>[4],
      true,
      (kernel ? this.kernelConstraint : this.biasConstraint) as Parameters<tf.layers.Layer['addWeight']>[6],
    ));
    for (const [name, shape] of [['query', query], ['key', key], ['value', value]] as const) {
      const size = name === 'value' ? this.valueDim : this.keyDim;
      add(`${name}/kernel`, [shape[2]!, H, size], true);
      if (this.useBias) add(`${name}/bias`, [H, size], false);
    }
    add('attention_output/kernel', [H, this.valueDim, out], true);
    if (this.useBias) add('attention_output/bias', [out], false);
    this.built = true;
  }

  /** `[query, value, key]` shapes, each `[B, T, D]` with D known, key defaulting to value. */
  private inputShapes(inputShape: tf.Shape | tf.Shape[]): [tf.Shape, tf.Shape, tf.Shape] {
    const list = Array.isArray(inputShape[0]) ? (inputShape as tf.Shape[]) : [inputShape as tf.Shape];
    if (list.length !== 2 && list.length !== 3) {
      throw new Error(`${LAYER} expects inputs [query, value] or [query, value, key]. Received: ${list.length} input shape(s).`);
    }
    const names = ['query', 'value', 'key'];
    list.forEach((shape, n) => {
      if (shape.length !== 3 || shape[2] == null) {
        throw new Error(`${LAYER} expects '${names[n]}' of shape [B, T, D] with a known D. Received: ${formatShape(shape)}.`);
      }
    });
    const [query, value, key = value] = list as [tf.Shape, tf.Shape, tf.Shape?];
    if (value[1] != null && key[1] != null && value[1] !== key[1]) {
      throw new Error(`${LAYER} expects 'value' and 'key' of the same length Tk. Received: ${formatShape(value)} and ${formatShape(key)}.`);
    }
    if (this.shapes) {
      for (const [n, shape] of [['query', query], ['value', value], ['key', key]] as const) {
        if (shape[2] !== this.shapes[n][2]) {
          throw new Error(`${LAYER} was built for '${n}' of width ${this.shapes[n][2]}. Received: ${formatShape(shape)}.`);
        }
      }
    }
    return [query, value, key];
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const [query] = this.inputShapes(inputShape);
    return [query[0]!, query[1]!, this.outputWidth ?? query[2]!];
  }

  /** The output's padding mask: the query's, or `null` when it has none. */
  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const query = Array.isArray(inputs) ? inputs[0] : inputs;
    const own = Array.isArray(mask) ? mask[0] : mask;
    // tfjs reads null as no mask, though its type omits it
    return (own ?? query?.kerasMask ?? null) as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: MultiHeadAttentionCallArgs): tf.Tensor {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length !== 2 && list.length !== 3) {
      throw argumentError(LAYER, `expects inputs [query, value] or [query, value, key]; received ${list.length} input(s).`);
    }
    const query = checkTensor<tf.Rank.R3>(LAYER, 'query', list[0], ['B', 'Tq', 'Dq']);
    const value = checkTensor<tf.Rank.R3>(LAYER, 'value', list[1], ['B', 'Tk', 'Dv']);
    const key = list.length === 3 ? checkTensor<tf.Rank.R3>(LAYER, 'key', list[2], ['B', 'Tk', 'Dk']) : value;
    this.inputShapes([query.shape, value.shape, key.shape]);
    const [B, Tq] = query.shape;
    const Tk = value.shape[1];
    if (value.shape[0] !== B || key.shape[0] !== B || key.shape[1] !== Tk) {
      throw argumentError(LAYER, `'query' [B, Tq, Dq], 'value' [B, Tk, Dv] and 'key' [B, Tk, Dk] must agree on B and Tk; ` +
        `received ${formatShape(query.shape)}, ${formatShape(value.shape)} and ${formatShape(key.shape)}.`);
    }
    const causal = checkBoolean(LAYER, 'useCausalMask', kwargs?.useCausalMask ?? this.graphCausal ?? undefined, false);
    const attentionMask = kwargs?.attentionMask;
    if (attentionMask !== undefined && attentionMask !== null) {
      const m = attentionMask as unknown;
      const ok = m instanceof tf.Tensor && m.rank === 3 && (m.shape[0] === B || m.shape[0] === 1) &&
        (m.shape[1] === Tq || m.shape[1] === 1) && m.shape[2] === Tk;
      if (!ok) {
        throw argumentError(LAYER, `option 'attentionMask' must be a tensor [B, Tq, Tk] = ${formatShape([B, Tq, Tk])} ` +
          `(or broadcast from [B|1, Tq|1, Tk]); received ${describe(m)}.`);
      }
    }
    const masks = Array.isArray(kwargs?.mask) ? kwargs.mask : [];
    const maskOf = (n: number, x: tf.Tensor) => masks[n] ?? x.kerasMask;
    return tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      if (attentionMask) parts.push(tf.cast(attentionMask, 'bool'));
      const qMask = paddingMask(maskOf(0, query));
      if (qMask) parts.push(qMask.expandDims(2));
      const vMask = paddingMask(maskOf(1, value));
      if (vMask) parts.push(vMask.expandDims(1));
      const kMask = key === value ? null : paddingMask(maskOf(2, key));
      if (kMask) parts.push(kMask.expandDims(1));
      const mask = parts.length === 0 ? undefined : tf.broadcastTo(
        parts.reduce((a, b) => tf.logicalAnd(a, b)), [parts.some((p) => p.shape[0] === B) ? B : 1, Tq, Tk],
      ) as tf.Tensor3D;
      const q = this.project(query, 'query', this.keyDim);
      const k = this.project(key, 'key', this.keyDim);
      const v = this.project(value, 'value', this.valueDim);
      const dropout = kwargs?.training === true && this.dropout > 0 ? { dropout: this.dropout, seed: this.nextSeed() } : {};
      const o = this.attend(q, k, v, causal, mask, dropout);
      return this.projectOutput(o);
    });
  }

  /** `x [B, T, D] · kernel [D, H, size] (+ bias [H, size])` → `[B, T, H, size]`. */
  private project(x: tf.Tensor3D, name: string, size: number): tf.Tensor4D {
    const [B, T, D] = x.shape;
    const H = this.numHeads;
    const kernel = this.weightsByName.get(`${name}/kernel`)!.read().reshape([D, H * size]) as tf.Tensor2D;
    const bias = this.useBias ? this.weightsByName.get(`${name}/bias`)!.read().reshape([H * size]) as tf.Tensor1D : undefined;
    return dense(x, kernel, { bias, implementation: layerImplementation(this, LAYER, this.implementation) }).reshape([B, T, H, size]);
  }

  /** `o [B, Tq, H, valueDim] · kernel [H, valueDim, out] (+ bias [out])` → `[B, Tq, out]`. */
  private projectOutput(o: tf.Tensor4D): tf.Tensor3D {
    const [B, T, H, V] = o.shape;
    const kernel = this.weightsByName.get('attention_output/kernel')!.read();
    const out = kernel.shape[2]!;
    const bias = this.useBias ? this.weightsByName.get('attention_output/bias')!.read() as tf.Tensor1D : undefined;
    return dense(o.reshape([B, T, H * V]), kernel.reshape([H * V, out]) as tf.Tensor2D,
      { bias, implementation: layerImplementation(this, LAYER, this.implementation) }) as tf.Tensor3D;
  }

  /**
   * Softmax attention of q `[B, Tq, H, keyDim]`, k `[B, Tk, H, keyDim]` and v `[B, Tk, H, valueDim]` through
   * flashAttention, whose q, k and v share one head size: the narrower side is padded with
   * zeros, which changes neither q·k nor the kept columns of the output.
   */
  /** The seed of the next training call with dropout: seed + n (mod 2³²) when `seed` was given, else a fresh one. */
  private nextSeed(): number {
    if (this.seed === null) return freshSeed();
    const n = this.trainingCalls++;
    return (((this.seed + n) % 2 ** 32) + 2 ** 32) % 2 ** 32;
  }

  private attend(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, causal: boolean, mask: tf.Tensor3D | undefined, dropout: DropoutOptions,
  ): tf.Tensor4D {
    const width = Math.max(this.keyDim, this.valueDim);
    const widen = (t: tf.Tensor4D) => (t.shape[3] === width ? t : copy.pad(t, [[0, 0], [0, 0], [0, 0], [0, width - t.shape[3]]]));
    const o = flashAttention(widen(q), widen(k), widen(v), {
      causal,
      // Keras's causal mask is top-left aligned: query i sees keys j ≤ i, also when Tq ≠ Tk
      ...(causal ? { queryOffsets: new Array<number>(q.shape[0]).fill(0) } : {}),
      ...(mask ? { mask } : {}),
      ...dropout,
      scale: 1 / Math.sqrt(this.keyDim),
      implementation: layerImplementation(this, LAYER, this.implementation),
    });
    return o.shape[3] === this.valueDim ? o : copy.slice(o, [0, 0, 0, 0], [-1, -1, -1, this.valueDim]);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numHeads: this.numHeads,
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      dropout: this.dropout,
      useBias: this.useBias,
      outputShape: this.outputWidth,
      attentionAxes: this.attentionAxes,
      kernelInitializer: serializeObject(this.kernelInitializer),
      biasInitializer: serializeObject(this.biasInitializer),
      kernelRegularizer: serializeObject(this.kernelRegularizer),
      biasRegularizer: serializeObject(this.biasRegularizer),
      activityRegularizer: null,
      kernelConstraint: serializeObject(this.kernelConstraint),
      biasConstraint: serializeObject(this.biasConstraint),
      seed: this.seed,
      queryShape: this.shapes?.query ?? null,
      keyShape: this.shapes?.key ?? null,
      valueShape: this.shapes?.value ?? null,
      implementation: this.implementation,
    } as tf.serialization.ConfigDict;
  }
}
tf.serialization.registerClass(MultiHeadAttention);

/**
 * Creates a {@link MultiHeadAttention} layer, Keras's `MultiHeadAttention`, as `tf.layers.*`
 * factories do.
 *
 * @example
 * ```ts
 * const mha = layers.multiHeadAttention({ numHeads: 4, keyDim: 16 });
 * const x = tf.randomNormal([1, 10, 64]);
 * mha.apply(x, { value: x, useCausalMask: true }); // [1, 10, 64]
 * ```
 */
export function multiHeadAttention(args: MultiHeadAttentionArgs): MultiHeadAttention {
  return new MultiHeadAttention(args);
}
