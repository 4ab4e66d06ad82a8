/**
 * The char-lm training loop and what it needs (backend choice, the tiny Shakespeare split,
 * batches, validation), shared by `train.ts` (one model, with a progress bar, a save and a
 * sample) and `experiment.ts` (every mixer over several seeds), so both train the same way.
 *
 * @example
 * ```ts
 * const { gpu } = await setBackend('cpu');
 * const corpus = loadCorpus(defaultDataPath());
 * const model = withSeededRandom(1, () => buildModel({ mixer: 'causalGeneration', vocab: corpus.vocab.size, context: 64, width: 64, blocks: 2 }));
 * const result = await trainModel(model, corpus, { steps: 100, batch: 8, context: 64, lr: 3e-3, clip: 1, seed: 1, evalEvery: 50, evalBatches: 8 });
 * console.log(result.valLoss);
 * gpu?.uninstall();
 * ```
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { installWebGPU, type InstalledWebGPU } from '../../src/node.js';
import { Vocabulary, lossOf, packedLossOf } from './model.js';
import { FlatAdam } from './flat-adam.js';
import { mulberry32 } from '../shared/random.js';

/** The backend {@link setBackend} chose. */
export interface ChosenBackend {
  /** For logs: `'cpu (tfjs-backend-cpu, JavaScript)'`, `'wasm (tfjs-backend-wasm)'` or `'webgpu (<adapter>)'`. */
  name: string;
  /** The installed WebGPU adapter on webgpu, else `null`; uninstall it before exiting. */
  gpu: InstalledWebGPU | null;
}

/** The backends the examples train on. */
export type Backend = 'cpu' | 'wasm' | 'webgpu';

/**
 * Sets tfjs's backend: wasm when `wanted` is `'wasm'`; webgpu when `wanted` is `'webgpu'` or,
 * when `wanted` is `null`, when an adapter is found; else cpu. Throws when wasm or webgpu was
 * asked for and cannot start.
 */
export async function setBackend(wanted: Backend | null): Promise<ChosenBackend> {
  if (wanted === 'wasm') {
    // tfjs-backend-wasm, single-threaded SIMD in Node: the attention references and SelectiveSSM's
    // plain-JS scan run 2–8× faster there than on cpu (docs/backends.md)
    await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error('--backend wasm: the wasm backend could not be initialised.');
    return { name: 'wasm (tfjs-backend-wasm)', gpu: null };
  }
  if (wanted !== 'cpu') {
    // without the webgpu package installWebGPU throws: auto falls back to cpu, --backend webgpu says why
    const gpu = await installWebGPU().catch((error: unknown) => {
      if (wanted === 'webgpu') throw error;
      return null;
    });
    if (gpu) {
      // the backend registers itself only if navigator.gpu exists when it is first imported
      await import('@tensorflow/tfjs-backend-webgpu');
      if (await tf.setBackend('webgpu')) return { name: `webgpu (${gpu.description})`, gpu };
      gpu.uninstall();
    }
    if (wanted === 'webgpu') throw new Error('--backend webgpu: no WebGPU adapter could be initialised; use --backend cpu.');
  }
  await tf.setBackend('cpu');
  return { name: 'cpu (tfjs-backend-cpu, JavaScript)', gpu: null };
}

/** Where tiny Shakespeare lies in this repository: `examples/data/tinyshakespeare.txt`. */
export function defaultDataPath(): string {
  return fileURLToPath(new URL('../data/tinyshakespeare.txt', import.meta.url));
}

/** A text encoded with its own vocabulary and split for training and validation. */
export interface Corpus {
  vocab: Vocabulary;
  /** The first 90 % of the text's token ids. */
  train: Int32Array;
  /** The last 10 %. */
  val: Int32Array;
}

/**
 * Reads the text at `path` and splits it as nanoGPT's `shakespeare_char` does: the vocabulary
 * of the whole text, the first 90 % to train, the rest to validate.
 */
