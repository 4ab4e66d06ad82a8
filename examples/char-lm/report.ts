/**
 * The pure half of `experiment.ts`: the record of each run, statistics over seeds, the paper's
 * claims judged from the numbers, the plots' series, and `results.md`. No tfjs here, so it is
 * quick to test (test/experiment.test.ts).
 *
 * @example
 * ```ts
 * const summaries = summarize(runs);
 * for (const c of assessClaims(summaries)) console.log(`${c.claim}: ${c.verdict} (${c.detail})`);
 * writeFileSync('val.svg', lineChart(valSeries(runs), { title: 'Validation loss', xLabel: 'step', yLabel: 'nats' }));
 * ```
 *
 * @packageDocumentation
 */
import { mixers as libraryMixers } from '../../src/index.js';
import type { ChartSeries } from '../shared/svg-chart.js';
import type { TrainingResult } from './training.js';

// ───────────────────────────── records ─────────────────────────────

/** The model and training settings every run of an experiment shares. */
export interface SharedSettings {
  steps: number;
  batch: number;
  context: number;
  width: number;
  blocks: number;
  heads: number;
  lr: number;
  clip: number;
  evalEvery: number;
  evalBatches: number;
  /** `null`: webgpu when an adapter is found, else cpu. */
  backend: 'cpu' | 'wasm' | 'webgpu' | null;
}

/** What one worker trains: one mixer with one seed, everything else shared by all runs. */
export interface RunSpec extends SharedSettings {
  mixer: string;
  seed: number;
  /** Absolute path of the text to train on. */
  data: string;
}

/** A run that finished. Losses are mean next-character cross-entropy in nats (see TrainingResult). */
export interface RunSuccess extends Omit<TrainingResult, 'valBatches' | 'validate'> {
  status: 'ok';
  mixer: string;
  seed: number;
  parameters: number;
  /** The worker's time from choosing the backend to the final validation, ms. */
  wallMs: number;
  /** tfjs's backend: `'cpu'` or `'webgpu'`. */
  backend: string;
  /** The WebGPU adapter's description, or null on cpu. */
  adapter: string | null;
  /** `@tensorflow/tfjs` version in the worker. */
  tfjs: string;
}

/** A run that failed (diverged, crashed, or its worker died). */
export interface RunFailure {
  status: 'failed';
  mixer: string;
  seed: number;
  /** The error, or the worker's last output. */
  error: string;
  wallMs: number;
}

/** One (mixer, seed) run of the experiment. */
export type RunRecord = RunSuccess | RunFailure;

// ───────────────────────────── statistics ─────────────────────────────

/** Mean and spread of one number over seeds. */
export interface Spread {
  /** Number of values. */
  n: number;
  mean: number;
  /** Sample standard deviation (divisor n − 1); NaN for fewer than two values. */
  sd: number;
  min: number;
  max: number;
}

/** {@link Spread} of `values`; all NaN for none. */
export function spread(values: readonly number[]): Spread {
  const n = values.length;
  if (n === 0) return { n, mean: NaN, sd: NaN, min: NaN, max: NaN };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n < 2 ? NaN : Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
  return { n, mean, sd, min: Math.min(...values), max: Math.max(...values) };
}

/** The runs of one mixer, summed up over seeds. */
export interface MixerSummary {
  mixer: string;
  /** Seeds whose run finished. */
  seeds: number[];
  /** Seeds whose run failed. */
  failedSeeds: number[];
  /** Parameter count (the same for every seed); NaN when no run finished. */
  parameters: number;
  trainLoss: Spread;
  valLoss: Spread;
  tokensPerSecond: Spread;
  wallMs: Spread;
  /** Final validation loss by seed, for paired comparisons. */
  valBySeed: Record<number, number>;
}

