/**
 * `npm run example:experiment -- --seeds 1,2,3 --steps 2000`: the seed paper's experiment at
 * small scale. Trains the same char-lm configuration with `softmax` attention,
 * `causalGeneration` and `averageContext`, then the library's other mixers, for the same steps
 * and seeds, and writes `<out>/results.md`, `<out>/results/experiment.json` and SVG plots in
 * `<out>/results/`, with a verdict on each of the paper's claims computed from the numbers.
 *
 * Every (mixer, seed) run trains in its own child process (`--jobs` of them at once), started
 * as this script was started (`process.execPath`, `process.execArgv`, `process.argv[1]`), so it
 * works under tsx and when bundled into one .mjs file.
 *
 * Run `--help` for the flags.
 *
 * @packageDocumentation
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, platform, release, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import * as tf from '@tensorflow/tfjs';
import { MIXERS, buildModel, countParameters, withSeededRandom, type MixerName } from './model.js';
import {
  QUESTION, assessClaims, compactJson, mergeRecords, renderResults, smoothingWindow, summarize, trainSeries, valSeries,
  type ExperimentConfig, type ExperimentRecord, type MachineInfo, type RunFailure, type RunRecord, type RunSpec,
} from './report.js';
import { lineChart } from '../shared/svg-chart.js';
import { MODEL_FLAGS_HELP, defaultDataPath, parseFlags, duration, loadCorpus, setBackend, trainModel } from './training.js';

/** The paper's three mixers first, then the library's others, in model.ts's order. */
const PAPER = ['softmax', 'causalGeneration', 'averageContext'] as const;
const ORDER: MixerName[] = [...PAPER, ...MIXERS.filter((m) => !(PAPER as readonly string[]).includes(m))];

/** What `--quick` sets, unless the flag is given too. */
const QUICK = { steps: 6, 'eval-every': 3, 'eval-batches': 2 };

const HELP = `Usage: npm run example:experiment -- [flags]

Trains the char-lm model with each mixer and seed, and writes <out>/results.md,
<out>/results/experiment.json and <out>/results/*.svg.

  --mixers <list>       comma-separated (default ${ORDER.join(',')})
  --seeds <list>        comma-separated integers ≥ 0 (default 1,2,3)
  --steps <n>           training steps of every run (default 300)
${MODEL_FLAGS_HELP}
  --eval-every <n>      validation loss every n steps, 0 for only at the end (default 100)
  --eval-batches <n>    batches in each validation estimate (default 8)
  --backend <name>      cpu | wasm | webgpu (default webgpu when an adapter is found, else cpu)
  --jobs <n>            runs trained at once, each in its own process (default 1)
  --data <path>         tiny Shakespeare (default examples/data/tinyshakespeare.txt of this repository)
  --out <dir>           where results.md and results/ are written (default docs)
  --render              rewrite results.md and the plots from <out>/results/experiment.json
                        (its runs, summary and verdicts recomputed), training nothing
  --merge <dirs>        comma-separated --out directories of earlier invocations trained with the
                        same settings (e.g. one experiment split across days): write their runs as
                        one experiment to --out, training nothing
  --quick               a check that everything runs: --steps ${QUICK.steps} --eval-every ${QUICK['eval-every']} --eval-batches ${QUICK['eval-batches']}
                        unless given
  --help                this text
`;

const log = (line: string) => process.stderr.write(`${line}\n`);

// ───────────────────────────── flags ─────────────────────────────

interface Options extends ExperimentConfig {
  out: string;
  render: boolean;
  /** `--merge`: the directories whose records are merged, or null. */
  merge: string[] | null;
}

const STRING_FLAGS = [
  'mixers', 'seeds', 'steps', 'batch', 'context', 'width', 'blocks', 'heads', 'lr', 'clip', 'eval-every', 'eval-batches',
  'backend', 'jobs', 'data', 'out', 'merge',
] as const;