export function loadCorpus(path: string): Corpus {
  const text = readFileSync(path, 'utf8');
  const vocab = Vocabulary.fromText(text);
  const data = vocab.encode(text);
  const split = Math.floor(0.9 * data.length);
  return { vocab, train: data.subarray(0, split), val: data.subarray(split) };
}

/** Input/target batches `[offsets.length, context]` (int32): `data` from each offset, and shifted by one. */
export function batchAt(data: Int32Array, offsets: number[], context: number): [tf.Tensor2D, tf.Tensor2D] {
  const x = new Int32Array(offsets.length * context);
  const y = new Int32Array(offsets.length * context);
  offsets.forEach((o, b) => {
    x.set(data.subarray(o, o + context), b * context);
    y.set(data.subarray(o + 1, o + 1 + context), b * context);
  });
  return [tf.tensor2d(x, [offsets.length, context], 'int32'), tf.tensor2d(y, [offsets.length, context], 'int32')];
}

/** `n` batch offsets drawn by `random`, each leaving room for `context + 1` tokens of `data`. */
export function drawOffsets(random: () => number, n: number, data: Int32Array, context: number): number[] {
  return Array.from({ length: n }, () => Math.floor(random() * (data.length - context - 1)));
}

/** Mean loss over fixed validation batches: the same batches every time, so values compare. */
export async function evaluate(model: tf.LayersModel, batches: number[][], data: Int32Array, context: number): Promise<number> {
  let total = 0;
  for (const offsets of batches) {
    const [x, y] = batchAt(data, offsets, context);
    const loss = lossOf(model, x, y);
    total += (await loss.data())[0]!;
    tf.dispose([x, y, loss]);
  }
  return total / batches.length;
}

// ───────────────────────────── packed sequences ─────────────────────────────

/**
 * The documents of a token stream: each starts at the stream's start or after a blank line (two
 * `newline`s in a row), and runs up to the next document's start. A document keeps its last
 * line's newline and the blank line after it, so that every token is in exactly one document and
 * the model learns where a speech ends. Returns views of `data`.
 *
 * @example
 * ```ts
 * const { vocab, train } = loadCorpus(defaultDataPath());
 * const speeches = splitDocuments(train, vocab.encode('\n')[0]!);  // 'First Citizen:\nBefore we proceed …\n\n', …
 * ```
 */
export function splitDocuments(data: Int32Array, newline: number): Int32Array[] {
  const starts = [0];
  for (let i = 2; i < data.length; i++) {
    if (data[i - 2] === newline && data[i - 1] === newline && data[i] !== newline) starts.push(i);
  }
  return starts.map((start, k) => data.subarray(start, starts[k + 1] ?? data.length));
}

/** Rows of packed documents, made by {@link packDocuments}: flat `[rows · context]` arrays, row-major. */
export interface PackedRows {
  /** Tokens per row, T. */
  context: number;
  /** Number of rows. */
  rows: number;
  /** Token ids; 0 at padding. */
  tokens: Int32Array;
  /**
   * Each token's target: the next token of its document, also where that token opens the next
   * piece of a cut document; −1 at a document's last token and at padding.
   */
  targets: Int32Array;
  /** Segment ids: 0, 1, 2, … for the pieces of a row in order; the padding at a row's end has the next id. */
  segments: Int32Array;
  /** Tokens of each row that are not padding. */
  filled: Int32Array;
}

/**
 * Packs documents into rows of `context` tokens, each row holding whole documents back to back.
 * A document longer than the context is cut into pieces of `context` tokens, and the remainder
 * (shorter than the context) is one more piece, packed like a short document; each piece is a
 * segment of its own, with positions from 0. Pieces go, in the documents' order, into the first
 * of the last `open` rows with room for them, else into a new row; what is left of a row is
 * padding. Every token of every document lies in exactly one row.
 *
 * @example
 * ```ts
 * const rows = packDocuments([Int32Array.of(1, 2, 3), Int32Array.of(4, 5, 6, 7, 8)], 4);
 * // the second document is cut into [4, 5, 6, 7] and [8]; [8] fills the first row
 * // rows.tokens   [1, 2, 3, 8,   4, 5, 6, 7]
 * // rows.targets  [2, 3, -1, -1,  5, 6, 7, 8]   (7's target is 8, across the cut)
 * // rows.segments [0, 0, 0, 1,   0, 0, 0, 0]
 * ```
 */