/** One {@link MixerSummary} per mixer, in the order the mixers first appear in `runs`. */
export function summarize(runs: readonly RunRecord[]): MixerSummary[] {
  const mixers = [...new Set(runs.map((r) => r.mixer))];
  return mixers.map((mixer) => {
    const mine = runs.filter((r) => r.mixer === mixer);
    const ok = mine.filter((r): r is RunSuccess => r.status === 'ok');
    return {
      mixer,
      seeds: ok.map((r) => r.seed),
      failedSeeds: mine.filter((r) => r.status === 'failed').map((r) => r.seed),
      parameters: ok[0]?.parameters ?? NaN,
      trainLoss: spread(ok.map((r) => r.trainLoss)),
      valLoss: spread(ok.map((r) => r.valLoss)),
      tokensPerSecond: spread(ok.map((r) => r.tokensPerSecond)),
      wallMs: spread(ok.map((r) => r.wallMs)),
      valBySeed: Object.fromEntries(ok.map((r) => [r.seed, r.valLoss])),
    };
  });
}

// ───────────────────────────── the paper's claims ─────────────────────────────

/** How a claim fared. */
export type Verdict = 'holds' | 'does not hold' | 'inconclusive' | 'not tested';

/** One claim of the paper, judged from the numbers. */
export interface ClaimResult {
  claim: string;
  verdict: Verdict;
  /** The numbers behind the verdict, in words. */
  detail: string;
}

/** Result of {@link compareLoss}: is `a`'s final validation loss lower than `b`'s? */
export interface LossComparison {
  verdict: Verdict;
  /** mean(a) − mean(b); negative when a is lower. */
  difference: number;
  /** The larger of the two standard deviations over seeds: the noise the difference must beat. */
  threshold: number;
  /** Seeds that both ran, and how many of them had a lower than b. */
  pairedSeeds: number;
  lowerInSeeds: number;
}

/**
 * Judges "a's final validation loss is lower than b's". The rule: the difference of the means
 * must exceed the seed spread (the larger of the two sample standard deviations); otherwise the
 * comparison is inconclusive, as it is with fewer than two finished seeds on either side.
 */
export function compareLoss(a: MixerSummary, b: MixerSummary): LossComparison {
  const difference = a.valLoss.mean - b.valLoss.mean;
  const threshold = Math.max(a.valLoss.sd, b.valLoss.sd);
  const paired = a.seeds.filter((s) => b.seeds.includes(s));
  const lowerInSeeds = paired.filter((s) => a.valBySeed[s]! < b.valBySeed[s]!).length;
  let verdict: Verdict;
  if (a.valLoss.n === 0 || b.valLoss.n === 0) verdict = 'not tested';
  else if (a.valLoss.n < 2 || b.valLoss.n < 2 || !(Math.abs(difference) > threshold)) verdict = 'inconclusive';
  else verdict = difference < 0 ? 'holds' : 'does not hold';
  return { verdict, difference, threshold, pairedSeeds: paired.length, lowerInSeeds };
}

/** `x.xxxx ± y.yyyy` (± omitted for one value). */
export function formatSpread(s: Spread, digits = 4): string {
  if (s.n === 0) return '—';
  return Number.isNaN(s.sd) ? s.mean.toFixed(digits) : `${s.mean.toFixed(digits)} ± ${s.sd.toFixed(digits)}`;
}

