/**
 * A small decoder-only character model (a GPT) whose sequence mixer is any of tfjs-mixers'
 * layers (its registry, `mixers`), or plain softmax attention as the baseline; generation through the mixers'
 * decode states (`prefill` of the prompts, then `step` a token at a time), one sequence or a
 * batch of prompts of different lengths; and `file://` model saving for Node.
 *
 * Outside this repository, import the layers from `'tfjs-mixers'` instead of `'../../src/index.js'`.
 *
 * @example
 * ```ts
 * const vocab = Vocabulary.fromText(text);
 * const model = buildModel({ mixer: 'selectiveSSM', vocab: vocab.size, context: 64, width: 64, blocks: 2, heads: 4 });
 * const ids = await generate(model, vocab.encode('ROMEO:'), 100, { temperature: 0.8, seed: 1 });
 * console.log(vocab.decode(ids));
 * const rows = await generateBatch(model, [vocab.encode('ROMEO:'), vocab.encode('O')], 20, { temperature: 0 });
 * ```
 *
 * @packageDocumentation
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  BlockSparse, ExpressiveAttention, FlashStyleTiledAttention, mixerNamed, mixers as libraryMixers, ops, type Implementation,
  type KVCacheOptions, type PrefillOptions,
} from '../../src/index.js';
import { mulberry32 } from '../shared/random.js';

// ───────────────────────────── vocabulary ─────────────────────────────

/** A character vocabulary: every distinct character of a text, sorted by code point. */
export class Vocabulary {
  readonly chars: readonly string[];
  private readonly ids: Map<string, number>;

  constructor(chars: readonly string[]) {
    if (new Set(chars).size !== chars.length) throw new Error('Vocabulary: argument \'chars\' has duplicates.');
    this.chars = chars;
    this.ids = new Map(chars.map((c, i) => [c, i]));
  }

  /** The characters of `text`, as nanoGPT's shakespeare_char builds them (`sorted(set(text))`). */
  static fromText(text: string): Vocabulary {
    return new Vocabulary([...new Set(text)].sort());
  }

  get size(): number {
    return this.chars.length;
  }

  /** Token ids of `text`; throws on a character outside the vocabulary. */
  encode(text: string): Int32Array {
    const out = new Int32Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const id = this.ids.get(text[i]!);
      if (id == null) throw new Error(`Vocabulary.encode: ${JSON.stringify(text[i])} (at ${i}) is not in the vocabulary.`);
      out[i] = id;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    return Array.from(ids, (id) => this.chars[id] ?? '').join('');
  }

  toJSON(): { chars: readonly string[] } {
    return { chars: this.chars };
  }
}

// ───────────────────────────── layers ─────────────────────────────
// tfjs has an Embedding and a LayerNormalization layer, but their gradients are slow on the cpu
// backend: Embedding's gather has an unsorted segment sum as gradient, one masked pass over the
// batch per vocabulary entry, and LayerNormalization tiles its statistics to the input's shape,
// whose gradient is one slice and add per tiled row (1,024 per norm for a 16×64 batch). The two
// small layers below compute the same functions with broadcasts and a matMul instead, and cut a
// training step on cpu to about a third (measured: see README.md).

/**
 * Float32 one-hot rows `[n, depth]` of `ids` `[n]`, made as int32 and cast: tfjs-wasm 4.22's
 * OneHot writes int32 ones whatever dtype it is asked for, which read as float32 are 1.4e-45.
 */
function oneHotRows(ids: tf.Tensor1D, depth: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(ids, depth), 'float32') as tf.Tensor2D);
}

/** The shape of a single-input layer's input. */
function singleShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
  return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
}

/** Arguments of {@link TokenEmbedding}. */
export interface TokenEmbeddingArgs {
  /** Vocabulary size V. */
  inputDim: number;
  /** Embedding width D. */
  outputDim: number;
  /** The table's initial values. Default N(0, 0.02²), as GPT-2's. */
  embeddingsInitializer?: ReturnType<typeof tf.initializers.zeros>;
  name?: string;
}

/**
 * A token embedding, token ids `[...]` (int32) → `[..., D]`, row `id` of a table `E [V, D]`,
 * computed as `oneHot(ids)·E` (`ops.dense`) where a gradient is being recorded, so that the
 * gradient is one matMul, and else as a gather (inference, decoding: one launch, not two).
 */
export class TokenEmbedding extends tf.layers.Layer {
  static className = 'TokenEmbedding';
  readonly inputDim: number;
  readonly outputDim: number;
  private readonly initializer: ReturnType<typeof tf.initializers.zeros>;
  private table: tf.LayerVariable | null = null;

  constructor(args: TokenEmbeddingArgs) {
    super({ name: args.name });
    for (const key of ['inputDim', 'outputDim'] as const) {
      if (!Number.isInteger(args[key]) || args[key] < 1) {
        throw new Error(`TokenEmbedding: argument '${key}' must be a positive integer; received ${String(args[key])}.`);
      }
    }
    this.inputDim = args.inputDim;
    this.outputDim = args.outputDim;
    this.initializer = args.embeddingsInitializer ?? tf.initializers.randomNormal({ mean: 0, stddev: 0.02 });
  }

  override build(): void {
    this.table = this.addWeight('embeddings', [this.inputDim, this.outputDim], 'float32', this.initializer);
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return [...singleShape(inputShape), this.outputDim];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const ids = tf.cast(Array.isArray(inputs) ? inputs[0]! : inputs, 'int32');
      if (tf.engine().state.gradientDepth === 0) return tf.gather(this.table!.read(), ids);
      return ops.dense(oneHotRows(ids.reshape([-1]) as tf.Tensor1D, this.inputDim), this.table!.read() as tf.Tensor2D)
        .reshape([...ids.shape, this.outputDim]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inputDim: this.inputDim, outputDim: this.outputDim };
  }
}
tf.serialization.registerClass(TokenEmbedding);

/** Arguments of {@link LayerNorm}. */
export interface LayerNormArgs {
  /** Added to the variance. Default 1e-5, as PyTorch's LayerNorm. */
  epsilon?: number;
  name?: string;
}

/**
 * Layer normalisation over the last axis, `[..., D] → [..., D]`:
 * `(x − mean) / √(var + ε) · gamma + beta`, with `gamma` (ones) and `beta` (zeros) `[D]`, through
 * the library's `ops.layerNorm`.
 */
export class LayerNorm extends tf.layers.Layer {
  static className = 'LayerNorm';
  readonly epsilon: number;
  private gamma: tf.LayerVariable | null = null;
  private beta: tf.LayerVariable | null = null;