export function packDocuments(documents: readonly Int32Array[], context: number, open = 16): PackedRows {
  if (!Number.isInteger(context) || context < 1) {
    throw new Error(`packDocuments: argument 'context' must be a positive integer; received ${context}.`);
  }
  type Piece = { doc: Int32Array; start: number; length: number };
  const rows: { pieces: Piece[]; fill: number }[] = [];
  let openRows: typeof rows = [];
  for (const doc of documents) {
    for (let start = 0; start < doc.length; start += context) {
      const piece = { doc, start, length: Math.min(context, doc.length - start) };
      let row = openRows.find((r) => r.fill + piece.length <= context);
      if (!row) {
        row = { pieces: [], fill: 0 };
        rows.push(row);
        openRows.push(row);
        if (openRows.length > open) openRows.shift();
      }
      row.pieces.push(piece);
      row.fill += piece.length;
      if (row.fill === context) openRows = openRows.filter((r) => r !== row);
    }
  }
  const n = rows.length;
  const packed: PackedRows = {
    context, rows: n, tokens: new Int32Array(n * context), targets: new Int32Array(n * context).fill(-1),
    segments: new Int32Array(n * context), filled: new Int32Array(n),
  };
  rows.forEach((row, r) => {
    let t = r * context;
    row.pieces.forEach(({ doc, start, length }, id) => {
      for (let k = 0; k < length; k++, t++) {
        packed.tokens[t] = doc[start + k]!;
        if (start + k + 1 < doc.length) packed.targets[t] = doc[start + k + 1]!;
        packed.segments[t] = id;
      }
    });
    packed.segments.fill(row.pieces.length, t, (r + 1) * context);
    packed.filled[r] = row.fill;
  });
  return packed;
}

/** A training or validation batch: tokens, targets, and segment ids for packed rows (`null` otherwise). */
export interface Batch {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
  segmentIds: tf.Tensor2D | null;
  /** Document tokens in the batch (padding excluded). */
  tokens: number;
}

/**
 * The batch of packed rows `indices` (`[indices.length, context]` int32 each); the caller disposes its tensors.
 *
 * @example
 * ```ts
 * const { x, y, segmentIds } = packedBatch(rows, [0, 5, 9]);
 * const loss = packedLossOf(model, x, y, segmentIds!);
 * ```
 */
export function packedBatch(packed: PackedRows, indices: number[]): Batch {
  const T = packed.context;
  const take = (from: Int32Array) => {
    const out = new Int32Array(indices.length * T);
    indices.forEach((r, b) => out.set(from.subarray(r * T, (r + 1) * T), b * T));
    return tf.tensor2d(out, [indices.length, T], 'int32');
  };
  return {
    x: take(packed.tokens), y: take(packed.targets), segmentIds: take(packed.segments),
    tokens: indices.reduce((n, r) => n + packed.filled[r]!, 0),
  };
}

/** Mean next-token loss of a batch: packed (targets −1 left out) or plain. */
function batchLoss(model: tf.LayersModel, batch: Batch, training: boolean): tf.Scalar {
  return batch.segmentIds
    ? packedLossOf(model, batch.x, batch.y, batch.segmentIds, training)
    : lossOf(model, batch.x, batch.y, training);
}

/**
 * Mean loss over fixed batches of packed rows (lists of row indices), as {@link evaluate} does for offsets.
 *
 * @example
 * ```ts
 * const valLoss = await evaluatePacked(model, [[0, 1], [2, 3]], packDocuments(splitDocuments(val, newline), 64));
 * ```
 */
export async function evaluatePacked(model: tf.LayersModel, batches: number[][], packed: PackedRows): Promise<number> {
  let total = 0;
  for (const indices of batches) {
    const batch = packedBatch(packed, indices);
    const loss = batchLoss(model, batch, false);
    total += (await loss.data())[0]!;
    tf.dispose([batch.x, batch.y, batch.segmentIds!, loss]);
  }
  return total / batches.length;
}