const signed = (v: number, digits = 4) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(digits)}`;
const integer = (v: number) => Math.round(v).toLocaleString('en-US');

function lossClaim(claim: string, a: MixerSummary | undefined, b: MixerSummary | undefined): ClaimResult {
  if (!a || !b || a.valLoss.n === 0 || b.valLoss.n === 0) {
    const missing = [a, b].some((s) => !s) ? 'not both mixers were run' : 'a mixer has no finished run';
    return { claim, verdict: 'not tested', detail: missing };
  }
  const c = compareLoss(a, b);
  const seeds = a.valLoss.n < 2 || b.valLoss.n < 2
    ? 'fewer than two finished seeds, so no seed spread to compare with'
    : `the seed spread (largest standard deviation) is ${c.threshold.toFixed(4)}, ` +
      `${Math.abs(c.difference) > c.threshold ? 'smaller' : 'not smaller'} than the difference`;
  return {
    claim,
    verdict: c.verdict,
    detail: `final val loss ${a.mixer} ${formatSpread(a.valLoss)} vs ${b.mixer} ${formatSpread(b.valLoss)}: ` +
      `difference ${signed(c.difference)} nats; ${seeds}; ${a.mixer} is lower in ${c.lowerInSeeds} of ${c.pairedSeeds} paired seeds`,
  };
}

/**
 * The paper's claims, judged from the summaries of `softmax`, `causalGeneration` and
 * `averageContext`: (1) CausalGeneration is smaller than attention, (2) its validation loss
 * is lower than attention's, (3) AverageContext's is lower than CausalGeneration's.
 */
export function assessClaims(summaries: readonly MixerSummary[]): ClaimResult[] {
  const get = (m: string) => summaries.find((s) => s.mixer === m);
  const [softmax, cg, ac] = [get('softmax'), get('causalGeneration'), get('averageContext')];

  const sizeClaim = 'CausalGeneration gives a smaller model than softmax attention';
  let size: ClaimResult;
  if (!softmax || !cg || Number.isNaN(softmax.parameters) || Number.isNaN(cg.parameters)) {
    size = { claim: sizeClaim, verdict: 'not tested', detail: 'softmax and causalGeneration did not both finish a run' };
  } else {
    const change = (cg.parameters - softmax.parameters) / softmax.parameters;
    size = {
      claim: sizeClaim,
      verdict: cg.parameters < softmax.parameters ? 'holds' : 'does not hold',
      detail: `${integer(cg.parameters)} vs ${integer(softmax.parameters)} parameters ` +
        `(${change >= 0 ? '+' : '−'}${Math.abs(100 * change).toFixed(1)} %)`,
    };
  }
  return [
    size,
    lossClaim('CausalGeneration reaches a lower validation loss than softmax attention', cg, softmax),
    lossClaim('AverageContext (CausalGeneration plus the causal running mean) reaches a lower validation loss than CausalGeneration', ac, cg),
  ];
}

// ───────────────────────────── curves and plots ─────────────────────────────

/** The trailing window used to smooth training losses: 1/50 of the run, at least one step. */
export function smoothingWindow(steps: number): number {
  return Math.max(1, Math.round(steps / 50));
}

/** `out[i]` = mean of `values[max(0, i − window + 1) … i]`: each point uses only steps up to it. */
export function trailingMean(values: readonly number[], window: number): number[] {
  if (!Number.isInteger(window) || window < 1) {
    throw new Error(`trailingMean: window must be a positive integer; received ${window}.`);
  }
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i]!;
    if (i >= window) sum -= values[i - window]!;
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}

/** Mean, min and max across curves, index by index, over the curves long enough to have that index. */
export function acrossSeeds(curves: readonly (readonly number[])[]): { mean: number[]; min: number[]; max: number[] } {
  const length = Math.max(0, ...curves.map((c) => c.length));
  const mean: number[] = [], min: number[] = [], max: number[] = [];
  for (let i = 0; i < length; i++) {
    const at = curves.filter((c) => i < c.length).map((c) => c[i]!);
    mean.push(at.reduce((a, b) => a + b, 0) / at.length);
    min.push(Math.min(...at));
    max.push(Math.max(...at));
  }
  return { mean, min, max };
}

/** Indices 0 … n − 1 thinned to at most `max`, always keeping the last. */
export function thin(n: number, max: number): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const stride = Math.ceil(n / max);
  const kept = Array.from({ length: Math.ceil(n / stride) }, (_, i) => i * stride);
  if (kept[kept.length - 1] !== n - 1) kept.push(n - 1);
  return kept;
}

/** Okabe–Ito colours, then two of Paul Tol's (all distinguishable with colour-blindness); the paper's three mixers first. */
/** One colour per library mixer, in the registry's order (Wong's and Tol's colour-blind-safe palettes); softmax black. */
const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#882255', '#999933', '#56b4e9', '#44aa99', '#f0e442'];

function colorOf(mixer: string): string {
  if (mixer === 'softmax') return '#000000';
  const i = libraryMixers.findIndex((m) => m.name === mixer);
  return PALETTE[(i < 0 ? libraryMixers.length : i) % PALETTE.length]!;
}

function okRuns(runs: readonly RunRecord[], mixer: string): RunSuccess[] {
  return runs.filter((r): r is RunSuccess => r.status === 'ok' && r.mixer === mixer);
}

/** The mixer's name, and its number of seeds when some mixer has more (a run failed). */
function labelOf(runs: readonly RunRecord[], mixer: string): string {
  const seeds = (m: string) => okRuns(runs, m).length;
  const most = Math.max(...runs.map((r) => seeds(r.mixer)));
  return seeds(mixer) < most ? `${mixer} (${seeds(mixer)} of ${most} seeds)` : mixer;
}

/**
 * Training-loss series per mixer: each seed's per-step loss smoothed by {@link trailingMean}
 * over `window` steps, then the mean over seeds as the line and min–max over seeds as the band;
 * thinned to at most `maxPoints` points.
 */
export function trainSeries(runs: readonly RunRecord[], window: number, maxPoints = 400): ChartSeries[] {
  const mixers = [...new Set(runs.filter((r) => r.status === 'ok').map((r) => r.mixer))];
  return mixers.map((mixer) => {
    const curves = okRuns(runs, mixer).map((r) => trailingMean(r.losses, window));
    const { mean, min, max } = acrossSeeds(curves);
    const kept = thin(mean.length, maxPoints);
    return {
      label: labelOf(runs, mixer),
      color: colorOf(mixer),
      points: kept.map((i) => [i + 1, mean[i]!] as const),
      band: curves.length > 1 ? kept.map((i) => [i + 1, min[i]!, max[i]!] as const) : undefined,
      dashed: mixer === 'flashStyleTiledAttention',
    };
  });
}

/** Validation-loss series per mixer: the mean over seeds at each evaluated step, min–max as the band. */
export function valSeries(runs: readonly RunRecord[]): ChartSeries[] {
  const mixers = [...new Set(runs.filter((r) => r.status === 'ok').map((r) => r.mixer))];
  return mixers.map((mixer) => {
    const mine = okRuns(runs, mixer);
    const steps = [...new Set(mine.flatMap((r) => r.evals.map((e) => e.step)))].sort((a, b) => a - b);
    const at = steps.map((step) => mine.flatMap((r) => r.evals.filter((e) => e.step === step).map((e) => e.loss)));
    return {
      label: labelOf(runs, mixer),
      color: colorOf(mixer),
      points: steps.map((step, i) => [step, spread(at[i]!).mean] as const),
      band: mine.length > 1 ? steps.map((step, i) => [step, spread(at[i]!).min, spread(at[i]!).max] as const) : undefined,
      markers: true,
      dashed: mixer === 'flashStyleTiledAttention',
    };
  });
}

// ───────────────────────────── results.md ─────────────────────────────

/** The experiment's settings, as recorded in experiment.json. */
export interface ExperimentConfig extends SharedSettings {
  /** The command-line flags as given. */
  args: string[];
  quick: boolean;
  mixers: string[];
  seeds: number[];
  /** Runs trained at once, each in its own process. */
  jobs: number;
  data: string;
}

/** Where the experiment ran. */
export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  node: string;
  tfjs: string;
  /** The distinct backends and adapters the runs reported. */
  backends: string[];
  adapters: string[];
}

/** All of experiment.json. */
export interface ExperimentRecord {
  question: string;
  date: string;
  config: ExperimentConfig;
  machine: MachineInfo;
  /** Smoothing of the training-loss plot. */
  smoothing: { kind: 'trailing mean'; window: number };
  /** Wall time of the whole experiment so far, ms. */
  wallMs: number;
  /** Runs still to come when this record was written (0 when complete). */
  pending: number;
  summary: MixerSummary[];
  claims: ClaimResult[];
  runs: RunRecord[];
  /**
   * What a reader needs beside the numbers that the settings do not say, written in by hand
   * (e.g. runs merged from two invocations under different load); shown under Configuration.
   */
  notes?: string[];
}

/** The settings that must agree for runs of two invocations to be one experiment. */
const MERGE_MUST_AGREE = [
  'steps', 'batch', 'context', 'width', 'blocks', 'heads', 'lr', 'clip', 'evalEvery', 'evalBatches', 'backend', 'quick',
] as const satisfies readonly (keyof ExperimentConfig)[];

/**
 * One record from the records of several invocations of the same experiment (e.g. split across
 * days or machines' free hours): their runs in `order` of mixers, then by seed; the configured
 * mixers and seeds united, and `pending` the (mixer, seed) pairs of that union still missing;
 * the wall times added; a note per later invocation saying what it trained, when and how.
 * Summary and verdicts are recomputed from the united runs.
 *
 * @throws when the records differ in a training setting, or two train the same (mixer, seed).
 */
export function mergeRecords(records: readonly ExperimentRecord[], order: readonly string[]): ExperimentRecord {
  if (records.length === 0) throw new Error('mergeRecords needs at least one record; received none.');
  const [first] = records as [ExperimentRecord, ...ExperimentRecord[]];
  for (const [i, r] of records.entries()) {
    for (const key of MERGE_MUST_AGREE) {
      if (r.config[key] !== first.config[key]) {
        throw new Error(`the records differ in ${key}: the first has ${JSON.stringify(first.config[key])}, record ${i + 1} ` +
          `(${r.date}) has ${JSON.stringify(r.config[key])}; only runs trained the same way are one experiment.`);
      }
    }
  }
  const key = (r: RunRecord) => `${r.mixer} seed ${r.seed}`;
  const seen = new Map<string, string>();
  for (const r of records) {
    for (const run of r.runs) {
      const earlier = seen.get(key(run));
      if (earlier != null) throw new Error(`${key(run)} was trained twice, by the invocations of ${earlier} and ${r.date}; merge one of them.`);
      seen.set(key(run), r.date);
    }
  }
  const rank = (mixer: string) => (order.includes(mixer) ? order.indexOf(mixer) : order.length);
  const union = <T>(xs: T[][]) => [...new Set(xs.flat())];
  const mixers = union(records.map((r) => r.config.mixers)).sort((a, b) => rank(a) - rank(b));
  const seeds = union(records.map((r) => r.config.seeds)).sort((a, b) => a - b);
  const runs = records.flatMap((r) => r.runs).sort((a, b) => rank(a.mixer) - rank(b.mixer) || a.seed - b.seed);
  const present = new Set(runs.map(key));
  const pending = mixers.flatMap((mixer) => seeds.map((seed) => `${mixer} seed ${seed}`)).filter((k) => !present.has(k)).length;
  const notes = records.flatMap((r, i) => {
    const trained = union([r.runs.map((run) => run.mixer)]).sort((a, b) => rank(a) - rank(b));
    const bySeed = trained.map((m) => {
      const mine = r.runs.filter((run) => run.mixer === m).map((run) => run.seed).sort((a, b) => a - b);
      return `\`${m}\` (seed${mine.length > 1 ? 's' : ''} ${mine.join(', ')})`;
    });
    const own = r.notes ?? [];
    if (i === 0) return own;
    return [...own, `${bySeed.join(', ') || 'nothing'} trained by a further invocation, ${r.date}, ${r.config.jobs} run(s) at a time: ` +
      `\`npm run example:experiment -- ${r.config.args.join(' ')}\` (${minutes(r.wallMs)}), merged into this record with \`--merge\`.`];
  });
  const summary = summarize(runs);
  return {
    ...first,
    config: { ...first.config, mixers, seeds },
    machine: {
      ...first.machine,
      backends: union(records.map((r) => r.machine.backends)),
      adapters: union(records.map((r) => r.machine.adapters)),
    },
    wallMs: records.reduce((sum, r) => sum + r.wallMs, 0),
    pending, summary, claims: assessClaims(summary), runs,
    ...(notes.length > 0 ? { notes } : {}),
  };
}