  constructor(args: LayerNormArgs = {}) {
    super({ name: args.name });
    this.epsilon = args.epsilon ?? 1e-5;
    if (!(this.epsilon > 0)) throw new Error(`LayerNorm: argument 'epsilon' must be > 0; received ${this.epsilon}.`);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = singleShape(inputShape);
    const D = shape[shape.length - 1];
    if (D == null) throw new Error(`LayerNorm expects a known last axis. Received: [${shape.join(', ')}].`);
    this.gamma = this.addWeight('gamma', [D], 'float32', tf.initializers.ones());
    this.beta = this.addWeight('beta', [D], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      return ops.layerNorm(x, this.gamma!.read() as tf.Tensor1D, this.beta!.read() as tf.Tensor1D, { epsilon: this.epsilon });
    });
  }

  /**
   * A residual add and this norm, `[x + residual, norm(x + residual)]`, through the library's
   * `ops.addLayerNorm`: one launch where no gradient is recorded (the {@link Decoder}'s steps).
   */
  addAndApply(x: tf.Tensor3D, residual: tf.Tensor3D): [tf.Tensor3D, tf.Tensor3D] {
    return ops.addLayerNorm(x, residual, this.gamma!.read() as tf.Tensor1D, this.beta!.read() as tf.Tensor1D, { epsilon: this.epsilon });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon };
  }
}
tf.serialization.registerClass(LayerNorm);

/** Arguments of {@link Projection}. */
export interface ProjectionArgs {
  /** N, the output width. */
  units: number;
  /** `'gelu'` (erf form, as tfjs-layers' and PyTorch's default) or `'linear'`. Default `'linear'`. */
  activation?: 'gelu' | 'linear';
  /** Which implementation `ops.dense` runs. Default `'auto'`. */
  implementation?: Implementation;
  name?: string;
}

/**
 * Keras's `Dense` through the library's `ops.dense`, `[..., D] → [..., N]`: `act(x·kernel + bias)`,
 * `kernel` `[D, N]` (Glorot uniform) and `bias` `[N]` (zeros). tfjs's own matMul picks a program
 * by shape that was 4–60× slower on SwiftShader, most at a decode step's single row.
 */
export class Projection extends tf.layers.Layer {
  static className = 'Projection';
  readonly units: number;
  readonly activation: 'gelu' | 'linear';
  readonly implementation: Implementation;
  private kernel: tf.LayerVariable | null = null;
  private bias: tf.LayerVariable | null = null;

  constructor(args: ProjectionArgs) {
    super({ name: args.name });
    this.units = args.units;
    if (!(Number.isInteger(this.units) && this.units > 0)) {
      throw new Error(`Projection: argument 'units' must be a positive integer; received ${String(args.units)}.`);
    }
    this.activation = args.activation ?? 'linear';
    if (this.activation !== 'gelu' && this.activation !== 'linear') {
      throw new Error(`Projection: argument 'activation' must be 'gelu' or 'linear'; received ${String(args.activation)}.`);
    }
    this.implementation = args.implementation ?? 'auto';
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = singleShape(inputShape);
    const D = shape[shape.length - 1];
    if (D == null) throw new Error(`Projection expects a known last axis. Received: [${shape.join(', ')}].`);
    this.kernel = this.addWeight('kernel', [D, this.units], 'float32', tf.initializers.glorotUniform({}));
    this.bias = this.addWeight('bias', [this.units], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    const shape = singleShape(inputShape);
    return [...shape.slice(0, -1), this.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      return ops.dense(x, this.kernel!.read() as tf.Tensor2D, {
        bias: this.bias!.read() as tf.Tensor1D, activation: this.activation, implementation: this.implementation,
      });
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), units: this.units, activation: this.activation, implementation: this.implementation };
  }
}
tf.serialization.registerClass(Projection);

/**
 * `x [B, T, D] + p [T, D]`, p's gradient Σ_b dy[b] formed as the product 1·dy by `ops.dense`:
 * tfjs reduces a broadcast's gradient with a workgroup per output, slow on SwiftShader.
 */
