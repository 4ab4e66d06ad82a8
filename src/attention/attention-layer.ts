import * as tf from '@tensorflow/tfjs';
import { MixerLayer, type CallKwargs, type Initializer, type MixerLayerArgs } from '../layers/mixer-layer.js';
import {
  argumentError, checkBoolean, checkOptionNames, checkPositiveInteger, checkTensor, describe, formatShape, optionNames, useKernel,
} from '../validate.js';
import { MAX_HEAD_DIM } from './validate.js';
import { resolveVisibility, type VisibilityOptions } from './visibility.js';
import { checkDropoutRate, freshSeed, type DropoutOptions } from './dropout.js';
import {
  KV_CACHE_OPTIONS, checkFits, checkOwned, countAfter, emptyCache, growthOf, int, unrollRing, writeKernel, writeReference,
  type KVCacheOptions, type KVCacheState,
} from './kv-cache.js';
import type { PrefillLengths, PrefillOptions } from '../layers/prefill.js';
import { checkPositions, fillPadding, prefillInputs } from '../layers/decode-state.js';
import { resolveRotaryConfig, rotary, segmentPositions, type RotaryConfig } from '../rotary/op.js';

/** Arguments shared by the attention layers. */
export interface AttentionLayerArgs extends MixerLayerArgs {
  /** Query heads H. */
  numHeads: number;
  /** Key/value heads Hkv, dividing H: H for multi-head, 1 for multi-query. Default `numHeads`. */
  numKvHeads?: number;
  /** Head dimension K (≤ 256). Default `D / numHeads`. */
  headDim?: number;
  /** Biases on the four projections. Default `true`. */
  useBias?: boolean;
  /**
   * Query i sees only the keys up to its own position. Default (`null` or omitted): `true` for
   * self-attention (`apply(x)`), `false` for cross-attention (`apply([x, context])`), where
   * `true` aligns the last query with the last key (key j visible to query i iff
   * j ≤ i + Tk − Tq). `false` on self-attention makes an encoder layer, which cannot decode.
   */
  causal?: boolean | null;
  /**
   * Attention dropout rate p in [0, 1) (see `DropoutOptions`), applied only when tfjs calls the
   * layer with `training: true` (`model.fit`, or `apply(x, { training: true })`), each such call
   * with a fresh seed from `Math.random`; inference never drops. Default 0.
   */
  dropout?: number;
  /**
   * Rotary position embedding of the queries and keys (`ops.rotary`): `{ base, rotaryDim,
   * interleaved }`, each optional (defaults 10000, K, false). Token t of a sequence sits at
   * position t; with `segmentIds`, positions restart at 0 in each segment; decoding continues
   * each row from its state's position. Self-attention only. Default `null`: none.
   */
  rotary?: RotaryConfig | null;
}

/** Arguments of the attention layers that also take a sliding window. */
export interface WindowedAttentionLayerArgs extends AttentionLayerArgs {
  /**
   * Sliding window: query i, at position p = i + Tk − Tq (p = i in self-attention), sees only
   * the w most recent keys up to p (p − w < j ≤ p), and with `causal: false` also the keys
   * j < p + w. A positive integer, or `null` (default) for none. Decoding then attends to the
   * last w keys of the cache.
   */
  window?: number | null;
}

/**
 * The keyword arguments of an attention layer's `apply(inputs, kwargs)`, which tfjs passes to
 * `call`.
 */
export interface AttentionCallArgs {
  /**
   * Packed sequences: query i sees key j only where their ids are equal. Self-attention: an
   * int32 `[B, T]` tensor. Cross-attention: `{ query: [B, Tq], key: [B, Tk] }` (or one `[B, T]`
   * tensor when Tq = Tk). `model.fit` passes no per-batch arguments to its layers: train on
   * packed batches with `apply` in a loop of your own (`optimizer.minimize`, `tf.variableGrads`).
   */
  segmentIds?: VisibilityOptions['segmentIds'];
  /**
   * Padding masks, as tfjs propagates them (`tf.layers.embedding({ maskZero: true })`): `[B, T]`
   * of x, or `[maskOfX, maskOfContext]`, non-zero at real tokens. A padded key is invisible; a
   * padded query still has an output, and x's mask goes on with it to the next layer.
   * Where none is given, an input's own `kerasMask` (which tfjs's masking layers attach to their
   * outputs) serves: the only way a context's mask reaches the layer in `model.predict` and
   * `model.fit`, which pass on the mask of the first input alone.
   */
  mask?: tf.Tensor | ReadonlyArray<tf.Tensor | null | undefined> | null;
  /** Set by tfjs during `model.fit`: attention dropout (the `dropout` argument) applies only then. */
  training?: boolean;
}