/**
 * Parses `--flag value` options (`strings`) and switches (`switches`, plus `--help`, which prints
 * `help` and exits); an unknown flag is an error naming it.
 */
export function parseFlags(
  argv: string[], strings: readonly string[], switches: readonly string[], help: string,
): Record<string, string | boolean | undefined> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...Object.fromEntries(strings.map((k) => [k, { type: 'string' as const }])),
      ...Object.fromEntries([...switches, 'help'].map((k) => [k, { type: 'boolean' as const }])),
    },
    strict: true,
  }) as { values: Record<string, string | boolean | undefined> };
  if (values.help) {
    process.stdout.write(help);
    process.exit(0);
  }
  return values;
}

/** The `--help` lines of the model and optimiser flags that train.ts and experiment.ts share. */
export const MODEL_FLAGS_HELP = `  --batch <n>           sequences per step (default 8)
  --context <n>         tokens per sequence, and the model's longest context (default 64)
  --width <n>           model width D (default 64)
  --blocks <n>          transformer blocks (default 2)
  --heads <n>           heads of the attention-like mixers (default 4)
  --lr <x>              Adam learning rate (default 3e-3)
  --clip <x>            gradient clipping by global norm, 0 for none (default 1)`;

/** Arguments of {@link trainModel}. */
export interface TrainingOptions {
  /** Training steps. */
  steps: number;
  /** Sequences per step. */
  batch: number;
  /** Tokens per sequence (at most the model's context). */
  context: number;
  /** Adam's learning rate (constant). */
  lr: number;
  /** Gradient clipping by global norm; 0 for none. */
  clip: number;
  /** Seeds the training batches (`seed`) and the validation batches (`seed + 1`). */
  seed: number;
  /** Validation loss every `evalEvery` steps besides the final one; 0 for only the final one. */
  evalEvery: number;
  /** Batches in each validation estimate. */
  evalBatches: number;
  /**
   * Train and validate on packed rows ({@link packDocuments} of {@link splitDocuments}, split
   * at blank lines) with segment ids, instead of windows at random offsets. Needs an attention
   * mixer and the corpus's vocabulary. Default false.
   */
  packed?: boolean;
}

/** Called by {@link trainModel} as training goes. */
export interface TrainingHooks {
  /** After every step, before the loss is checked for finiteness; tokens/s so far. */
  onStep?(step: number, loss: number, tokensPerSecond: number): void;
  /** After each intermediate validation (every `evalEvery` steps, not the final one). */
  onEval?(step: number, trainLoss: number, valLoss: number): void;
  /** With `packed`, once the training and validation rows are packed, before the first step. */
  onPacked?(train: PackedRows, val: PackedRows): void;
}

/** What {@link trainModel} measured. */
export interface TrainingResult {
  /** Training loss of every step, in nats: `losses[i]` is step i + 1's. */
  losses: number[];
  /** Wall milliseconds of every step (batch, forward, backward, update, loss read back). */
  stepMs: number[];
  /** Validation losses: every `evalEvery` steps and after the last step. */
  evals: { step: number; loss: number }[];
  /** The last step's training loss. */
  trainLoss: number;
  /** Validation loss after the last step. */
  valLoss: number;
  /** Sum of {@link stepMs}: training time without the validations. */
  trainMs: number;
  /** Tokens trained on per second: steps · batch · context, or with `packed` the document tokens (padding excluded), / training seconds. */
  tokensPerSecond: number;
  /**
   * The validation batches: offsets into the validation data, or with `packed` indices of
   * packed validation rows.
   */
  valBatches: number[][];
  /** The validation loss of another model on the same batches (e.g. the model reloaded). */
  validate(model: tf.LayersModel): Promise<number>;
}

/**
 * Trains `model` in place with Adam on random batches of `corpus.train` (seeded), clipping
 * gradients by global norm, and measures validation loss on fixed batches of `corpus.val`.
 * Batches are windows at random offsets or, with `o.packed`, random packed rows. Throws when
 * the loss stops being finite.
 */
