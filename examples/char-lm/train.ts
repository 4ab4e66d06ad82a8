/**
 * `npm run example:char-lm -- --mixer causalGeneration --steps 300`: trains a small character
 * GPT (examples/char-lm/model.ts) on tiny Shakespeare with the chosen sequence mixer, shows a
 * progress bar with loss and tokens/s on stderr, reports validation loss, saves the model with
 * `model.save('file://…')`, reloads it with `tf.loadLayersModel`, checks the reloaded model's
 * validation loss, prints a sample (the prompt in one `prefill`, then a token at a time through
 * the mixers' `step`), and then continues a batch of prompts of different lengths in one batch
 * (`generateBatch`: one ragged prefill, then every row stepped together), with its tokens/s.
 * With `--packed` (attention mixers only) it trains on rows of whole speeches packed back to
 * back, with segment ids (see README.md, "Packed sequences").
 *
 * Run `--help` for the flags.
 *
 * @packageDocumentation
 */
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  MIXERS, PACKED_MIXERS, Vocabulary, buildModel, countParameters, generate, generateBatch, registerFileIO, withSeededRandom,
  type MixerName,
} from './model.js';
import { MODEL_FLAGS_HELP, defaultDataPath, parseFlags, duration, loadCorpus, setBackend, trainModel, type Backend, type PackedRows } from './training.js';

/** The batch's default prompts: four lengths, from a lone newline to 32 characters. */
const DEFAULT_PROMPTS = '\n|ROMEO:\n|JULIET:\nO Romeo, Romeo!|First Citizen:\nBefore we proceed';

const HELP = `Usage: npm run example:char-lm -- [flags]

  --mixer <name>        ${MIXERS.join(' | ')} (default causalGeneration)
  --steps <n>           training steps (default 300)
${MODEL_FLAGS_HELP}
  --seed <n>            seed of the weights, the batches and the sample (default 1337)
  --backend <name>      cpu | wasm | webgpu (default webgpu when an adapter is found, else cpu)
  --out <dir>           where model.save writes (default <tmpdir>/char-lm-<mixer>)
  --eval-every <n>      validation loss every n steps, 0 for only at the end (default 100)
  --eval-batches <n>    batches in each validation estimate (default 8)
  --sample <n>          characters to generate at the end (default 300)
  --temperature <x>     sampling temperature, 0 for greedy (default 0.8)
  --prompt <text>       the sample's prompt (default a newline)
  --prompts <a|b|…>     the batch's prompts, separated by '|', \\n for a newline
                        (default ${DEFAULT_PROMPTS.replace(/\n/g, '\\n')})
  --batch-sample <n>    new characters of each batch row, 0 for no batch (default: as many as the
                        context leaves after the longest prompt)
  --packed              train on packed rows of whole documents (speeches, split at blank lines)
                        with segment ids; needs ${PACKED_MIXERS.join(' | ')}
  --help                this text
`;

interface Options {
  mixer: MixerName; steps: number; batch: number; context: number; width: number; blocks: number; heads: number;
  lr: number; clip: number; seed: number; backend: Backend | null; out: string; evalEvery: number;
  evalBatches: number; sample: number; temperature: number; prompt: string; packed: boolean;
  prompts: string[]; batchSample: number | null;
}