const addRows = tf.customGrad((x, p) => {
  const [B, T, D] = (x as tf.Tensor3D).shape;
  return {
    value: tf.add(x as tf.Tensor, p as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => [dy, ops.dense(tf.ones([1, B]), dy.reshape([B, T * D]) as tf.Tensor2D).reshape([T, D])],
  };
}) as (x: tf.Tensor3D, p: tf.Tensor2D) => tf.Tensor3D;

/** Arguments of {@link PositionalEmbedding}. */
export interface PositionalEmbeddingArgs {
  /** The longest sequence the layer accepts: its table has one row per position. */
  maxLength: number;
  /** The table's initial values. Default N(0, 0.02²), as GPT-2's. */
  embeddingsInitializer?: ReturnType<typeof tf.initializers.zeros>;
  name?: string;
}

/**
 * A learned absolute positional embedding: `[B, T, D] → [B, T, D]`, `y[:, t] = x[:, t] + P[t]`
 * with a table `P [maxLength, D]`. For decoding, {@link PositionalEmbedding.at} adds one row.
 */
export class PositionalEmbedding extends tf.layers.Layer {
  static className = 'PositionalEmbedding';
  readonly maxLength: number;
  private readonly initializer: ReturnType<typeof tf.initializers.zeros>;
  private table: tf.LayerVariable | null = null;

  constructor(args: PositionalEmbeddingArgs) {
    super({ name: args.name });
    if (!Number.isInteger(args.maxLength) || args.maxLength < 1) {
      throw new Error(`PositionalEmbedding: argument 'maxLength' must be a positive integer; received ${String(args.maxLength)}.`);
    }
    this.maxLength = args.maxLength;
    this.initializer = args.embeddingsInitializer ?? tf.initializers.randomNormal({ mean: 0, stddev: 0.02 });
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = singleShape(inputShape);
    const D = shape[shape.length - 1];
    if (shape.length !== 3 || D == null) {
      throw new Error(`PositionalEmbedding expects input of shape [B, T, D] with a known D. Received: [${shape.join(', ')}].`);
    }
    this.table = this.addWeight('embeddings', [this.maxLength, D], 'float32', this.initializer);
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      const [, T, D] = x.shape;
      if (T > this.maxLength) {
        throw new Error(`PositionalEmbedding: the sequence has ${T} tokens, more than maxLength = ${this.maxLength}.`);
      }
      return addRows(x, this.table!.read().slice([0, 0], [T, D]) as tf.Tensor2D);
    });
  }

  /**
   * Per-token positions: `x [B, T, D]` and `positions [B, T]` (int32, each in 0…maxLength − 1)
   * → `x + P[positions]`. Packed rows restart their positions at every document
   * ({@link segmentPositions}). The rows are picked as `oneHot(positions)·P`, whose gradient is
   * one matMul, as {@link TokenEmbedding}'s.
   *
   * @example
   * ```ts
   * const pe = model.getLayer('positionalEmbedding') as PositionalEmbedding;
   * const y = pe.atPositions(x, segmentPositions(segmentIds));  // x [B, T, D], segmentIds [B, T]
   * ```
   */
  atPositions(x: tf.Tensor3D, positions: tf.Tensor2D): tf.Tensor3D {
    const [B, T, D] = x.shape;
    if (positions.dtype !== 'int32' || positions.rank !== 2 || positions.shape[0] !== B || positions.shape[1] !== T) {
      throw new Error(`PositionalEmbedding.atPositions: argument 'positions' must be an int32 tensor [B, T] = [${B}, ${T}]; ` +
        `received ${positions.dtype} [${positions.shape.join(', ')}].`);
    }
    return tf.tidy(() => {
      const oneHot = oneHotRows(positions.reshape([-1]) as tf.Tensor1D, this.maxLength);
      return tf.add(x, ops.dense(oneHot, this.table!.read() as tf.Tensor2D).reshape([B, T, D])) as tf.Tensor3D;
    });
  }

  /**
   * Decoding: `positions [B, T]` (int32, each in 0…maxLength − 1) → the table's rows
   * `P[positions]` `[B, T, D]`, picked by a gather, whose cost does not grow with the table
   * (`atPositions`' one-hot matMul does, which pays off only for its gradient). The
   * {@link Decoder} adds them to the tokens' embeddings in the first norm's launch.
   */
  rowsAt(positions: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.table!.read(), positions) as tf.Tensor3D;
  }

  /** One token: `x [B, 1, D]` at `position` → `x + P[position]`. */
  at(position: number, x: tf.Tensor3D): tf.Tensor3D {
    if (!Number.isInteger(position) || position < 0 || position >= this.maxLength) {
      throw new Error(`PositionalEmbedding.at: position must be an integer in [0, ${this.maxLength}); received ${position}.`);
    }
    return tf.tidy(() => tf.add(x, this.table!.read().slice([position, 0], [1, x.shape[2]])) as tf.Tensor3D);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), maxLength: this.maxLength };
  }
}
tf.serialization.registerClass(PositionalEmbedding);

// ───────────────────────────── the model ─────────────────────────────

/** The mixers a model can use: the library's (its registry, `mixers`), and `softmax`, the plain-attention baseline. */
export const MIXERS: readonly string[] = [...libraryMixers.map((m) => m.name), 'softmax'];
/** A name in {@link MIXERS}. */
export type MixerName = string;

/** Arguments of {@link buildModel}. */
export interface CharLMConfig {
  /** The sequence mixer of every block. */
  mixer: MixerName;
  /** Vocabulary size V. */
  vocab: number;
  /** The longest sequence (the positional table's length), in tokens. */
  context: number;
  /** Model width D. */
  width: number;
  /** Number of transformer blocks. */
  blocks: number;
  /** Attention heads (attention-like mixers only); D must be a multiple. Default 4. */
  heads?: number;
  /** The MLP's hidden width is mlpRatio·D. Default 4. */
  mlpRatio?: number;
  /**
   * The mixers' `implementation` (default `'auto'`: WGSL kernels on webgpu, the tfjs-ops
   * reference elsewhere). `softmax` always runs the reference, whatever this says.
   */
  implementation?: Implementation;
  /**
   * More arguments of the mixer layer, over the ones chosen here: e.g. `{ decode: 'recurrent' }`
   * for `expressiveAttention`'s fixed-size decode state, or `{ layout }` for `blockSparse`
   * (default layout: 8 blocks per context, as BlockSparse's `blockArgs` makes it). Default none.
   */
  mixerArgs?: Record<string, unknown>;
}

/** Layer names: the decoder finds the layers by them, so they are part of the saved format. */
const NAMES = {
  tokens: 'tokens',
  tokenEmbedding: 'tokenEmbedding',
  positionalEmbedding: 'positionalEmbedding',
  norm1: (i: number) => `block${i}_norm1`,
  mixer: (i: number) => `block${i}_mixer`,
  residual1: (i: number) => `block${i}_residual1`,
  norm2: (i: number) => `block${i}_norm2`,
  mlpUp: (i: number) => `block${i}_mlpUp`,
  mlpDown: (i: number) => `block${i}_mlpDown`,
  residual2: (i: number) => `block${i}_residual2`,
  finalNorm: 'finalNorm',
  head: 'head',
};

function mixerLayer(c: Required<CharLMConfig>, name: string): tf.layers.Layer {
  // plain composed softmax attention (matMul, masked softmax, matMul): the tiled layer's reference
  const softmax = c.mixer === 'softmax';
  const m = mixerNamed(softmax ? 'flashStyleTiledAttention' : c.mixer, 'buildModel');
  // the layer checks the names and values of what mixerArgs adds
  return m.layer({
    ...m.blockArgs({ numHeads: c.heads, context: c.context }), implementation: c.implementation, name, ...c.mixerArgs,
    ...(softmax ? { implementation: 'reference' } : {}),
  });
}

function resolveConfig(config: CharLMConfig): Required<CharLMConfig> {
  const c = { heads: 4, mlpRatio: 4, implementation: 'auto' as Implementation, ...config, mixerArgs: config.mixerArgs ?? {} };
  if (!MIXERS.includes(c.mixer)) {
    throw new Error(`buildModel: argument 'mixer' must be one of ${MIXERS.join(', ')}; received ${String(c.mixer)}.`);
  }
  for (const key of ['vocab', 'context', 'width', 'blocks', 'heads', 'mlpRatio'] as const) {
    if (!Number.isInteger(c[key]) || c[key] < 1) {
      throw new Error(`buildModel: argument '${key}' must be a positive integer; received ${String(c[key])}.`);
    }
  }
  if (c.width % c.heads !== 0) {
    throw new Error(`buildModel: width = ${c.width} must be a multiple of heads = ${c.heads}.`);
  }
  return c;
}