function parseOptions(argv: string[]): Options {
  const values = parseFlags(argv, STRING_FLAGS, ['quick', 'render'], HELP);
  const quick = values.quick === true;
  const str = (k: string) => (values[k] as string | undefined) ?? (quick ? QUICK[k as keyof typeof QUICK]?.toString() : undefined);
  const num = (k: string, fallback: number, integer: boolean, min: number): number => {
    const raw = str(k);
    if (raw == null) return fallback;
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
      throw new Error(`--${k} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}; received '${raw}'.`);
    }
    return v;
  };

  const mixersRaw = str('mixers');
  const mixers = mixersRaw == null ? ORDER : mixersRaw.split(',').map((m) => m.trim()) as MixerName[];
  for (const m of mixers) {
    if (!MIXERS.includes(m)) {
      throw new Error(`--mixers must be a comma-separated list of ${ORDER.join(', ')}; received '${mixersRaw}' ('${m}' is not a mixer).`);
    }
  }
  if (new Set(mixers).size !== mixers.length) throw new Error(`--mixers lists a mixer twice; received '${mixersRaw}'.`);

  const seedsRaw = str('seeds') ?? '1,2,3';
  const seeds = seedsRaw.split(',').map((s) => Number(s.trim()));
  if (seedsRaw.trim() === '' || seeds.some((s) => !Number.isInteger(s) || s < 0) || new Set(seeds).size !== seeds.length) {
    throw new Error(`--seeds must be a comma-separated list of distinct integers ≥ 0, e.g. 1,2,3; received '${seedsRaw}'.`);
  }

  const backend = str('backend') ?? null;
  if (backend != null && backend !== 'cpu' && backend !== 'wasm' && backend !== 'webgpu') {
    throw new Error(`--backend must be cpu, wasm or webgpu; received '${backend}'.`);
  }
  const width = num('width', 64, true, 1);
  const heads = num('heads', 4, true, 1);
  if (width % heads !== 0) throw new Error(`--width must be a multiple of --heads; received --width ${width}, --heads ${heads}.`);

  // where tiny Shakespeare lies; a bundled copy of this script must be told with --data
  const dataRaw = str('data');
  const data = resolve(dataRaw ?? defaultDataPath());
  if (!existsSync(data)) {
    throw new Error(dataRaw == null
      ? `--data was not given and the default, ${data}, does not exist; pass --data <path of tinyshakespeare.txt>.`
      : `--data must be the path of tinyshakespeare.txt; received '${dataRaw}', and ${data} does not exist.`);
  }
  if (values.render === true && values.merge != null) throw new Error('--render and --merge each write <out>; give one of them.');
  const runs = mixers.length * seeds.length;
  return {
    args: argv,
    quick,
    mixers,
    seeds,
    steps: num('steps', 300, true, 1),
    batch: num('batch', 8, true, 1),
    context: num('context', 64, true, 2),
    width,
    blocks: num('blocks', 2, true, 1),
    heads,
    lr: num('lr', 3e-3, false, 0),
    clip: num('clip', 1, false, 0),
    evalEvery: num('eval-every', 100, true, 0),
    evalBatches: num('eval-batches', 8, true, 1),
    backend,
    jobs: Math.min(num('jobs', 1, true, 1), runs),
    data,
    out: resolve(str('out') ?? 'docs'),
    render: values.render === true,
    merge: values.merge == null ? null : (values.merge as string).split(',').map((d) => resolve(d.trim())),
  };
}

// ───────────────────────────── one run, in a worker process ─────────────────────────────

const round = (v: number, digits: number) => Number(v.toFixed(digits));

/** Trains one (mixer, seed) as train.ts does, without saving or sampling. */
async function runOne(spec: RunSpec): Promise<RunRecord> {
  const started = performance.now();
  let gpu: Awaited<ReturnType<typeof setBackend>>['gpu'] = null;
  let model: tf.LayersModel | null = null;
  try {
    const backend = await setBackend(spec.backend);
    gpu = backend.gpu;
    const corpus = loadCorpus(spec.data);
    model = withSeededRandom(spec.seed, () => buildModel({
      mixer: spec.mixer as MixerName, vocab: corpus.vocab.size, context: spec.context, width: spec.width,
      blocks: spec.blocks, heads: spec.heads,
    }));
    const parameters = countParameters(model);
    log(`${parameters.toLocaleString('en-US')} parameters, backend ${backend.name}`);
    const every = Math.max(1, Math.round(spec.steps / 10));
    const result = await trainModel(model, corpus, spec, {
      onStep: (step, loss, rate) => {
        if (step % every === 0) log(`step ${step}/${spec.steps}: loss ${loss.toFixed(4)}, ${Math.round(rate)} tok/s`);
      },
      onEval: (step, _trainLoss, valLoss) => log(`step ${step}: val loss ${valLoss.toFixed(4)}`),
    });
    return {
      status: 'ok',
      mixer: spec.mixer,
      seed: spec.seed,
      parameters,
      // rounded: the per-step arrays dominate experiment.json's size, and 1e-5 nats is far below the noise
      losses: result.losses.map((l) => round(l, 5)),
      stepMs: result.stepMs.map((ms) => round(ms, 1)),
      evals: result.evals,
      trainLoss: result.trainLoss,
      valLoss: result.valLoss,
      trainMs: result.trainMs,
      tokensPerSecond: result.tokensPerSecond,
      wallMs: performance.now() - started,
      backend: tf.getBackend(),
      adapter: gpu?.description ?? null,
      tfjs: tf.version.tfjs,
    };
  } catch (e) {
    return {
      status: 'failed', mixer: spec.mixer, seed: spec.seed,
      error: e instanceof Error ? e.message : String(e), wallMs: performance.now() - started,
    };
  } finally {
    model?.dispose();
    // Node may not exit while navigator.gpu is installed
    gpu?.uninstall();
  }
}

