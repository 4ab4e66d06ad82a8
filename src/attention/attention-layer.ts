import * as tf from '@tensorflow/tfjs';
import { MixerLayer, type MixerLayerArgs } from '../layers/mixer-layer.js';
import { argumentError, checkBoolean, checkPositiveInteger, optionNames } from '../validate.js';
import { MAX_HEAD_DIM } from './validate.js';

/** Arguments shared by the self-attention layers. */
export interface AttentionLayerArgs extends MixerLayerArgs {
  /** Query heads H. */
  numHeads: number;
  /** Key/value heads Hkv, dividing H: H for multi-head, 1 for multi-query. Default `numHeads`. */
  numKvHeads?: number;
  /** Head dimension K (≤ 256). Default `D / numHeads`. */
  headDim?: number;
  /** Biases on the four projections. Default `true`. */
  useBias?: boolean;
}

const ATTENTION_OPTIONS = optionNames<Omit<AttentionLayerArgs, keyof MixerLayerArgs>>({
  numHeads: true, numKvHeads: true, headDim: true, useBias: true,
});

/** Decode state of an attention layer: the key/value cache. */
export type KVCacheState = {
  /** `[B, t, Hkv, K]`: the keys of every token seen. */
  keys: tf.Tensor4D;
  /** `[B, t, Hkv, K]`: their values. */
  values: tf.Tensor4D;
  /** Tokens seen so far (t). */
  position: number;
};


/**
 * Base of the causal self-attention layers: `[B, T, D]` in, projections
 * q = x·Wq (H heads), k = x·Wk and v = x·Wv (Hkv heads), a causal attention over them, and
 * out = attention·Wo. Decoding keeps a key/value cache.
 */
export abstract class AttentionLayer extends MixerLayer {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number | null;
  readonly useBias: boolean;
  private weightsByName = new Map<string, tf.LayerVariable>();
  /** K, once built. */
  private headWidth: number | null = null;

  /** @param options the names of the subclass's own arguments, beyond {@link AttentionLayerArgs}. */
  protected constructor(args: AttentionLayerArgs | undefined, options: readonly string[]) {
    super(args, [...ATTENTION_OPTIONS, ...options]);
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
  }

  /** The attention itself: q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`, causal → `[B, Tq, H, K]`. */
  protected abstract attend(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D;

  protected createWeights(D: number): void {
    const name = this.layerName;
    if (this.headDim == null && D % this.numHeads !== 0) {
      throw new Error(`${name}: the input width D = ${D} is not divisible by numHeads = ${this.numHeads}; set headDim.`);
    }
    const K = this.headDim ?? D / this.numHeads;
    if (K > MAX_HEAD_DIM) throw new Error(`${name}: headDim must be at most ${MAX_HEAD_DIM}; received ${K}.`);
    const H = this.numHeads;
    const Hkv = this.numKvHeads;
    const add = (n: string, shape: number[], init: ReturnType<typeof tf.initializers.zeros>) =>
      this.weightsByName.set(n, this.addWeight(n, shape, 'float32', init));
    add('query', [D, H * K], tf.initializers.glorotUniform({}));
    add('key', [D, Hkv * K], tf.initializers.glorotUniform({}));
    add('value', [D, Hkv * K], tf.initializers.glorotUniform({}));
    add('output', [H * K, D], tf.initializers.glorotUniform({}));
    if (this.useBias) {
      add('queryBias', [H * K], tf.initializers.zeros());
      add('keyBias', [Hkv * K], tf.initializers.zeros());
      add('valueBias', [Hkv * K], tf.initializers.zeros());
      add('outputBias', [D], tf.initializers.zeros());
    }
    this.headWidth = K;
  }

  /** `x·W (+ b)` over the last axis of `[..., in]`. */
  private dense(x: tf.Tensor, name: string): tf.Tensor {
    const w = this.weightsByName.get(name)!.read();
    const flat = tf.matMul(x.reshape([-1, x.shape[x.rank - 1]!]), w);
    const out = this.useBias ? tf.add(flat, this.weightsByName.get(`${name}Bias`)!.read()) : flat;
    return out.reshape([...x.shape.slice(0, -1), w.shape[1]!]);
  }

  /** q, k, v of `x [B, T, D]`, each `[B, T, heads, K]`. */
  private project(x: tf.Tensor3D): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
    const [B, T] = x.shape;
    const { K } = this.dimsOrThrow();
    return [
      this.dense(x, 'query').reshape([B, T, this.numHeads, K]),
      this.dense(x, 'key').reshape([B, T, this.numKvHeads, K]),
      this.dense(x, 'value').reshape([B, T, this.numKvHeads, K]),
    ];
  }

  private projectOutput(o: tf.Tensor4D): tf.Tensor3D {
    const [B, T, H, K] = o.shape;
    return this.dense(o.reshape([B, T, H * K]), 'output') as tf.Tensor3D;
  }

  protected forward(x: tf.Tensor3D): tf.Tensor3D {
    const [q, k, v] = this.project(x);
    return this.projectOutput(this.attend(q, k, v));
  }

  /** D and K, once built. */
  protected dimsOrThrow(): { D: number; K: number } {
    return { D: this.builtWidth(), K: this.headWidth! };
  }

  /** An empty key/value cache for `batch` sequences, a non-negative integer. */
  initState(batch: number): KVCacheState {
    this.checkBatch(batch);
    const { K } = this.dimsOrThrow();
    return { keys: tf.zeros([batch, 0, this.numKvHeads, K]), values: tf.zeros([batch, 0, this.numKvHeads, K]), position: 0 };
  }

  /**
   * Runs one token through the layer: projects it, appends its key and value to the cache,
   * and lets its query attend to the whole cache (a single query is causal by construction).
   * Stepping through a sequence reproduces the parallel forward. The input state is left as
   * it is: dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  step(x: tf.Tensor2D, state: KVCacheState): [tf.Tensor2D, KVCacheState] {
    this.checkStep(x, state, 'keys');
    return tf.tidy((): [tf.Tensor2D, KVCacheState] => {
      const [q, k, v] = this.project(x.expandDims(1) as tf.Tensor3D);
      const keys = tf.concat([state.keys, k], 1) as tf.Tensor4D;
      const values = tf.concat([state.values, v], 1) as tf.Tensor4D;
      const y = this.projectOutput(this.attend(q, keys, values)).squeeze([1]) as tf.Tensor2D;
      return [y, { keys, values, position: state.position + 1 }];
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numHeads: this.numHeads,
      numKvHeads: this.numKvHeads,
      headDim: this.headDim,
      useBias: this.useBias,
    };
  }
}
