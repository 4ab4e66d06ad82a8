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
import { Vocabulary, lossOf } from './model.js';
import { mulberry32 } from '../shared/random.js';

/** The backend {@link setBackend} chose. */
export interface ChosenBackend {
  /** For logs: `'cpu (tfjs-backend-cpu, JavaScript)'` or `'webgpu (<adapter>)'`. */
  name: string;
  /** The installed WebGPU adapter on webgpu, else `null`; uninstall it before exiting. */
  gpu: InstalledWebGPU | null;
}

/**
 * Sets tfjs's backend: webgpu when `wanted` is `'webgpu'` or, when `wanted` is `null`, when an
 * adapter is found; else cpu. Throws when webgpu was asked for and no adapter works.
 */
export async function setBackend(wanted: 'cpu' | 'webgpu' | null): Promise<ChosenBackend> {
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
}

/** Called by {@link trainModel} as training goes. */
export interface TrainingHooks {
  /** After every step, before the loss is checked for finiteness; tokens/s so far. */
  onStep?(step: number, loss: number, tokensPerSecond: number): void;
  /** After each intermediate validation (every `evalEvery` steps, not the final one). */
  onEval?(step: number, trainLoss: number, valLoss: number): void;
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
  /** steps · batch · context / training seconds. */
  tokensPerSecond: number;
  /** The validation batches' offsets into the validation data, to evaluate other models alike. */
  valBatches: number[][];
}

/**
 * Trains `model` in place with Adam on random batches of `corpus.train` (seeded), clipping
 * gradients by global norm, and measures validation loss on fixed batches of `corpus.val`.
 * Throws when the loss stops being finite.
 */
export async function trainModel(
  model: tf.LayersModel,
  corpus: Pick<Corpus, 'train' | 'val'>,
  o: TrainingOptions,
  hooks: TrainingHooks = {},
): Promise<TrainingResult> {
  const { train, val } = corpus;
  const random = mulberry32(o.seed);
  const valRandom = mulberry32(o.seed + 1);
  const valBatches = Array.from({ length: o.evalBatches }, () => drawOffsets(valRandom, o.batch, val, o.context));
  const optimizer = tf.train.adam(o.lr);
  const losses: number[] = [];
  const stepMs: number[] = [];
  const evals: TrainingResult['evals'] = [];
  let trainMs = 0;
  let loss = NaN;

  try {
    for (let step = 1; step <= o.steps; step++) {
      const t0 = performance.now();
      const [x, y] = batchAt(train, drawOffsets(random, o.batch, train, o.context), o.context);
      const { value, grads } = optimizer.computeGradients(() => lossOf(model, x, y, true));
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
      tf.dispose([x, y, value, grads]);
      const ms = performance.now() - t0;
      trainMs += ms;
      losses.push(loss);
      stepMs.push(ms);
      hooks.onStep?.(step, loss, (step * o.batch * o.context) / (trainMs / 1000));
      if (!Number.isFinite(loss)) throw new Error(`the loss is ${loss} at step ${step}; lower --lr.`);
      if (o.evalEvery > 0 && step % o.evalEvery === 0 && step !== o.steps) {
        const valLoss = await evaluate(model, valBatches, val, o.context);
        evals.push({ step, loss: valLoss });
        hooks.onEval?.(step, loss, valLoss);
      }
    }
    const valLoss = await evaluate(model, valBatches, val, o.context);
    evals.push({ step: o.steps, loss: valLoss });
    return {
      losses, stepMs, evals, trainLoss: loss, valLoss, trainMs,
      tokensPerSecond: (o.steps * o.batch * o.context) / (trainMs / 1000),
      valBatches,
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