/**
 * A GPT-style character model, tokens `[B, T]` (int32, T ≤ context) → logits `[B, T, V]`:
 * ```
 * x = tokenEmbedding(tokens) + positionalEmbedding          [B, T, D]
 * repeat `blocks` times:
 *   x = x + mixer(LayerNorm(x))                             pre-norm, as GPT-2
 *   x = x + Dense_D(gelu(Dense_{mlpRatio·D}(LayerNorm(x))))
 * logits = Dense_V(LayerNorm(x))
 * ```
 * Each Dense is a {@link Projection}, Keras's Dense through the library's `ops.dense`. The
 * layers are named (`block0_mixer`, …) so that {@link Decoder} finds them in a reloaded model. Weights are drawn with `Math.random` (tfjs's default): wrap the call in
 * {@link withSeededRandom} to make them reproducible.
 */
export function buildModel(config: CharLMConfig): tf.LayersModel {
  const c = resolveConfig(config);
  const D = c.width;
  const tokens = tf.input({ shape: [null], dtype: 'int32', name: NAMES.tokens });
  let x = new TokenEmbedding({ inputDim: c.vocab, outputDim: D, name: NAMES.tokenEmbedding }).apply(tokens) as tf.SymbolicTensor;
  x = new PositionalEmbedding({ maxLength: c.context, name: NAMES.positionalEmbedding }).apply(x) as tf.SymbolicTensor;
  for (let i = 0; i < c.blocks; i++) {
    let h = new LayerNorm({ name: NAMES.norm1(i) }).apply(x) as tf.SymbolicTensor;
    h = mixerLayer(c, NAMES.mixer(i)).apply(h) as tf.SymbolicTensor;
    x = tf.layers.add({ name: NAMES.residual1(i) }).apply([x, h]) as tf.SymbolicTensor;
    h = new LayerNorm({ name: NAMES.norm2(i) }).apply(x) as tf.SymbolicTensor;
    h = new Projection({ units: c.mlpRatio * D, activation: 'gelu', implementation: c.implementation, name: NAMES.mlpUp(i) })
      .apply(h) as tf.SymbolicTensor;
    h = new Projection({ units: D, implementation: c.implementation, name: NAMES.mlpDown(i) }).apply(h) as tf.SymbolicTensor;
    x = tf.layers.add({ name: NAMES.residual2(i) }).apply([x, h]) as tf.SymbolicTensor;
  }
  x = new LayerNorm({ name: NAMES.finalNorm }).apply(x) as tf.SymbolicTensor;
  const logits = new Projection({ units: c.vocab, implementation: c.implementation, name: NAMES.head }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: tokens, outputs: logits, name: `charLM_${c.mixer}` });
}

/** Number of scalar weights in `model`. */
export function countParameters(model: tf.LayersModel): number {
  return model.weights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}

/**
 * Mean next-token cross-entropy (nats) of `model` on `x [B, T]` with targets `y [B, T]`, both
 * int32. `training` is passed to the layers (none of this model's behave differently).
 */
export function lossOf(model: tf.LayersModel, x: tf.Tensor2D, y: tf.Tensor2D, training = false): tf.Scalar {
  return tf.tidy(() => {
    const logits = model.apply(x, { training }) as tf.Tensor3D;
    return tf.losses.softmaxCrossEntropy(tf.oneHot(y, logits.shape[2]), logits) as tf.Scalar;
  });
}

// ───────────────────────────── packed sequences ─────────────────────────────

/** The layers of a {@link buildModel} model, found by their names. */
interface ModelParts {
  tokenEmbedding: tf.layers.Layer;
  positionalEmbedding: PositionalEmbedding;
  blocks: { norm1: LayerNorm; mixer: tf.layers.Layer; norm2: LayerNorm; mlpUp: tf.layers.Layer; mlpDown: tf.layers.Layer }[];
  finalNorm: LayerNorm;
  head: tf.layers.Layer;
}

/** Finds the layers of a {@link buildModel} model (built or reloaded) by name; `who` names the caller in errors. */
function modelParts(model: tf.LayersModel, who: string): ModelParts {
  const get = (name: string) => {
    try {
      return model.getLayer(name);
    } catch {
      throw new Error(`${who}: the model has no layer '${name}'; use a model made by buildModel.`);
    }
  };
  const positionalEmbedding = get(NAMES.positionalEmbedding);
  if (!(positionalEmbedding instanceof PositionalEmbedding)) {
    throw new Error(`${who}: '${NAMES.positionalEmbedding}' is not a PositionalEmbedding.`);
  }
  const norm = (name: string) => {
    const layer = get(name);
    if (!(layer instanceof LayerNorm)) throw new Error(`${who}: '${name}' is not a LayerNorm.`);
    return layer;
  };
  const count = model.layers.filter((l) => /^block\d+_mixer$/.test(l.name)).length;
  const blocks = Array.from({ length: count }, (_, i) => ({
    norm1: norm(NAMES.norm1(i)), mixer: get(NAMES.mixer(i)), norm2: norm(NAMES.norm2(i)), mlpUp: get(NAMES.mlpUp(i)), mlpDown: get(NAMES.mlpDown(i)),
  }));
  return { tokenEmbedding: get(NAMES.tokenEmbedding), positionalEmbedding, blocks, finalNorm: norm(NAMES.finalNorm), head: get(NAMES.head) };
}

/** The mixers that take `apply(x, { segmentIds })`: the attention layers. */
export const PACKED_MIXERS: readonly MixerName[] = [...libraryMixers.filter((m) => m.segments).map((m) => m.name), 'softmax'];

/**
 * Positions that restart at every segment: `segmentIds [B, T]` (int32, each segment one
 * contiguous run, as packing makes them) → `[B, T]` int32, position t = the number of tokens
 * before t with t's id.
 *
 * @example
 * ```ts
 * segmentPositions(tf.tensor2d([[0, 0, 0, 1, 1, 2]], [1, 6], 'int32')).print();  // [[0, 1, 2, 0, 1, 0]]
 * ```
 */
export function segmentPositions(segmentIds: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const T = segmentIds.shape[1];
    const same = tf.equal(segmentIds.expandDims(2), segmentIds.expandDims(1));
    // earlier[t, s] = s < t
    const earlier = tf.greater(tf.range(0, T, 1, 'int32').expandDims(1), tf.range(0, T, 1, 'int32').expandDims(0));
    return tf.sum(tf.cast(tf.logicalAnd(same, earlier), 'int32'), 2) as tf.Tensor2D;
  });
}