/** The worker's side: run the spec given after `--worker`, send the record to the parent, exit. */
async function workerMain(specJson: string): Promise<void> {
  const record = await runOne(JSON.parse(specJson) as RunSpec);
  if (process.send) {
    // exit only once the record has been handed to the IPC channel
    await new Promise<void>((done) => process.send!(record, () => done()));
  } else {
    process.stdout.write(`${JSON.stringify(record)}\n`);
  }
  process.exit(0);
}

/** Lines of the note tfjs-backend-cpu prints in Node on first use, suggesting tfjs-node. */
function isBannerLine(line: string): boolean {
  return line.trim() === '' || /^=+$/.test(line.trim()) || line.startsWith('Hi, looks like you are running TensorFlow.js');
}

/** Starts a worker for `spec`; resolves with its record, or a failure if it died without one. */
function spawnRun(spec: RunSpec, label: string): Promise<RunRecord> {
  const started = performance.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, '--worker', JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let record: RunRecord | null = null;
    const tail: string[] = [];
    const keep = (line: string) => {
      tail.push(line);
      if (tail.length > 12) tail.shift();
    };
    child.on('message', (message) => { record = message as RunRecord; });
    // stderr carries the worker's progress and tfjs-backend-cpu's banner, which is not repeated per run
    createInterface({ input: child.stderr! }).on('line', (line) => {
      keep(line);
      if (!isBannerLine(line)) log(`[${label}] ${line}`);
    });
    createInterface({ input: child.stdout! }).on('line', keep);
    const fail = (why: string): RunFailure => ({
      status: 'failed', mixer: spec.mixer, seed: spec.seed, wallMs: performance.now() - started,
      error: `${why}${tail.length > 0 ? `; its last output:\n${tail.join('\n')}` : ''}`,
    });
    child.on('error', (e) => done(fail(`the worker could not start: ${e.message}`)));
    child.on('close', (code, signal) => done(record ?? fail(`the worker exited (code ${code}, signal ${signal}) without a result`)));
  });
}

// ───────────────────────────── the experiment ─────────────────────────────

/** Writes `<out>/results.md`, `<out>/results/experiment.json` and the two plots; returns their paths. */
function writeOutputs(out: string, record: ExperimentRecord): string[] {
  const dir = join(out, 'results');
  mkdirSync(dir, { recursive: true });
  const files = {
    json: join(dir, 'experiment.json'),
    train: join(dir, 'train-loss.svg'),
    val: join(dir, 'val-loss.svg'),
    md: join(out, 'results.md'),
  };
  const n = record.config.seeds.length;
  const band = n > 1 ? `; band: min to max over ${n} seeds` : '';
  writeFileSync(files.train, lineChart(trainSeries(record.runs, record.smoothing.window), {
    title: 'Training loss',
    subtitle: `trailing mean over ${record.smoothing.window} step(s), mean over seeds${band}`,
    xLabel: 'step', yLabel: 'loss (nats per character)', integerX: true,
  }));
  writeFileSync(files.val, lineChart(valSeries(record.runs), {
    title: 'Validation loss',
    subtitle: `${record.config.evalBatches}×${record.config.batch}×${record.config.context} tokens per estimate, mean over seeds${band}`,
    xLabel: 'step', yLabel: 'loss (nats per character)', integerX: true,
  }));
  writeFileSync(files.json, `${compactJson(record)}\n`);
  // the repository links assume results.md's home, docs/, wherever this run wrote it
  writeFileSync(files.md, renderResults(record, {
    train: relative(out, files.train),
    val: relative(out, files.val),
    charLm: '../examples/char-lm/README.md',
    averageContext: 'average-context.md',
  }));
  return Object.values(files);
}