/** What an attention layer's attention supports beyond causal self-attention. */
export interface AttentionSupport {
  /** `causal: false`, and cross-attention `apply([x, context])`. */
  bidirectional: boolean;
  /** The `window` argument. */
  window: boolean;
}

const ATTENTION_OPTIONS = optionNames<Omit<AttentionLayerArgs, keyof MixerLayerArgs>>({
  numHeads: true, numKvHeads: true, headDim: true, useBias: true, causal: true, dropout: true, rotary: true,
});
const WINDOW_OPTIONS = optionNames<Omit<WindowedAttentionLayerArgs, keyof AttentionLayerArgs>>({ window: true });
const CALL_ARGS = optionNames<AttentionCallArgs>({ segmentIds: true, mask: true, training: true });

export type { KVCacheOptions, KVCacheState } from './kv-cache.js';

/**
 * A decoding call's real tokens a row: a prefill's lengths, or a step's, which makes no tensor
 * of its ones (`tensor` null: every row's T tokens).
 */
type CallLengths = Omit<PrefillLengths, 'tensor'> & { tensor: tf.Tensor1D | null };

/** An input's own padding mask, which tfjs's masking layers attach to their eager outputs. */
function ownMask(x: tf.Tensor): tf.Tensor | null {
  return x.kerasMask && !x.kerasMask.isDisposed ? x.kerasMask : null;
}

/**
 * Base of the attention layers: queries q = x·Wq (H heads) from x `[B, Tq, D]`, keys
 * k = s·Wk and values v = s·Wv (Hkv heads) from s = x (self-attention, `apply(x)`) or from a
 * context `[B, Tk, Dc]` (cross-attention, `apply([x, context])`, where the layer supports it),
 * the attention over them, and out = attention·Wo, `[B, Tq, D]`. Which keys a query sees:
 * `causal`, `window`, the packed `segmentIds` given to `apply`, and the padding mask tfjs
 * propagates (a key mask, passed on as the output's mask). Decoding (causal self-attention
 * only) keeps a key/value cache.
 */
export abstract class AttentionLayer extends MixerLayer<{ K: number }> {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number | null;
  readonly useBias: boolean;
  /** As given: `true`, `false`, or `null` for causal self-attention and non-causal cross-attention. */
  readonly causal: boolean | null;
  /** The sliding window w, or `null` for none. */
  readonly window: number | null;
  /** The attention dropout rate in training, 0 for none. */
  readonly dropout: number;
  /** The rotary embedding, checked (`rotaryDim` K unless given), or `null` for none. */
  readonly rotary: RotaryConfig | null;
  private readonly support: AttentionSupport;
  /** Dc once built for cross-attention; `null` for self-attention or before the build. */
  private contextWidth: number | null = null;

  /**
   * @param options the names of the subclass's own arguments, beyond {@link AttentionLayerArgs}.
   * @param support what the subclass's attention supports beyond causal self-attention.
   */
  protected constructor(args: AttentionLayerArgs | undefined, options: readonly string[], support: AttentionSupport) {
    super(args, [...ATTENTION_OPTIONS, ...(support.window ? WINDOW_OPTIONS : []), ...options]);
    const name = this.layerName;
    if (args?.numHeads === undefined) {
      throw argumentError(name, `argument 'numHeads', the number of query heads (a positive integer), is required; received none.`);
    }
    this.numHeads = checkPositiveInteger(name, 'numHeads', args.numHeads);
    this.numKvHeads = checkPositiveInteger(name, 'numKvHeads', args.numKvHeads ?? args.numHeads);
    if (this.numHeads % this.numKvHeads !== 0) {
      throw new Error(`${name}: numHeads = ${this.numHeads} must be a multiple of numKvHeads = ${this.numKvHeads}.`);
    }
    this.headDim = args.headDim == null ? null : checkPositiveInteger(name, 'headDim', args.headDim);
    this.useBias = checkBoolean(name, 'useBias', args.useBias, true);
    this.causal = args.causal == null ? null : checkBoolean(name, 'causal', args.causal, true);
    if (this.causal === false && !support.bidirectional) {
      throw argumentError(name, `option 'causal' must be true (or omitted): its attention is causal by definition; received false. ` +
        `For bidirectional attention use FlashStyleTiledAttention with causal: false.`);
    }
    const window = (args as WindowedAttentionLayerArgs).window;
    this.window = window == null ? null : checkPositiveInteger(name, 'window', window);
    this.dropout = checkDropoutRate(name, args.dropout, 'argument');
    this.rotary = args.rotary == null ? null : resolveRotaryConfig(`${name}: argument 'rotary'`, args.rotary);
    this.support = support;
    this.supportsMasking = true;
  }