/**
 * Logits `[B, T, V]` of packed rows: `x [B, T]` (int32 tokens) holding several documents back
 * to back, told apart by `segmentIds [B, T]` (int32, one contiguous run per document). Runs the
 * model's layers as its forward does, except that positions restart at each document and every
 * mixer gets `apply(h, { segmentIds })`, so no token sees another document: each document's
 * logits are those of the document run alone. `model.apply` cannot pass these per-batch
 * arguments to its layers, hence this function. Only the attention mixers take segment ids
 * ({@link PACKED_MIXERS}); the others (causalGeneration, selectiveSSM, aaren, …) carry a state
 * along the row and are refused.
 *
 * @example
 * ```ts
 * const model = buildModel({ mixer: 'flashStyleTiledAttention', vocab: 65, context: 8, width: 16, blocks: 1 });
 * const x = tf.tensor2d([[5, 6, 7, 8, 9, 10, 11, 12]], [1, 8], 'int32');
 * const segmentIds = tf.tensor2d([[0, 0, 0, 1, 1, 1, 1, 2]], [1, 8], 'int32');
 * const logits = packedLogits(model, x, segmentIds);  // [1, 8, 65]
 * ```
 */
export function packedLogits(model: tf.LayersModel, x: tf.Tensor2D, segmentIds: tf.Tensor2D, training = false): tf.Tensor3D {
  const parts = modelParts(model, 'packedLogits');
  for (const { mixer } of parts.blocks) {
    if (!libraryMixers.some((m) => m.segments && m.className === mixer.getClassName())) {
      throw new Error(`packedLogits: layer '${mixer.name}' is ${mixer.getClassName()}, which takes no segmentIds: it would carry ` +
        `its state from one document into the next. Packed sequences need an attention mixer (${PACKED_MIXERS.join(', ')}).`);
    }
  }
  const [B, T] = x.shape;
  if (segmentIds.dtype !== 'int32' || segmentIds.rank !== 2 || segmentIds.shape[0] !== B || segmentIds.shape[1] !== T) {
    throw new Error(`packedLogits: argument 'segmentIds' must be an int32 tensor [B, T] = [${B}, ${T}]; ` +
      `received ${segmentIds.dtype} [${segmentIds.shape.join(', ')}].`);
  }
  if (T > parts.positionalEmbedding.maxLength) {
    throw new Error(`packedLogits: the rows have ${T} tokens, more than the model's context ${parts.positionalEmbedding.maxLength}.`);
  }
  return tf.tidy(() => {
    let h = parts.positionalEmbedding.atPositions(parts.tokenEmbedding.apply(x) as tf.Tensor3D, segmentPositions(segmentIds));
    for (const b of parts.blocks) {
      h = tf.add(h, b.mixer.apply(b.norm1.apply(h), { segmentIds, training }) as tf.Tensor3D);
      h = tf.add(h, b.mlpDown.apply(b.mlpUp.apply(b.norm2.apply(h))) as tf.Tensor3D);
    }
    return parts.head.apply(parts.finalNorm.apply(h)) as tf.Tensor3D;
  });
}

/**
 * Mean next-token cross-entropy (nats) of packed rows: `x`, `segmentIds` as {@link packedLogits}
 * takes them, and targets `y [B, T]` (int32), −1 where a token has no target (a document's
 * last token, whose successor in the row is another document's first; padding). The mean is
 * over the tokens with a target.
 *
 * @example
 * ```ts
 * const y = tf.tensor2d([[6, 7, -1, 9, 10, 11, 12, -1]], [1, 8], 'int32');  // x, segmentIds as for packedLogits
 * const loss = packedLossOf(model, x, y, segmentIds);  // mean over the 6 tokens with a target
 * ```
 */
export function packedLossOf(
  model: tf.LayersModel, x: tf.Tensor2D, y: tf.Tensor2D, segmentIds: tf.Tensor2D, training = false,
): tf.Scalar {
  return tf.tidy(() => {
    const logits = packedLogits(model, x, segmentIds, training);
    const weights = tf.cast(tf.greaterEqual(y, 0), 'float32');
    // oneHot(−1) is a zero row; its weight is 0 either way
    return tf.losses.softmaxCrossEntropy(tf.oneHot(y, logits.shape[2]), logits, weights) as tf.Scalar;
  });
}

// ───────────────────────────── decoding ─────────────────────────────

/** What a decoding mixer offers: every layer of tfjs-mixers has these. */
interface Stepper {
  initState(batch: number, options?: KVCacheOptions): tf.TensorContainer;
  step(x: tf.Tensor2D, state: tf.TensorContainer): [tf.Tensor2D, tf.TensorContainer];
  prefill(x: tf.Tensor3D, state: tf.TensorContainer | undefined, options: PrefillOptions): [tf.Tensor3D, tf.TensorContainer];
}

function isStepper(layer: tf.layers.Layer): layer is tf.layers.Layer & Stepper {
  const l = layer as unknown as Partial<Stepper>;
  return typeof l.initState === 'function' && typeof l.step === 'function' && typeof l.prefill === 'function';
}

/**
 * Whether a mixer decodes with a key/value cache, which `initState(B, { capacity })`
 * preallocates: the attention layers, but ExpressiveAttention with `decode: 'recurrent'`.
 */
export function hasKVCache(layer: tf.layers.Layer): boolean {
  return layer instanceof FlashStyleTiledAttention || layer instanceof BlockSparse ||
    (layer instanceof ExpressiveAttention && layer.decode === 'cache');
}

type Block = Omit<ModelParts['blocks'][number], 'mixer'> & { mixer: tf.layers.Layer & Stepper };

/** Disposes the tensors of `old` that `next` does not hold (a step may pass one through, or update a state in place). */
function disposeReplaced(old: tf.TensorContainer, next: tf.TensorContainer): void {
  const kept = new Set(collectTensors(next).map((t) => t.id));
  tf.dispose(collectTensors(old).filter((t) => !kept.has(t.id)));
}

function collectTensors(c: tf.TensorContainer): tf.Tensor[] {
  if (c instanceof tf.Tensor) return [c];
  if (c == null || typeof c !== 'object') return [];
  return Object.values(c as Record<string, tf.TensorContainer>).flatMap(collectTensors);
}

/** Options of {@link Decoder}. */
export interface DecoderOptions {
  /**
   * Preallocate each key/value cache ({@link hasKVCache}) for this many tokens a row: steps and
   * prefills then write the new keys and values in place, and a step's cost does not grow with
   * the cache but for the attention's read. Default: caches that grow by concatenation (every
   * step copies them). The other mixers' states have a fixed size and ignore it.
   */
  capacity?: number;
}