function machineInfo(runs: readonly RunRecord[]): MachineInfo {
  const ok = runs.filter((r) => r.status === 'ok');
  const distinct = (xs: (string | null)[]) => [...new Set(xs.filter((x): x is string => x != null))];
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${platform()} ${release()}`,
    node: process.version,
    tfjs: distinct(ok.map((r) => r.tfjs))[0] ?? tf.version.tfjs,
    backends: distinct(ok.map((r) => r.backend)),
    adapters: distinct(ok.map((r) => r.adapter)),
  };
}

/** `--render`: the outputs again from a recorded experiment.json, e.g. after report.ts changed. */
function render(out: string): number {
  const path = join(out, 'results', 'experiment.json');
  if (!existsSync(path)) throw new Error(`--render needs ${path}, written by an earlier run with the same --out; it does not exist.`);
  const old = JSON.parse(readFileSync(path, 'utf8')) as ExperimentRecord;
  const summary = summarize(old.runs);
  const files = writeOutputs(out, { ...old, summary, claims: assessClaims(summary) });
  log(`rewrote ${files.join(', ')}`);
  return 0;
}

/** `--merge`: the runs of earlier invocations' records as one experiment, written to `out`. */
function merge(dirs: string[], out: string): number {
  const records = dirs.map((dir) => {
    const path = join(dir, 'results', 'experiment.json');
    if (!existsSync(path)) throw new Error(`--merge needs ${path}, written by an earlier run with --out ${dir}; it does not exist.`);
    return JSON.parse(readFileSync(path, 'utf8')) as ExperimentRecord;
  }).sort((a, b) => a.date.localeCompare(b.date));
  const files = writeOutputs(out, mergeRecords(records, ORDER));
  log(`merged ${records.length} records into ${files.join(', ')}`);
  return 0;
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  if (o.render) return render(o.out);
  if (o.merge) return merge(o.merge, o.out);
  const started = performance.now();
  const date = new Date().toISOString();
  const { out, render: _render, merge: _merge, ...config } = o;
  const specs: RunSpec[] = o.mixers.flatMap((mixer) => o.seeds.map((seed) => ({
    mixer, seed, steps: o.steps, batch: o.batch, context: o.context, width: o.width, blocks: o.blocks, heads: o.heads,
    lr: o.lr, clip: o.clip, evalEvery: o.evalEvery, evalBatches: o.evalBatches, backend: o.backend, data: o.data,
  })));
  log(`experiment: ${specs.length} runs (${o.mixers.length} mixers × ${o.seeds.length} seeds), ${o.steps} steps each, ` +
    `backend ${o.backend ?? 'webgpu if an adapter is found, else cpu'}, ${o.jobs} at a time; writing to ${out}` +
    `${o.quick ? ' (--quick)' : ''}`);

  // records kept in the order of the specs, whatever order the runs finish in
  const records: (RunRecord | undefined)[] = specs.map(() => undefined);
  const snapshot = (): ExperimentRecord => {
    const runs = records.filter((r): r is RunRecord => r != null);
    const summary = summarize(runs);
    return {
      question: QUESTION, date, config, machine: machineInfo(runs),
      smoothing: { kind: 'trailing mean', window: smoothingWindow(o.steps) },
      wallMs: performance.now() - started, pending: specs.length - runs.length,
      summary, claims: assessClaims(summary), runs,
    };
  };

  let next = 0;
  let finished = 0;
  const lane = async () => {
    while (next < specs.length) {
      const i = next++;
      const spec = specs[i]!;
      const label = `${spec.mixer} seed ${spec.seed}`;
      log(`run ${i + 1}/${specs.length}: ${label}`);
      const record = await spawnRun(spec, label);
      records[i] = record;
      finished++;
      log(record.status === 'ok'
        ? `done ${finished}/${specs.length}: ${label}: train loss ${record.trainLoss.toFixed(4)}, val loss ` +
          `${record.valLoss.toFixed(4)}, ${Math.round(record.tokensPerSecond)} tok/s, ${duration(record.wallMs)}`
        : `FAILED ${finished}/${specs.length}: ${label}: ${record.error}`);
      // rewritten after every run, so an interrupted experiment still leaves its results
      writeOutputs(out, snapshot());
    }
  };
  await Promise.all(Array.from({ length: o.jobs }, lane));

  const record = snapshot();
  const files = writeOutputs(out, record);
  for (const c of record.claims) process.stdout.write(`${c.claim}: ${c.verdict.toUpperCase()} (${c.detail})\n`);
  log(`wrote ${files.join(', ')}`);
  log(`done in ${duration(record.wallMs)}`);
  return record.runs.every((r) => r.status === 'ok') ? 0 : 1;
}

const workerAt = process.argv.indexOf('--worker');
if (workerAt >= 0) {
  await workerMain(process.argv[workerAt + 1] ?? '');
} else {
  process.exitCode = await main().catch((e: unknown) => {
    process.stderr.write(`\nexperiment: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  });
}