  /**
   * The attention itself: q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]` → `[B, Tq, H, K]`, with
   * the visibility the layer resolved for this call (`causal` always set) and, in training with
   * a dropout rate, the call's `dropout` and `seed` (`{}` otherwise), both for the op.
   */
  protected abstract attend(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, visibility: VisibilityOptions, dropout: DropoutOptions,
  ): tf.Tensor4D;

  protected createWeights(D: number): void {
    const name = this.layerName;
    if (this.headDim == null && D % this.numHeads !== 0) {
      throw new Error(`${name}: the input width D = ${D} is not divisible by numHeads = ${this.numHeads}; set headDim.`);
    }
    const K = this.headDim ?? D / this.numHeads;
    if (K > MAX_HEAD_DIM) throw new Error(`${name}: headDim must be at most ${MAX_HEAD_DIM}; received ${K}.`);
    if (this.rotary) {
      if (this.contextWidth !== null) {
        throw argumentError(name, `argument 'rotary' applies to self-attention: queries and keys of one sequence; it was given [x, context].`);
      }
      resolveRotaryConfig(`${name}: argument 'rotary'`, this.rotary, K);
    }
    const H = this.numHeads;
    const Hkv = this.numKvHeads;
    // keys and values project the context in cross-attention, of its own width Dc
    const Dkv = this.contextWidth ?? D;
    const add = (n: string, shape: number[], init: Initializer) => this.addNamedWeight(n, shape, init);
    add('query', [D, H * K], tf.initializers.glorotUniform({}));
    add('key', [Dkv, Hkv * K], tf.initializers.glorotUniform({}));
    add('value', [Dkv, Hkv * K], tf.initializers.glorotUniform({}));
    add('output', [H * K, D], tf.initializers.glorotUniform({}));
    if (this.useBias) {
      add('queryBias', [H * K], tf.initializers.zeros());
      add('keyBias', [Hkv * K], tf.initializers.zeros());
      add('valueBias', [Hkv * K], tf.initializers.zeros());
      add('outputBias', [D], tf.initializers.zeros());
      this.keepPackedBiases(['query', 'key', 'value']);
    }
    this.setDims({ K });
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const [shape, context] = this.inputShapes(inputShape);
    this.contextWidth = context ? context[2]! : null;
    this.buildFor(shape);
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return this.checkedShape(this.inputShapes(inputShape)[0]);
  }