/**
 * Inference of a {@link buildModel} model through the mixers' decode states, for a batch of
 * sequences each at its own position. {@link Decoder.prefill} runs a batch of prompts of
 * different lengths in parallel (every mixer's `prefill` with the prompts' `lengths`; the
 * kernels on webgpu), {@link Decoder.next} one more token of every row (the mixers' `step`):
 * the embeddings, every block (LayerNorms, MLP, residuals, and the mixer, which carries its
 * state) and the head, so that the logits of row b at its position t equal the full forward's
 * of that row alone at t. Works on a freshly built or a reloaded (`tf.loadLayersModel`) model.
 *
 * @example
 * ```ts
 * const decoder = new Decoder(model, 2, { capacity: 64 });
 * let logits = decoder.prefill([vocab.encode('ROMEO:'), vocab.encode('O')]);  // [2, V]
 * logits.dispose();
 * logits = decoder.next([0, 1]);  // row 0 at position 6, row 1 at position 1
 * logits.dispose();
 * decoder.dispose();
 * ```
 */
export class Decoder {
  readonly batch: number;
  /** The positional table's length: a row can hold at most this many tokens. */
  readonly maxLength: number;
  /** The blocks' mixers, first block first; the decoder holds one state for each. */
  readonly mixers: ReadonlyArray<tf.layers.Layer>;
  private readonly tokenEmbedding: tf.layers.Layer;
  private readonly positionalEmbedding: PositionalEmbedding;
  private readonly blocks: Block[] = [];
  private readonly finalNorm: LayerNorm;
  private readonly head: tf.layers.Layer;
  private states: tf.TensorContainer[];
  /** Each row's position, as its mixers' states record it. */
  private rows: number[];
  /** Per block: whether its state is a preallocated key/value cache, which a prefill must write into. */
  private readonly preallocated: boolean[];

  constructor(model: tf.LayersModel, batch = 1, options: DecoderOptions = {}) {
    const parts = modelParts(model, 'Decoder');
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`Decoder: argument 'batch' must be a positive integer; received ${String(batch)}.`);
    const { capacity } = options;
    if (capacity !== undefined && !(Number.isInteger(capacity) && capacity >= 1)) {
      throw new Error(`Decoder: option 'capacity' must be a positive integer; received ${String(capacity)}.`);
    }
    this.batch = batch;
    this.tokenEmbedding = parts.tokenEmbedding;
    this.positionalEmbedding = parts.positionalEmbedding;
    this.maxLength = parts.positionalEmbedding.maxLength;
    for (const block of parts.blocks) {
      const { mixer } = block;
      if (!isStepper(mixer)) throw new Error(`Decoder: layer '${mixer.name}' (${mixer.getClassName()}) has no initState/step/prefill.`);
      this.blocks.push({ ...block, mixer });
    }
    this.mixers = this.blocks.map((b) => b.mixer);
    this.finalNorm = parts.finalNorm;
    this.head = parts.head;
    this.preallocated = this.blocks.map((b) => capacity !== undefined && hasKVCache(b.mixer));
    this.states = this.blocks.map((b, i) => b.mixer.initState(batch, this.preallocated[i] ? { capacity } : undefined));
    this.rows = new Array<number>(batch).fill(0);
  }

  /** The tokens each row has consumed (the position of its next one). */
  get positions(): number[] {
    return [...this.rows];
  }

  /** The furthest row's position: with one row, the tokens decoded so far. */
  get position(): number {
    return Math.max(...this.rows);
  }

  /**
   * Runs a prompt for every row, in parallel, and returns the logits `[B, V]` for the token
   * after each row's last one (the caller disposes them). Prompts may differ in length (at
   * least one token each); every row continues from its own position, 0 for a new decoder.
   * Throws when a row would pass `maxLength` tokens.
   */
  prefill(prompts: ReadonlyArray<ArrayLike<number>>): tf.Tensor2D {
    if (prompts.length !== this.batch) throw new Error(`Decoder.prefill: expected ${this.batch} prompts; received ${prompts.length}.`);
    const lengths = prompts.map((p) => p.length);
    const b = lengths.findIndex((n, r) => n < 1 || this.rows[r]! + n > this.maxLength);
    if (b >= 0) {
      throw new Error(lengths[b]! < 1
        ? `Decoder.prefill: prompt ${b} is empty; each row needs at least one token.`
        : `Decoder.prefill: row ${b}, at position ${this.rows[b]}, cannot take ${lengths[b]} more tokens: the model's positional ` +
          `table holds ${this.maxLength} positions.`);
    }
    const T = Math.max(...lengths);
    // right-padded with token 0, which the mixers' prefill leaves out of their states
    const ids = new Int32Array(this.batch * T);
    prompts.forEach((p, r) => ids.set(Array.from(p), r * T));
    return this.run(ids, T, lengths);
  }

  /**
   * Decodes the next token of each of the `batch` rows, each at its own position, and returns
   * the logits `[B, V]` for the token after it (the caller disposes them). Throws once a row
   * holds `maxLength` tokens.
   */
  next(tokens: ArrayLike<number>): tf.Tensor2D {
    if (tokens.length !== this.batch) throw new Error(`Decoder.next: expected ${this.batch} token ids; received ${tokens.length}.`);
    const full = this.rows.findIndex((p) => p >= this.maxLength);
    if (full >= 0) {
      throw new Error(`Decoder.next: the model's positional table holds ${this.maxLength} positions, all used by row ${full}; ` +
        'start a new Decoder.');
    }
    return this.run(Int32Array.from(tokens), 1, null);
  }

  /**
   * Replaces the decode states by `states` (one per mixer, as its `initState`, `step` or
   * `prefill` makes them, each row at `positions[b]`), which the decoder then owns; it disposes
   * its own. For resuming a state kept elsewhere, or a benchmark that builds one at a long
   * position without running the prompt.
   */
  setStates(states: tf.TensorContainer[], positions: readonly number[]): void {
    if (states.length !== this.blocks.length || positions.length !== this.batch ||
      !positions.every((p) => Number.isInteger(p) && p >= 0 && p <= this.maxLength)) {
      throw new Error(`Decoder.setStates: expected ${this.blocks.length} states and ${this.batch} positions in 0…${this.maxLength}; ` +
        `received ${states.length} and [${positions.join(', ')}].`);
    }
    this.states.forEach((old, i) => disposeReplaced(old, states[i]!));
    this.states = [...states];
    this.rows = [...positions];
  }

  /**
   * `ids [B·T]` through the model from the rows' positions: a prefill with `lengths` (row b's
   * first lengths[b] tokens real), or a step (T = 1, `lengths` null). Returns the logits after
   * each row's last real token and keeps the new states.
   */
  private run(ids: Int32Array, T: number, lengths: number[] | null): tf.Tensor2D {
    const B = this.batch;
    const [logits, states] = tf.tidy((): [tf.Tensor2D, tf.TensorContainer[]] => {
      // every non-mixer layer runs on [B, T, ·]: the LayerNorms were built for rank 3
      const tokens = tf.tensor2d(ids, [B, T], 'int32');
      // row b's token t sits at its position + t (a padded one is clamped into the table)
      const at = Int32Array.from({ length: B * T }, (_, i) => Math.min(this.rows[Math.floor(i / T)]! + (i % T), this.maxLength - 1));
      const embedded = this.tokenEmbedding.apply(tokens) as tf.Tensor3D;
      const D = embedded.shape[2];
      // a prompt from position 0 needs no incoming state (ExpressiveAttention's recurrent prefill
      // would read the zero sums at the cost of a second attention), but for a preallocated cache
      const fresh = this.rows.every((p) => p === 0);
      // each residual add and the norm after it are one launch (addAndApply), the positions' the
      // first: h is the next mixer's input
      let [x, h] = this.blocks[0]!.norm1.addAndApply(embedded, this.positionalEmbedding.rowsAt(this.positionsAt(at, T, lengths)));
      const states = this.blocks.map((b, i) => {
        let y: tf.Tensor3D;
        let state: tf.TensorContainer;
        if (lengths) {
          [y, state] = b.mixer.prefill(h, fresh && !this.preallocated[i] ? undefined : this.states[i]!, { lengths });
        } else {
          const [y1, s] = b.mixer.step(h.reshape([B, D]) as tf.Tensor2D, this.states[i]!);
          [y, state] = [y1.reshape([B, 1, D]) as tf.Tensor3D, s];
        }
        let normed: tf.Tensor3D;
        [x, normed] = b.norm2.addAndApply(x, y);
        const next = i + 1 < this.blocks.length ? this.blocks[i + 1]!.norm1 : this.finalNorm;
        [x, h] = next.addAndApply(x, b.mlpDown.apply(b.mlpUp.apply(normed)) as tf.Tensor3D);
        return state;
      });
      // each row's last real token: only it needs the head (h is the final norm's, row by row)
      // (a gather over the flattened rows: tfjs-wasm's batched gather is wrong for B > 1, tfjs#8658)
      const last = lengths
        ? tf.gather(h.reshape([B * T, D]), tf.tensor1d(lengths.map((n, b) => b * T + n - 1), 'int32')).reshape([B, 1, D]) as tf.Tensor3D
        : h;
      return [(this.head.apply(last) as tf.Tensor3D).reshape([B, -1]) as tf.Tensor2D, states];
    });
    this.states.forEach((old, i) => disposeReplaced(old, states[i]!));
    this.states = states;
    this.rows = this.rows.map((p, b) => p + (lengths ? lengths[b]! : 1));
    return logits;
  }

  /**
   * The table rows `[B, T]` the tokens of a call read: `at`, or, for a step, each row's position
   * where the first mixer's state keeps it on the GPU (the library's states all do), since a
   * tensor made from `at` would be uploaded at every token.
   */
  private positionsAt(at: Int32Array, T: number, lengths: number[] | null): tf.Tensor2D {
    const kept = (this.states[0] as { positions?: unknown }).positions;
    if (lengths === null && kept instanceof tf.Tensor && kept.dtype === 'int32') return kept.reshape([this.batch, 1]);
    return tf.tensor2d(at, [this.batch, T], 'int32');
  }

  /** Disposes the mixers' decode states. */
  dispose(): void {
    tf.dispose(this.states);
    this.states = [];
  }
}

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Softmax temperature; 0 picks the most likely token (greedy). Default 1. */
  temperature?: number;
  /** Seed of the sampler. Default 0. */
  seed?: number;
  /** Called (and awaited) with each new token id as soon as it is drawn, e.g. to show it. */
  onToken?: (id: number) => void | Promise<void>;
}