export async function trainModel(
  model: tf.LayersModel,
  corpus: Pick<Corpus, 'train' | 'val'> & Partial<Pick<Corpus, 'vocab'>>,
  o: TrainingOptions,
  hooks: TrainingHooks = {},
): Promise<TrainingResult> {
  const { train, val } = corpus;
  const random = mulberry32(o.seed);
  const valRandom = mulberry32(o.seed + 1);
  let packed: { train: PackedRows; val: PackedRows } | null = null;
  if (o.packed) {
    if (!corpus.vocab) throw new Error('trainModel: option \'packed\' needs the corpus\'s vocab, to find the blank lines; received none.');
    const newline = corpus.vocab.encode('\n')[0]!;
    packed = {
      train: packDocuments(splitDocuments(train, newline), o.context),
      val: packDocuments(splitDocuments(val, newline), o.context),
    };
    hooks.onPacked?.(packed.train, packed.val);
  }
  const drawRows = (r: () => number, rows: PackedRows) => Array.from({ length: o.batch }, () => Math.floor(r() * rows.rows));
  const valBatches = Array.from({ length: o.evalBatches }, () =>
    packed ? drawRows(valRandom, packed.val) : drawOffsets(valRandom, o.batch, val, o.context));
  const validate = (m: tf.LayersModel) =>
    packed ? evaluatePacked(m, valBatches, packed.val) : evaluate(m, valBatches, val, o.context);
  // tf.train.adam's steps in a fraction of its kernels (flat-adam.ts)
  const optimizer = new FlatAdam(o.lr);
  const losses: number[] = [];
  const stepMs: number[] = [];
  const evals: TrainingResult['evals'] = [];
  let trainMs = 0;
  let tokens = 0;
  let loss = NaN;

  try {
    for (let step = 1; step <= o.steps; step++) {
      const t0 = performance.now();
      let batch: Batch;
      if (packed) {
        batch = packedBatch(packed.train, drawRows(random, packed.train));
      } else {
        const [x, y] = batchAt(train, drawOffsets(random, o.batch, train, o.context), o.context);
        batch = { x, y, segmentIds: null, tokens: o.batch * o.context };
      }
      const { value, grads } = optimizer.computeGradients(() => batchLoss(model, batch, true));
      tf.tidy(() => {
        let scaled = grads;
        if (o.clip > 0) {
          const norm = tf.sqrt(Object.values(grads).map((g) => tf.sum(tf.square(g))).reduce((a, b) => tf.add(a, b)));
          const factor = tf.minimum(1, tf.div(o.clip, tf.add(norm, 1e-6)));
          scaled = Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.mul(g, factor)]));
        }
        optimizer.applyGradients(Object.entries(scaled).map(([name, tensor]) => ({ name, tensor })));
      });
      loss = (await value.data())[0]!;
      tf.dispose([batch.x, batch.y, batch.segmentIds ?? [], value, grads]);
      const ms = performance.now() - t0;
      trainMs += ms;
      tokens += batch.tokens;
      losses.push(loss);
      stepMs.push(ms);
      hooks.onStep?.(step, loss, tokens / (trainMs / 1000));
      if (!Number.isFinite(loss)) throw new Error(`the loss is ${loss} at step ${step}; lower --lr.`);
      if (o.evalEvery > 0 && step % o.evalEvery === 0 && step !== o.steps) {
        const valLoss = await validate(model);
        evals.push({ step, loss: valLoss });
        hooks.onEval?.(step, loss, valLoss);
      }
    }
    const valLoss = await validate(model);
    evals.push({ step: o.steps, loss: valLoss });
    return {
      losses, stepMs, evals, trainLoss: loss, valLoss, trainMs,
      tokensPerSecond: tokens / (trainMs / 1000),
      valBatches, validate,
    };
  } finally {
    optimizer.dispose();
  }
}

/** `m:ss` of a duration in milliseconds. */
export function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