  /** Self-attention on `x [B, T, D]`, or cross-attention on `[x, context]`; see {@link AttentionCallArgs} for `kwargs`. */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: CallKwargs = {}): tf.Tensor {
    checkOptionNames(`${this.layerName}.apply`, kwargs, CALL_ARGS);
    if (!Array.isArray(inputs) || inputs.length === 1) {
      this.checkSelfOrCross(false, 1);
      return super.call(inputs, kwargs);
    }
    this.checkSelfOrCross(true, inputs.length);
    const x = this.checkedInput(inputs[0]);
    const context = checkTensor<tf.Rank.R3>(this.layerName, 'context', inputs[1], ['B', 'Tk', 'Dc']);
    this.inputShapes([x.shape, context.shape]);
    return this.mixNonEmpty([x, context], () => this.mix(x, context, kwargs as AttentionCallArgs));
  }

  protected forward(x: tf.Tensor3D, kwargs: CallKwargs): tf.Tensor3D {
    return this.mix(x, null, kwargs as AttentionCallArgs);
  }

  /** The mask of the output: x's own, which tfjs passes on to the next layer. */
  override computeMask(_inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
    // no mask is null, as tfjs's own layers return, though its type leaves null out
    return ((Array.isArray(mask) ? mask[0] : mask) ?? null) as tf.Tensor;
  }

  /**
   * The shapes of x and of the context (`null` for self-attention), checked: one or two inputs,
   * a context `[B, Tk, Dc]` with a known Dc (the one the layer was built for), of x's batch.
   */
  private inputShapes(inputShape: tf.Shape | tf.Shape[]): [tf.Shape, tf.Shape | null] {
    if (!Array.isArray(inputShape[0])) return [inputShape as tf.Shape, null];
    const shapes = inputShape as tf.Shape[];
    this.checkSelfOrCross(shapes.length === 2, shapes.length);
    if (shapes.length === 1) return [shapes[0]!, null];
    const [x, context] = shapes as [tf.Shape, tf.Shape];
    const name = this.layerName;
    if (context.length !== 3 || context[2] == null) {
      throw new Error(`${name} expects a context of shape [B, Tk, Dc] with a known Dc. Received: ${formatShape(context)}.`);
    }
    if (this.built && context[2] !== this.contextWidth) {
      throw argumentError(name, `argument 'context' must have shape [B, Tk, Dc] = ${formatShape([context[0], context[1], this.contextWidth])}; ` +
        `received ${formatShape(context)}. The layer was built for Dc = ${this.contextWidth}.`);
    }
    if (x[0] != null && context[0] != null && x[0] !== context[0]) {
      throw argumentError(name, `arguments 'inputs' and 'context' must hold the same batch B; received ${formatShape(x)} and ${formatShape(context)}.`);
    }
    return [x, context];
  }

  /**
   * Throws unless `count` inputs (1: self-attention, 2: cross-attention) suit the layer: one
   * it supports, and the kind it was built for.
   */
  private checkSelfOrCross(cross: boolean, count: number): void {
    const name = this.layerName;
    if (count !== 1 && count !== 2) {
      throw new Error(`${name} expects x, or [x, context] for cross-attention; received ${count} inputs.`);
    }
    if (cross && !this.support.bidirectional) {
      throw argumentError(name, `takes a single input x [B, T, D]: it has no cross-attention; received ${count} inputs.`);
    }
    if (this.built && cross !== (this.contextWidth !== null)) {
      throw argumentError(name, `the layer was built for ${this.contextWidth !== null ? 'cross-attention, [x, context]' : 'self-attention, a single x'}; ` +
        `received ${count === 1 ? 'a single input' : '[x, context]'}.`);
    }
  }

  /** The attention on checked, non-empty inputs: keys and values from the context, or from x. */
  private mix(x: tf.Tensor3D, context: tf.Tensor3D | null, kwargs: AttentionCallArgs): tf.Tensor3D {
    const visibility = this.callVisibility(x, context, kwargs);
    const dropout: DropoutOptions = kwargs.training === true && this.dropout > 0 ? { dropout: this.dropout, seed: freshSeed() } : {};
    const [q0, k0, v] = this.project(x, context ?? x);
    const [q, k] = this.rotateInSegments(q0, k0, visibility.segmentIds);
    return this.projectOutput(this.attend(q, k, v, visibility, dropout));
  }

  /**
   * q `[B, T, H, K]` and k `[B, T, Hkv, K]` of a sequence rotated by the layer's rotary
   * embedding at the positions token t holds: t, or its place in its segment with `segmentIds`
   * (self-attention's `[B, T]`, or `{ query, key }`); unchanged without one.
   */
  private rotateInSegments(q: tf.Tensor4D, k: tf.Tensor4D, ids: VisibilityOptions['segmentIds']): [tf.Tensor4D, tf.Tensor4D] {
    if (!this.rotary) return [q, k];
    if (ids === undefined) return this.rotate(q, k, {});
    if (ids instanceof tf.Tensor) return this.rotate(q, k, { positions: segmentPositions(ids) });
    return [this.rotate(q, null, { positions: segmentPositions(ids.query) })[0], this.rotate(k, null, { positions: segmentPositions(ids.key) })[0]];
  }

  /**
   * q and k (when given) rotated by the layer's rotary embedding (`ops.rotary`) at `at`: token t
   * of row b at `positions[b, t]`, or at `offset[b] + t` (a decode state's positions), or at t;
   * unchanged without one. Called inside a tidy.
   */
  protected rotate<K extends tf.Tensor4D | null>(
    q: tf.Tensor4D, k: K, at: { offset?: tf.Tensor1D; positions?: tf.Tensor2D },
  ): [tf.Tensor4D, K] {
    if (!this.rotary) return [q, k];
    const options = { ...this.rotary, ...at, implementation: this.activeImplementation() };
    return [rotary(q, options), (k && rotary(k, options)) as K];
  }

  /**
   * The visibility of one call, checked in the layer's name: `causal` (by default true for
   * self-attention, false for cross-attention), `window`, `segmentIds`, and the keys' padding
   * mask as `[B, 1, Tk]`.
   */
  private callVisibility(x: tf.Tensor3D, context: tf.Tensor3D | null, kwargs: AttentionCallArgs): VisibilityOptions {
    const visibility: VisibilityOptions = { causal: this.causal ?? context === null };
    if (this.window !== null) visibility.window = this.window;
    if (kwargs.segmentIds !== undefined) visibility.segmentIds = kwargs.segmentIds;
    const keyMask = this.keyMask(x, context, kwargs.mask);
    if (keyMask) visibility.mask = keyMask;
    const [B, Tq] = x.shape;
    const Tk = (context ?? x).shape[1];
    // checked here so that errors name the layer; what this makes is disposed by the caller's tidy
    resolveVisibility(this.layerName, visibility, { B, Tq, Tk, H: this.numHeads, Hkv: this.numKvHeads, K: this.dims().K },
      { window: this.support.window, queryOffsets: false, nonCausal: this.support.bidirectional });
    return visibility;
  }

  /** The keys' padding mask `[B, 1, Tk]`: the context's in cross-attention, else x's; `null` when none. */
  private keyMask(x: tf.Tensor3D, context: tf.Tensor3D | null, mask: AttentionCallArgs['mask']): tf.Tensor3D | null {
    const given = Array.isArray(mask) ? mask : [mask];
    const source = context ?? x;
    const m = (context ? given[1] : given[0]) ?? ownMask(source);
    if (m == null) return null;
    const [B, Tk] = source.shape;
    if (!(m instanceof tf.Tensor) || m.rank !== 2 || m.shape[0] !== B || m.shape[1] !== Tk) {
      throw argumentError(this.layerName, `argument 'mask', the padding mask of ${context ? 'the context' : 'x'}, must be a tensor [B, ${context ? 'Tk' : 'T'}] = ` +
        `${formatShape([B, Tk])}; received ${describe(m)}.`);
    }
    return m.reshape([B, 1, Tk]) as tf.Tensor3D;
  }

  /** q of `x [B, Tq, D]`, `[B, Tq, H, K]`, and k, v of `source [B, Tk, D|Dc]`, each `[B, Tk, Hkv, K]`. */
  private project(x: tf.Tensor3D, source: tf.Tensor3D): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
    const [B, Tq] = x.shape;
    const Tk = source.shape[1];
    const { K } = this.dims();
    // self-attention projects x once for all three, cross-attention the context once for k and v
    const [q, k, v] = x === source ? this.denseAll(x, ['query', 'key', 'value'])
      : [this.dense(x, 'query'), ...this.denseAll(source, ['key', 'value'])];
    return [
      q!.reshape([B, Tq, this.numHeads, K]),
      k!.reshape([B, Tk, this.numKvHeads, K]),
      v!.reshape([B, Tk, this.numKvHeads, K]),
    ];
  }

  private projectOutput(o: tf.Tensor4D): tf.Tensor3D {
    const [B, T, H, K] = o.shape;
    return this.dense(o.reshape([B, T, H * K]), 'output') as tf.Tensor3D;
  }

  /**
   * Throws, naming `method`, unless the layer decodes: decoding runs causal self-attention, a
   * token at a time, so a layer built for cross-attention or with `causal: false` cannot.
   */
  protected checkDecodes(method: 'initState' | 'step' | 'prefill'): void {
    this.builtWidth();
    const why = this.contextWidth !== null
      ? 'it was built for cross-attention, [x, context]'
      : this.causal === false ? 'it has causal: false, so each output sees later tokens, which decoding has not seen yet' : null;
    if (why) throw argumentError(`${this.layerName}.${method}`, `decoding needs causal self-attention; ${why}. Run the layer on whole sequences with apply().`);
  }

  /**
   * An empty key/value cache for `batch` sequences (a non-negative integer), every row at
   * position 0. Without `options.capacity` the cache grows by concatenation and each
   * `step`/`prefill` returns a new state (dispose each previous one). With it, keys and values
   * `[B, capacity, Hkv, K]` are preallocated, `step` and `prefill` write into them in place and
   * return this same state (dispose it once, at the end; see {@link KVCacheState} for the
   * rules); a row that would pass `capacity` tokens throws. With the layer's `window` w ≤
   * `capacity`, the cache is a ring of the last w tokens, `[B, w, Hkv, K]`, and never fills.
   *
   * @example
   * ```ts
   * const layer = layers.flashStyleTiledAttention({ numHeads: 4 });
   * layer.apply(tf.zeros([1, 1, 64]));                    // builds it for D = 64
   * const state = layer.initState(2, { capacity: 1024 }); // keys and values [2, 1024, 4, 16]
   * const [y, same] = layer.step(tf.ones([2, 64]), state); // same === state, positions [1, 1]
   * tf.dispose([y, state]);
   * ```
   */
  initState(batch: number, options?: KVCacheOptions): KVCacheState {
    this.checkBatch(batch);
    this.checkDecodes('initState');
    const method = `${this.layerName}.initState`;
    checkOptionNames(method, options, KV_CACHE_OPTIONS);
    const capacity = options?.capacity === undefined ? undefined : checkPositiveInteger(method, 'capacity', options.capacity, 'option');
    // a windowed layer reads only the last w keys: a ring of w slots keeps them
    const ring = capacity !== undefined && this.window !== null && capacity >= this.window;
    const { K } = this.dims();
    return emptyCache(batch, this.numKvHeads, K, ring ? this.window! : capacity, ring);
  }

  /**
   * Runs one token through the layer, each row at its own position (`state.positions`):
   * projects it, writes its key and value to the cache at that position, and lets its query
   * attend to the row's cached keys (its last `window` keys with a window); positions advance
   * by one. Stepping through a sequence reproduces the parallel forward, and a batch of rows at
   * different positions gives what each row gives alone. A concatenating state is left as it
   * is (dispose it once no longer needed); a preallocated one (`initState(B, { capacity })`)
   * is updated in place and returned. Only causal self-attention decodes.
   *
   * @param x `[B, D]` float32, the next token of each row.
   * @param state from {@link AttentionLayer.initState}, a previous step or a prefill.
   * @returns `[y, nextState]` with y `[B, D]`.
   * @example
   * ```ts
   * const layer = layers.flashStyleTiledAttention({ numHeads: 4 });
   * layer.apply(tf.zeros([1, 1, 64]));                    // builds it for D = 64
   * let state = layer.initState(2);
   * const [y, next] = layer.step(tf.ones([2, 64]), state); // y [2, 64]
   * tf.dispose([state, y]);
   * state = next;
   * ```
   */
  step(x: tf.Tensor2D, state: KVCacheState): [tf.Tensor2D, KVCacheState] {
    this.checkDecodes('step');
    this.checkStep(x, state, 'keys');
    const method = `${this.layerName}.step`;
    const B = x.shape[0];
    this.checkCache(method, state, B);
    const token = x.expandDims(1) as tf.Tensor3D;
    try {
      const [y, next] = this.decodeTokens(method, token, state, { tensor: null, values: new Array<number>(B).fill(1), full: true });
      const out = y.reshape([B, x.shape[1]]) as tf.Tensor2D;
      y.dispose();
      return [out, next];
    } finally {
      token.dispose();
    }
  }

  /**
   * Runs a prompt through the layer in parallel and returns its outputs and the state that
   * stepping its real tokens one by one from `state` would leave. x is right-padded: row b
   * holds `options.lengths[b]` real tokens (default all T) and continues from its own
   * position. The prompt's queries attend to the row's cached keys and to the prompt's own,
   * causally (the layer's forward kernels on webgpu); only the real tokens' keys and values
   * enter the cache. A concatenating state is left as it is; a preallocated one is updated in
   * place and returned (the full-cache check counts lengths given as a tensor, which is not
   * read back, as T tokens a row: give `number[]` to fill a cache exactly).
   *
   * @param x `[B, T, D]` float32, the prompt, right-padded.
   * @param state from {@link AttentionLayer.initState}, a step or a prefill; default `initState(B)`.
   * @returns `[y, nextState]`, y `[B, T, D]`; y at a padded position (t ≥ lengths[b]) is
   *   unspecified but finite (padded tokens are read as zeros).
   * @example
   * ```ts
   * const layer = layers.flashStyleTiledAttention({ numHeads: 4 });
   * layer.apply(tf.zeros([1, 1, 64]));                    // builds it for D = 64
   * const state = layer.initState(2, { capacity: 256 });
   * const [y] = layer.prefill(tf.randomNormal([2, 10, 64]), state, { lengths: [10, 3] });
   * state.positions.print();                              // [10, 3]
   * tf.dispose([y, state]);
   * ```
   */
  prefill(x: tf.Tensor3D, state?: KVCacheState, options?: PrefillOptions): [tf.Tensor3D, KVCacheState] {
    this.checkDecodes('prefill');
    const method = `${this.layerName}.prefill`;
    const { B, lengths: tensor, values, full } = prefillInputs(method, x, this.builtWidth(), options);
    try {
      if (state !== undefined) this.checkCache(method, state, B);
      const start = state ?? this.initState(B);
      try {
        return this.decodeTokens(method, x, start, { tensor, values, full });
      } finally {
        // a fresh concatenating state: the result holds new tensors
        if (state === undefined) tf.dispose(start);
      }
    } finally {
      tensor.dispose();
    }
  }

  /**
   * The attention of decoding: q `[B, Tq, H, K]` over a cache's keys and values
   * `[B, S, Hkv, K]`, under `visibility`, which holds each row's `kvLengths` and, but for a
   * ring's single query, its `queryOffsets` (key j then is the row's token at position j);
   * `offsets` are those offsets as numbers where the host knows them. The layer's own
   * attention; BlockSparse adds its layout.
   */
  protected attendCache(
    q: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, visibility: VisibilityOptions, _offsets?: readonly number[],
  ): tf.Tensor4D {
    return this.attend(q, keys, values, visibility, {});
  }

  /**
   * Runs x `[B, T, D]` (row b's first `lengths[b]` tokens real) through the layer from `state`:
   * projects it, writes the real tokens' keys and values at each row's position, attends, and
   * advances the positions. Returns y `[B, T, D]` and the state: for a preallocated cache the
   * same object, updated; otherwise a new one.
   */
  private decodeTokens(method: string, x: tf.Tensor3D, state: KVCacheState, lengths: CallLengths): [tf.Tensor3D, KVCacheState] {
    const [B, T, D] = x.shape;
    const { K } = this.dims();
    checkFits(method, state, T, lengths.values, `Make the state with a larger initState(${B}, { capacity })` +
      (this.support.window ? ', or give the layer a window (the cache is then a ring of the last w tokens).' : '.'));
    const inPlace = state.capacity !== undefined;
    const onKernels = useKernel(method, this.activeImplementation());
    const kernel = inPlace && onKernels;
    if (kernel) checkOwned(method, state);
    const counted = countAfter(state.counted, T, lengths.values);
    if (B * T === 0) {
      const y = tf.zeros([B, T, D]) as tf.Tensor3D;
      if (inPlace) return [y, state];
      return [y, { ...state, keys: state.keys.clone(), values: state.values.clone(), positions: state.positions.clone(), counted }];
    }
    // every row at 0 (known on the host): the prompt attends to itself alone, as in the forward
    const fromZero = state.counted.rows !== undefined && state.counted.rows.every((p) => p === 0);
    const S = state.keys.shape[1];
    const out = tf.tidy(() => {
      // clamped to 0..T by prefillInputs; made here only where read (a step's write needs none)
      let every: tf.Tensor1D | undefined;
      const n = (): tf.Tensor1D => lengths.tensor ?? (every ??= tf.fill([B], T, 'int32') as tf.Tensor1D);
      // padded tokens are read as zeros, so that nothing there, not even a NaN, reaches an output
      const source = lengths.full ? x : fillPadding(x, n(), { onKernel: onKernels });
      const positions = state.positions;
      const [q0, k0, v] = this.project(source, source);
      // token i of row b sits at positions[b] + i: rotated keys enter the cache
      const [q, k] = this.rotate(q0, k0, { offset: positions });
      let keys = state.keys;
      let values = state.values;
      // the kernel's write forms the positions after the call too
      let advanced: tf.Tensor1D | null = null;
      const growth = inPlace ? 0 : growthOf(S, T, counted.max);
      // every row at the end of a concatenating cache (known on the host), all tokens real: appending is the write
      const appends = growth === T && lengths.full && state.counted.rows !== undefined && state.counted.rows.every((p) => p === S);
      // a concatenating cache's grown copy, where no gradient is recorded, is written by the
      // kernel in place as a preallocated one is, where tfjs ops took eight launches a tensor
      const grownOnKernel = !inPlace && !appends && this.untapedKernels();
      if (!inPlace && !appends) {
        // a concatenating cache grows (by the call's tokens but on webgl); row b writes from its
        // own position. Each its own zeros: of an empty cache the concat is the zeros themselves,
        // which the kernel's write must not share between the keys and the values. Never
        // ungrown on the kernel's write, which is in place (growthOf is T but on webgl)
        const grown = (cache: tf.Tensor4D) => growth === 0 ? cache : tf.concat([cache, tf.zeros([B, growth, this.numKvHeads, K])], 1) as tf.Tensor4D;
        keys = grown(keys);
        values = grown(values);
      }
      const write = () => {
        if (appends) {
          keys = tf.concat([keys, k], 1) as tf.Tensor4D;
          values = tf.concat([values, v], 1) as tf.Tensor4D;
        } else if (kernel || grownOnKernel) {
          advanced = writeKernel(kernel ? state : { ...state, keys, values }, k, v, lengths.full ? undefined : n());
        } else {
          [keys, values] = writeReference([keys, values], [k, v], positions, n(), state.ring) as [tf.Tensor4D, tf.Tensor4D];
        }
      };
      const visibility: VisibilityOptions = this.window === null ? { causal: true } : { causal: true, window: this.window };
      // with every token real, causality alone stops token i of a row at position p + i, short of
      // the p + T keys the row then holds: kvLengths would only cost a launch
      const real = (kvLengths: () => tf.Tensor1D): VisibilityOptions => lengths.full ? visibility : { ...visibility, kvLengths: kvLengths() };
      let o: tf.Tensor4D;
      if (fromZero) {
        o = this.attend(q, k, v, real(n), {});
        write();
      } else if (state.ring && T === 1) {
        // the ring's S = w slots hold the last w tokens up to this one, all in its window: in
        // slot order, which the softmax does not see, every filled slot is visible
        write();
        // each row's filled slots, min(p + 1, S): the kernel's write formed p + 1, which the
        // attention kernels clamp to the S keys (keyCount in kernels/common/visibility.wgsl)
        const filled = advanced ?? tf.minimum(tf.add(positions, int(1)), int(S)) as tf.Tensor1D;
        o = this.attendCache(q, keys, values, { causal: false, kvLengths: filled });
      } else if (state.ring) {
        // the prompt needs keys the ring no longer holds once written: attend first, over the
        // ring's tokens in order followed by the prompt's, then write
        const held = tf.minimum(positions, int(S)) as tf.Tensor1D;
        o = this.attendCache(q, unrollRing(keys, k, positions), unrollRing(values, v, positions),
          { ...visibility, queryOffsets: held, kvLengths: tf.add(held, n()) as tf.Tensor1D });
        write();
      } else {
        write();
        o = this.attendCache(q, keys, values, { ...real(() => tf.add(positions, n()) as tf.Tensor1D), queryOffsets: positions },
          state.counted.rows);
      }
      const y = this.projectOutput(o);
      return { y, keys, values, positions: advanced ?? tf.add(positions, n()) as tf.Tensor1D };
    });
    if (!inPlace) return [out.y, { keys: out.keys, values: out.values, positions: out.positions, capacity: undefined, ring: false, counted }];
    // the reference wrote copies of the cache, which replace the state's; the kernel wrote it in
    // place, and the positions after the call are new either way
    const replaced = kernel ? [state.positions] : [state.keys, state.values, state.positions];
    tf.dispose(replaced);
    Object.assign(state, { keys: out.keys, values: out.values, positions: out.positions });
    state.counted = counted;
    return [out.y, state];
  }

  /** Throws, naming `method`, unless `state` is a key/value cache of this layer for B rows. */
  private checkCache(method: string, state: KVCacheState, B: number): void {
    const { K } = this.dims();
    const s = state as Partial<KVCacheState> | null | undefined;
    const S = s?.keys instanceof tf.Tensor && s.keys.rank === 4 ? s.keys.shape[1] : null;
    for (const name of ['keys', 'values'] as const) {
      const t: unknown = s?.[name];
      const ok = t instanceof tf.Tensor && !t.isDisposed && t.dtype === 'float32' && S !== null &&
        tf.util.arraysEqual(t.shape, [B, S, this.numKvHeads, K]);
      if (!ok) {
        throw argumentError(method, `argument 'state.${name}' must be a live float32 tensor [B, S, Hkv, K] = ` +
          `${formatShape([B, S, this.numKvHeads, K])}, from this layer's initState(); received ` +
          `${t instanceof tf.Tensor && t.isDisposed ? 'a disposed tensor' : describe(t)}.`);
      }
    }
    checkPositions(method, state, B);
    const rows = s?.counted?.rows;
    const fieldsOk = s !== null && s !== undefined && 'capacity' in s && (s.capacity === undefined || s.capacity === S) &&
      typeof s.ring === 'boolean' && typeof s.counted?.max === 'number' && (rows === undefined || (Array.isArray(rows) && rows.length === B));
    if (!fieldsOk) {
      throw argumentError(method, `argument 'state' must be a key/value cache from this layer's initState(), step() or prefill(): ` +
        `its 'capacity' (undefined or the ${S} slots of state.keys), 'ring' and 'counted' fields are missing or do not match.`);
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numHeads: this.numHeads,
      numKvHeads: this.numKvHeads,
      headDim: this.headDim,
      useBias: this.useBias,
      causal: this.causal,
      dropout: this.dropout,
      rotary: this.rotary && { ...this.rotary },
      ...(this.support.window ? { window: this.window } : {}),
    };
  }
}