/**
 * Continues `prompt` (token ids, at least one) by `n` tokens, sampled one at a time from the
 * model's next-token distribution through a {@link Decoder}: the prompt runs in one prefill,
 * then each new token costs one decode step, not a forward over the prefix. Returns the n new
 * ids.
 *
 * The learned positions end at the model's context: when the decoder has used them all, it
 * restarts from the last ⌈context/2⌉ tokens (prefilled again), so a long sample always sees at
 * least half a context.
 */
export async function generate(
  model: tf.LayersModel, prompt: ArrayLike<number>, n: number, options: GenerateOptions = {},
): Promise<number[]> {
  if (prompt.length < 1) throw new Error('generate: argument \'prompt\' must hold at least one token.');
  const temperature = options.temperature ?? 1;
  if (!(temperature >= 0)) throw new Error(`generate: option 'temperature' must be ≥ 0; received ${temperature}.`);
  const random = mulberry32(options.seed ?? 0);
  const sequence = Array.from(prompt);
  let decoder = new Decoder(model, 1);
  const keep = Math.ceil(decoder.maxLength / 2);
  let logits: tf.Tensor2D | null = null;
  try {
    logits = decoder.prefill([sequence.slice(-decoder.maxLength)]);
    for (let i = 0; i < n; i++) {
      const next = sample(await logits.data(), temperature, random);
      sequence.push(next);
      await options.onToken?.(next);
      if (i === n - 1) break;
      logits.dispose();
      logits = null;
      if (decoder.position < decoder.maxLength) {
        logits = decoder.next([next]);
      } else {
        decoder.dispose();
        decoder = new Decoder(model, 1);
        logits = decoder.prefill([sequence.slice(-keep)]);
      }
    }
  } finally {
    logits?.dispose();
    decoder.dispose();
  }
  return sequence.slice(prompt.length);
}