function parseOptions(argv: string[]): Options {
  const values = parseFlags(argv, [
    'mixer', 'steps', 'batch', 'context', 'width', 'blocks', 'heads', 'lr', 'clip', 'seed', 'backend', 'out',
    'eval-every', 'eval-batches', 'sample', 'temperature', 'prompt', 'prompts', 'batch-sample',
  ], ['packed'], HELP);
  const str = (k: string) => values[k] as string | undefined;
  const num = (k: string, fallback: number, integer: boolean, min: number): number => {
    const raw = str(k);
    if (raw == null) return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
      throw new Error(`--${k} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}; received '${raw}'.`);
    }
    return v;
  };
  const mixer = (str('mixer') ?? 'causalGeneration') as MixerName;
  if (!MIXERS.includes(mixer)) throw new Error(`--mixer must be one of ${MIXERS.join(', ')}; received '${mixer}'.`);
  const packed = values.packed === true;
  if (packed && !PACKED_MIXERS.includes(mixer)) {
    throw new Error(`--packed needs a mixer that takes segment ids: ${PACKED_MIXERS.join(', ')}; received --mixer ${mixer}, ` +
      'which carries its state along a row from one document into the next.');
  }
  const backend = str('backend') ?? null;
  if (backend != null && backend !== 'cpu' && backend !== 'wasm' && backend !== 'webgpu') {
    throw new Error(`--backend must be cpu, wasm or webgpu; received '${backend}'.`);
  }
  return {
    mixer,
    steps: num('steps', 300, true, 0),
    batch: num('batch', 8, true, 1),
    context: num('context', 64, true, 2),
    width: num('width', 64, true, 1),
    blocks: num('blocks', 2, true, 1),
    heads: num('heads', 4, true, 1),
    lr: num('lr', 3e-3, false, 0),
    clip: num('clip', 1, false, 0),
    seed: num('seed', 1337, true, 0),
    backend,
    out: resolve(str('out') ?? join(tmpdir(), `char-lm-${mixer}`)),
    evalEvery: num('eval-every', 100, true, 0),
    evalBatches: num('eval-batches', 8, true, 1),
    sample: num('sample', 300, true, 0),
    temperature: num('temperature', 0.8, false, 0),
    prompt: str('prompt') ?? '\n',
    packed,
    prompts: (str('prompts') ?? DEFAULT_PROMPTS).replace(/\\n/g, '\n').split('|'),
    batchSample: str('batch-sample') == null ? null : num('batch-sample', 0, true, 0),
  };
}

/** A one-line progress bar on stderr; without a terminal, a line every 5 %. */
class Progress {
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly every: number;
  constructor(private readonly total: number) {
    this.every = Math.max(1, Math.round(total / 20));
  }