/** The question the experiment asks, as written at the top of results.md and experiment.json. */
export const QUESTION =
  'Hilsenbek (2024, arXiv 2406.10906) claims that replacing attention by CausalGeneration gives a ' +
  'smaller model with a lower loss, and that adding an average context vector lowers the loss again. ' +
  'Does that hold for a small character language model on tiny Shakespeare, trained the same way with each mixer?';

/**
 * JSON indented by two spaces, except that arrays of plain values (e.g. a loss curve) and
 * objects of at most two plain values (e.g. `{ step, loss }`) stay on one line each, so that
 * experiment.json's per-step curves do not take a line per number. Parses back to what
 * `JSON.stringify(value)` gives.
 */
export function compactJson(value: unknown, indent = ''): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  const isArray = Array.isArray(value);
  const entries: [string | null, unknown][] = isArray
    ? (value as unknown[]).map((v) => [null, v])
    : Object.entries(value).filter(([, v]) => v !== undefined && typeof v !== 'function');
  const flat = entries.every(([, v]) => v === null || typeof v !== 'object');
  if (flat && (isArray || entries.length <= 2)) return JSON.stringify(value);
  const inner = `${indent}  `;
  const body = entries.map(([k, v]) => `${inner}${k === null ? '' : `${JSON.stringify(k)}: `}${compactJson(v, inner)}`);
  return isArray ? `[\n${body.join(',\n')}\n${indent}]` : `{\n${body.join(',\n')}\n${indent}}`;
}