/** Options of {@link generateBatch}. */
export interface GenerateBatchOptions {
  /** Softmax temperature; 0 picks the most likely token (greedy). Default 1. */
  temperature?: number;
  /** Seed of the sampler, which draws row 0's token, then row 1's, … each round. Default 0. */
  seed?: number;
  /**
   * `'preallocated'`: the key/value caches hold the longest prompt and the n new tokens from
   * the start and are written in place (one WGSL kernel a step); `'concatenating'`: they grow
   * every step, by a copy. Default `'preallocated'` on the webgpu backend, else
   * `'concatenating'`: elsewhere the in-place write runs its tfjs-ops reference, which copies
   * the whole cache with more ops than a concatenation (measured on cpu: a step of this
   * example's default model took 1.1–1.8× as long, 1 to 4 rows).
   */
  cache?: 'preallocated' | 'concatenating';
  /** Called (and awaited) after each round with its new ids, one per row. */
  onTokens?: (ids: number[]) => void | Promise<void>;
}

/**
 * Continues a batch of prompts of different lengths (token ids, at least one each) by `n`
 * tokens each, in one batch: one {@link Decoder.prefill} of all the prompts (each row's length
 * its own), then n − 1 steps of every row together, each row from its own position. Returns the
 * n new ids of each row. With `temperature: 0` a row's ids are those of generating it alone.
 * Every row must fit the model's context (prompt + n − 1 positions); {@link generate} runs one
 * row past it.
 *
 * @example
 * ```ts
 * const rows = await generateBatch(model, [vocab.encode('ROMEO:'), vocab.encode('O')], 20, { temperature: 0 });
 * rows.map((ids) => vocab.decode(ids));  // two continuations of 20 characters
 * ```
 */
export async function generateBatch(
  model: tf.LayersModel, prompts: ReadonlyArray<ArrayLike<number>>, n: number, options: GenerateBatchOptions = {},
): Promise<number[][]> {
  if (prompts.length < 1 || prompts.some((p) => p.length < 1)) {
    throw new Error('generateBatch: argument \'prompts\' must hold at least one prompt, each of at least one token.');
  }
  if (!Number.isInteger(n) || n < 1) throw new Error(`generateBatch: argument 'n' must be a positive integer; received ${String(n)}.`);
  const temperature = options.temperature ?? 1;
  if (!(temperature >= 0)) throw new Error(`generateBatch: option 'temperature' must be ≥ 0; received ${temperature}.`);
  const cache = options.cache ?? (tf.getBackend() === 'webgpu' ? 'preallocated' : 'concatenating');
  if (cache !== 'preallocated' && cache !== 'concatenating') {
    throw new Error(`generateBatch: option 'cache' must be 'preallocated' or 'concatenating'; received ${String(cache)}.`);
  }
  const random = mulberry32(options.seed ?? 0);
  const longest = Math.max(...prompts.map((p) => p.length));
  // the last new token is drawn, not fed: a row holds its prompt and n − 1 of them
  const decoder = new Decoder(model, prompts.length, cache === 'preallocated' ? { capacity: longest + n - 1 } : {});
  const out = prompts.map((): number[] => []);
  let logits: tf.Tensor2D | null = null;
  try {
    if (longest + n - 1 > decoder.maxLength) {
      throw new Error(`generateBatch: the longest prompt (${longest} tokens) and n = ${n} new tokens need ${longest + n - 1} ` +
        `positions, more than the model's context ${decoder.maxLength}.`);
    }
    logits = decoder.prefill(prompts);
    for (let i = 0; i < n; i++) {
      const data = await logits.data();
      const V = data.length / prompts.length;
      const ids = out.map((row, b) => {
        const id = sample(data.subarray(b * V, (b + 1) * V), temperature, random);
        row.push(id);
        return id;
      });
      await options.onTokens?.(ids);
      if (i === n - 1) break;
      logits.dispose();
      logits = null;
      logits = decoder.next(ids);
    }
  } finally {
    logits?.dispose();
    decoder.dispose();
  }
  return out;
}

/** A token id drawn from softmax(logits / temperature); the argmax for temperature 0. */
export function sample(logits: ArrayLike<number>, temperature: number, random: () => number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  if (temperature === 0) return best;
  const weights = Array.from(logits, (l) => Math.exp((l - logits[best]!) / temperature));
  let r = random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i]!;
    if (r < 0) return i;
  }
  return best;
}

// ───────────────────────────── randomness ─────────────────────────────

/**
 * Runs `fn` with `Math.random` replaced by a generator seeded with `seed`. tfjs's initializers
 * without a seed, and SelectiveSSM's step-size initialisation, draw from `Math.random`, so a
 * model built inside is the same for the same seed.
 */
export function withSeededRandom<T>(seed: number, fn: () => T): T {
  const original = Math.random;
  Math.random = mulberry32(seed);
  try {
    return fn();
  } finally {
    Math.random = original;
  }
}

// ───────────────────────────── file:// saving in Node ─────────────────────────────

/**
 * An IOHandler that writes and reads a model as tfjs-node's `file://` handler does:
 * `<dir>/model.json` (topology and weights manifest) and `<dir>/weights.bin`.
 */
export function fileIO(path: string): tf.io.IOHandler {
  const dir = path.endsWith('model.json') ? dirname(path) : path;
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) throw new Error('fileIO: binary model topologies are not supported.');
      mkdirSync(dir, { recursive: true });
      const weights = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
      const modelJSON: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology!,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        trainingConfig: artifacts.trainingConfig,
        userDefinedMetadata: artifacts.userDefinedMetadata,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
      };
      writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJSON));
      writeFileSync(join(dir, 'weights.bin'), new Uint8Array(weights));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const modelJSON = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = manifest.flatMap((group) => group.weights);
        const buffers = manifest.flatMap((group) => group.paths.map((p) => {
          const bytes = readFileSync(join(dir, p));
          return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
        }));
        return [specs, tf.io.CompositeArrayBuffer.join(buffers)];
      });
    },
  };
}

/**
 * Routes `file://` URLs of `model.save` and `tf.loadLayersModel` to {@link fileIO}, unless a
 * handler already serves them (tfjs-node registers its own). Pure tfjs has none in Node.
 * `model.save('file:///tmp/m')` writes `/tmp/m/model.json`; load `file:///tmp/m/model.json`.
 */
export function registerFileIO(): void {
  // a router answers null for URLs it does not serve, as tfjs's own do (its type omits null)
  const route = ((url: string | string[]) => {
    const u = Array.isArray(url) ? url[0]! : url;
    return u.startsWith('file://') ? fileIO(u.slice('file://'.length)) : null;
  }) as Parameters<typeof tf.io.registerSaveRouter>[0];
  if (tf.io.getSaveHandlers('file:///probe').length === 0) tf.io.registerSaveRouter(route);
  if (tf.io.getLoadHandlers('file:///probe/model.json').length === 0) tf.io.registerLoadRouter(route);
}