  update(step: number, loss: number, tokensPerSecond: number, elapsedMs: number): void {
    if (!this.tty && step % this.every !== 0 && step !== this.total) return;
    const width = 24;
    const filled = Math.round((width * step) / this.total);
    const eta = step > 0 ? (elapsedMs / step) * (this.total - step) : 0;
    const line = `step ${String(step).padStart(String(this.total).length)}/${this.total} ` +
      `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] loss ${loss.toFixed(4)} | ` +
      `${Math.round(tokensPerSecond).toLocaleString('en-US')} tok/s | ${duration(elapsedMs)} < ${duration(eta)}`;
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  /** Prints a line above the bar. */
  log(line: string): void {
    process.stderr.write(this.tty ? `\r\x1b[K${line}\n` : `${line}\n`);
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}

/**
 * Continues `o.prompts` in one batch (`generateBatch`: one prefill of the ragged prompts, then
 * every row stepped together, each from its own position) and prints each row and the tokens/s.
 */
async function batchSample(model: tf.LayersModel, vocab: Vocabulary, o: Options, log: (line: string) => void): Promise<void> {
  const prompts = o.prompts.map((p) => vocab.encode(p));
  const longest = Math.max(...prompts.map((p) => p.length));
  // a row holds its prompt and n − 1 new tokens (the last is drawn, not fed)
  const n = o.batchSample ?? o.context - longest + 1;
  if (longest < 1 || n < 1 || longest + n - 1 > o.context) {
    throw new Error(`--prompts and --batch-sample: each prompt needs a character, and the longest (${longest}) with ${n} new ` +
      `characters needs ${longest + n - 1} positions; the context is ${o.context}.`);
  }
  const t0 = performance.now();
  let first = 0;
  const rows = await generateBatch(model, prompts, n, {
    temperature: o.temperature, seed: o.seed, onTokens: () => { first ||= performance.now() - t0; },
  });
  const ms = performance.now() - t0;
  log(`batch of ${prompts.length} prompts (${prompts.map((p) => p.length).join(', ')} characters), ${n} new characters each, ` +
    `temperature ${o.temperature}: one prefill, then ${n - 1} steps of the whole batch`);
  log(`${prompts.length * n} characters in ${(ms / 1000).toFixed(2)} s: ${Math.round((prompts.length * n) / (ms / 1000))} ` +
    `characters/s (the prefill and the first characters: ${first.toFixed(0)} ms)`);
  rows.forEach((ids, b) => process.stdout.write(`--- row ${b} ---\n${o.prompts[b]}${vocab.decode(ids)}\n`));
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const started = performance.now();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  registerFileIO();
  const { name: backendName, gpu } = await setBackend(o.backend);

  try {
    // data: the vocabulary of the whole text, then the first 90 % to train and the rest to validate
    const { vocab, train, val } = loadCorpus(defaultDataPath());
    const prompt = vocab.encode(o.prompt);

    const model = withSeededRandom(o.seed, () => buildModel({
      mixer: o.mixer, vocab: vocab.size, context: o.context, width: o.width, blocks: o.blocks, heads: o.heads,
    }));
    model.setUserDefinedMetadata({ vocab: vocab.chars.join('') });
    log(`char-lm: mixer ${o.mixer}, ${countParameters(model).toLocaleString('en-US')} parameters ` +
      `(D=${o.width}, ${o.blocks} blocks, ${o.heads} heads, context ${o.context}), backend ${backendName}`);
    log(`data: ${train.length.toLocaleString('en-US')} train / ${val.length.toLocaleString('en-US')} val characters, ` +
      `vocabulary ${vocab.size}; batch ${o.batch}×${o.context} tokens, Adam lr ${o.lr}, clip ${o.clip || 'none'}, seed ${o.seed}`);
    const fill = (rows: PackedRows) => rows.filled.reduce((a, b) => a + b, 0) / (rows.rows * rows.context);

    const progress = new Progress(o.steps);
    const { trainLoss: loss, valLoss, trainMs, tokensPerSecond, validate } = await trainModel(model, { train, val, vocab }, o, {
      onStep: (step, stepLoss, rate) => progress.update(step, stepLoss, rate, performance.now() - started),
      onEval: (step, trainLoss, stepValLoss) =>
        progress.log(`step ${step}: train loss ${trainLoss.toFixed(4)}, val loss ${stepValLoss.toFixed(4)}`),
      onPacked: (trainRows, valRows) =>
        log(`packed: ${trainRows.rows.toLocaleString('en-US')} train / ${valRows.rows.toLocaleString('en-US')} val rows of ` +
          `${o.context} tokens, ${(100 * fill(trainRows)).toFixed(1)} % / ${(100 * fill(valRows)).toFixed(1)} % documents, the rest padding`),
    });
    progress.done();
    log(`trained ${o.steps} steps in ${duration(trainMs)} (${Math.round(tokensPerSecond)} tok/s): ` +
      `train loss ${loss.toFixed(4)}, val loss ${valLoss.toFixed(4)} (${o.evalBatches}×${o.batch}×${o.context} tokens${o.packed ? ', packed rows' : ''})`);

    // save, reload, and check the reloaded model
    const saved = await model.save(`file://${o.out}`);
    const loaded = await tf.loadLayersModel(`file://${join(o.out, 'model.json')}`);
    const reloadedLoss = await validate(loaded);
    const chars = (loaded.getUserDefinedMetadata() as { vocab?: string } | undefined)?.vocab;
    const same = reloadedLoss === valLoss && chars === vocab.chars.join('');
    log(`saved to ${join(o.out, 'model.json')} (${saved.modelArtifactsInfo.weightDataBytes?.toLocaleString('en-US')} weight bytes); ` +
      `reloaded: val loss ${reloadedLoss.toFixed(4)} ${same ? '(identical)' : `DIFFERS from ${valLoss}`}`);

    // sample from the reloaded model, one decode step per character
    if (o.sample > 0) {
      const t0 = performance.now();
      const ids = await generate(loaded, prompt, o.sample, { temperature: o.temperature, seed: o.seed });
      const ms = performance.now() - t0;
      log(`sample (${o.sample} characters, temperature ${o.temperature}, step decoding: ` +
        `${Math.round(o.sample / (ms / 1000))} characters/s):`);
      process.stdout.write(`${o.prompt}${new Vocabulary([...chars ?? vocab.chars.join('')]).decode(ids)}\n`);
    }
    if (o.batchSample !== 0) await batchSample(loaded, vocab, o, log);
    model.dispose();
    loaded.dispose();
    log(`done in ${duration(performance.now() - started)}`);
    return same ? 0 : 1;
  } finally {
    // Node may not exit while navigator.gpu is installed
    gpu?.uninstall();
  }
}

process.exitCode = await main().catch((e: unknown) => {
  process.stderr.write(`\nchar-lm: ${e instanceof Error ? e.message : String(e)}\n`);
  return 1;
});