function minutes(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${(s / 3600).toFixed(1)} h`;
}

/** Paths relative to results.md, for its images and links. */
export interface ResultLinks {
  /** The training-loss plot. */
  train: string;
  /** The validation-loss plot. */
  val: string;
  /** examples/char-lm/README.md. */
  charLm: string;
  /** docs/average-context.md. */
  averageContext: string;
}

/**
 * results.md for `record`, with images and links at `links` (paths relative to results.md).
 * Everything it states is computed from the record.
 */
export function renderResults(record: ExperimentRecord, links: ResultLinks): string {
  const { config: c, machine: m, summary, claims } = record;
  const n = c.seeds.length;
  const lines: string[] = [];
  lines.push('# CausalGeneration and AverageContext against attention: a small-scale check', '');
  if (c.quick) {
    lines.push(`> **A \`--quick\` check run (${c.steps} steps).** It shows that the experiment runs; its numbers say ` +
      'nothing about the question. Run the experiment without `--quick` for results.', '');
  }
  if (record.pending > 0) {
    lines.push(`> **Incomplete:** ${record.pending} run(s) had not finished when this file was written.`, '');
  }

  lines.push('## The question', '', QUESTION, '');
  lines.push('Here `softmax` (plain causal softmax attention, the baseline), `causalGeneration` and `averageContext` ' +
    'are the three mixers that test the claims. The other mixers of tfjs-mixers are trained the same way for reference. ' +
    'The author\'s code averages the context over the whole sequence, which lets training see future tokens. ' +
    `Our \`averageContext\` uses the causal running mean instead ([average-context.md](${links.averageContext})), ` +
    'so this checks the causal version of the second claim.', '');

  lines.push('## Configuration', '');
  lines.push(`- **Model:** the [char-lm](${links.charLm}) GPT: width D = ${c.width}, ${c.blocks} blocks, ` +
    `${c.heads} heads (attention-like mixers), context ${c.context} tokens, MLP 4·D. Only the mixer differs between models.`);
  lines.push(`- **Training:** ${c.steps} steps of ${c.batch}×${c.context} tokens, Adam with a constant learning rate ${c.lr}, ` +
    `gradient clipping at global norm ${c.clip || 'none'}. The same hyperparameters for every mixer; none was tuned for any mixer.`);
  lines.push(`- **Seeds:** ${c.seeds.join(', ')}. A seed fixes the weights' initialisation, the training batches and the ` +
    'validation batches, so with the same seed every mixer sees the same batches.');
  lines.push(`- **Validation:** the first 90 % of tiny Shakespeare trains, the last 10 % validates; each estimate is the ` +
    `mean loss over ${c.evalBatches} fixed batches (${(c.evalBatches * c.batch * c.context).toLocaleString('en-US')} tokens), ` +
    `${c.evalEvery > 0 ? `every ${c.evalEvery} steps and ` : ''}after the last step. Losses are in nats per character ` +
    '(ln 65 ≈ 4.17 is chance).');
  lines.push(`- **Machine:** ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.platform}; Node ${m.node}, ` +
    `@tensorflow/tfjs ${m.tfjs}; backend ${m.backends.join(' / ') || 'none reported'}` +
    `${m.adapters.length > 0 ? ` (adapter: ${m.adapters.join(' / ')})` : ''}; ${c.jobs} run(s) at a time, each in its own process.`);
  lines.push(`- **Date:** ${record.date}; the whole experiment took ${minutes(record.wallMs)}.`);
  lines.push(`- **Command:** \`npm run example:experiment --${c.args.length > 0 ? ` ${c.args.join(' ')}` : ''}\``);
  for (const note of record.notes ?? []) lines.push(`- **Note:** ${note}`);
  lines.push('');

  lines.push('## Results', '');
  lines.push(`${n === 1 ? 'Final losses are those of the one seed.' : `Final losses are the mean ± sample standard deviation over the ${n} seeds.`} ` +
    'Tokens/s is training throughput without the validations' +
    `${c.jobs > 1 ? `, measured while ${c.jobs} runs shared the machine` : ''}.`, '');
  lines.push('| mixer | parameters | final train loss | final val loss | tokens/s | time per run |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const s of summary) {
    const failed = s.failedSeeds.length > 0 ? ` (${s.failedSeeds.length} failed)` : '';
    lines.push(`| \`${s.mixer}\`${failed} | ${Number.isNaN(s.parameters) ? '—' : integer(s.parameters)} | ` +
      `${formatSpread(s.trainLoss)} | ${formatSpread(s.valLoss)} | ` +
      `${s.tokensPerSecond.n > 0 ? integer(s.tokensPerSecond.mean) : '—'} | ${s.wallMs.n > 0 ? minutes(s.wallMs.mean) : '—'} |`);
  }
  lines.push('');
  const failures = record.runs.filter((r): r is RunFailure => r.status === 'failed');
  if (failures.length > 0) {
    lines.push('Failed runs (left out of every number above):', '');
    for (const f of failures) lines.push(`- \`${f.mixer}\` seed ${f.seed}: ${f.error.split('\n')[0]}`);
    lines.push('');
  }
  lines.push(`![Training loss per mixer](${links.train})`, '');
  lines.push(`Training loss: each seed's per-step loss smoothed by a trailing mean over ${record.smoothing.window} ` +
    `step${record.smoothing.window === 1 ? '' : 's'}, then the mean over seeds${n > 1 ? '; the band spans the seeds\' min to max' : ''}.`, '');
  lines.push(`![Validation loss per mixer](${links.val})`, '');
  lines.push(`Validation loss at each evaluation, mean over seeds${n > 1 ? '; the band spans the seeds\' min to max' : ''}.`, '');

  lines.push('## The paper\'s claims at this scale', '');
  lines.push('A loss comparison counts only when the difference of the mean final validation losses is larger than the seed ' +
    'spread (the larger of the two standard deviations over seeds); otherwise it is inconclusive. ' +
    'With fewer than two seeds every loss comparison is inconclusive.', '');
  for (const claim of claims) lines.push(`- **${claim.claim}: ${claim.verdict}.** ${capitalize(claim.detail)}.`);
  lines.push('');
  if (c.quick) lines.push(`After ${c.steps} steps (\`--quick\`) these verdicts only show that the report works; they are no evidence either way.`, '');
  lines.push('These verdicts are for this one small configuration and this training length. They do not say how the ' +
    'mixers compare at other sizes, with longer training, or with hyperparameters tuned for each mixer.', '');
  return `${lines.join('\n')}`;
}

function capitalize(s: string): string {
  return s.length > 0 ? s[0]!.toUpperCase() + s.slice(1) : s;
}
