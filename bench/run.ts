/**
 * `npm run bench [-- --quick]`: every mixer's WGSL kernel against its tfjs-ops reference on
 * the webgpu backend, forward and forward+backward, validated before timing; a copy kernel as
 * the memory roofline; the two runtime paths for custom kernels; and the attention ops against
 * their references (flashAttention's: composed attention), with tfjs's matMul as the compute
 * roofline, plus flashAttention's split-K decode against its unsplit kernel, and flashAttention on
 * padded, packed and windowed inputs beside the unmasked kernel (bench/masked.ts). Prints markdown
 * and writes `bench/results/<adapter>.{json,md}`. `-- --minutes N` sets the masked section's
 * deadline (default 4 minutes); `-- --masked` runs that section alone and writes
 * `<adapter>.masked.{json,md}`; `-- --from T` starts that section at length T (a long run of the
 * largest lengths alone). Last, the generation section (bench/generation.ts): the char-lm
 * example's model generating with each mixer, time per token at contexts 1k–64k with the
 * in-place key/value cache against the concatenating one, and a 1k-token prefill against
 * stepping it; `-- --generation` runs that section alone (`-- --minutes N` is then its
 * deadline, default 8 minutes) and writes `<adapter>.generation.{json,md}`. The registry section
 * (bench/mixers.ts): every registered mixer's bench case, kernels against reference, forward and
 * forward+backward at T = 256–16384; `-- --mixers [--cases a,b]` runs it alone (for the named
 * mixers) and writes `<adapter>.mixers[.a+b].{json,md}`. The blocks section (bench/blocks.ts):
 * `ops.dense` and `ops.layerNorm` against tfjs's own ops; `-- --blocks` runs it alone and writes
 * `<adapter>.blocks.{json,md}`. `-- --attention` runs the attention section alone (with the copy
 * kernel its decode table compares with; `-- --minutes N` is then its deadline, default 9
 * minutes) and writes `<adapter>.attention.{json,md}`.
 * `-- --backend cpu|wasm|webgl` runs instead the ops off WebGPU on that backend (bench/backends.ts,
 * whose flags it reads; webgl in headless Chromium), writing `runs/<backend>-backends.{json,md}`. `-- --subgroups` runs any of
 * these on a device with the adapter's subgroups (registerSubgroupBackend), whose kernels' subgroup
 * paths then run, writing `subgroups-<adapter>.…` files; `-- --rows 1|2|4` fixes the tiled
 * attention passes' rows per invocation (`MIXERS_ATTENTION_ROWS`), writing `rows-<n>-<adapter>.…`;
 * `-- --splits n` the chunks of their other side (`MIXERS_ATTENTION_SPLITS`), `splits-<n>-<adapter>.…`;
 * `-- --dkv-keys registers|memory` where dK/dV keeps its key rows (`MIXERS_ATTENTION_DKV_KEYS`);
 * `-- --split-pass invocation|workgroup|subgroup` who folds a chunk of the split-K decode
 * (`MIXERS_ATTENTION_SPLIT_PASS`); `-- --forward rows|blocks` how the tiled attention forward
 * cuts a tile's work (`MIXERS_ATTENTION_FORWARD`), `-- --dq rows|blocks|blocks-dp-rows` and
 * `-- --dkv rows|blocks|blocks-dp-rows` how its backward's dQ and dK/dV do (`MIXERS_ATTENTION_DQ`, `MIXERS_ATTENTION_DKV`); `-- --average-run n` the chunks per invocation of
 * AverageContext's levels scan (`MIXERS_AVERAGE_CONTEXT_RUN`). `-- --no-robustness`, a diagnostic, has Dawn
 * compile every kernel without WebGPU's bounds checks (`no-robustness-<adapter>.…`), as no browser runs them.
 *
 * @packageDocumentation
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { measureAttention } from './attention.js';
import { MASKED_LENGTHS, MASKED_MINUTES, maskedAttentionMarkdown, measureMaskedAttention } from './masked.js';
import { SCAN_LENGTHS, measureSelectiveScan, selectiveScanMarkdown } from './selective-ssm.js';
import { mixers } from '../src/index.js';
import { MIXER_LENGTHS, measureMixers, mixersFromArgs, mixersMarkdown, type MixersReport } from './mixers.js';
import { GENERATION_MINUTES, generationMarkdown, measureGeneration, type GenerationReport } from './generation.js';
import { ATTENTION_LENGTHS, BATCH, DECODE_CACHES, LENGTHS, PASSES, WIDTH, benchCases, runCase, type BenchCase } from './cases.js';
import { RUNTIME_PATHS, copy, type RuntimePath } from './copy.js';
import { attentionMarkdown, gbps, slug, toMarkdown, writeReport, type CaseResult, type Measured, type Overhead, type PathResult, type Report } from './report.js';
import { agreement, type Validation } from './validation.js';
import { fence, median, timeInterleaved, type Budget } from './timing.js';
import { writePlots } from './plot.js';
import { benchFlags, startWebGPU } from './webgpu.js';
import { LIMITS } from './limits.js';
import { blocksMarkdown, measureBlocks, type BlockRow } from './blocks.js';

const TOLERANCE = 1e-4;
// validation has already run each side once (pipelines compiled), so one warm-up run suffices
const CASE_BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 30, budgetMs: 2000 };
const COPY_BUDGET: Budget = { warmup: 3, minIterations: 5, maxIterations: 50, budgetMs: 1500 };
const OVERHEAD = { elements: 1024, dispatches: 200, repeats: 9 };
const PATH_COPY_ELEMENTS = 4 * 1024 * 1024;
const SEED = 20241122;

const quick = process.argv.includes('--quick');
const maskedOnly = process.argv.includes('--masked');
const generationOnly = process.argv.includes('--generation');
const minutesArg = process.argv.indexOf('--minutes');
const maskedMinutes = minutesArg >= 0 ? Number(process.argv[minutesArg + 1]) : MASKED_MINUTES;
if (!(maskedMinutes > 0)) throw new Error(`bench: --minutes expects a number of minutes > 0, got ${process.argv[minutesArg + 1]}.`);
// `--results DIR` writes the report elsewhere (a bundled bench on a machine without the repo)
const resultsArg = process.argv.indexOf('--results');
const resultsDir = resultsArg >= 0 ? process.argv[resultsArg + 1] : new URL('./results/', import.meta.url).pathname;
const started = performance.now();
const log = (line: string) => console.error(`[bench] ${line}`);

// `--backend cpu|wasm|webgl`: the ops off WebGPU (bench/backends.ts), alone; no adapter needed
if (process.argv.includes('--backend')) {
  const { parseBackendFlags } = await import('./backends.js');
  const { measureBackends } = await import('./backends-run.js');
  await measureBackends(parseBackendFlags(process.argv), resultsDir, SEED, log);
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(0);
}

const { gpu, backend } = await startWebGPU('bench', benchFlags('bench', process.argv));
log(`adapter: ${gpu.description}${quick ? ' (--quick)' : ''}`);
const fromArg = process.argv.indexOf('--from');
const fromT = fromArg >= 0 ? Number(process.argv[fromArg + 1]) : 0;
const maskedLengths = (quick ? MASKED_LENGTHS.quick : MASKED_LENGTHS.full).filter((T) => T >= fromT);
if (maskedLengths.length === 0) throw new Error(`bench: --from ${process.argv[fromArg + 1]} leaves no masked length to run.`);

/** Reports failures and leaks, releases the adapter and exits: 1 when `failed` cases failed validation. */
async function finish(failed: number): Promise<never> {
  if (failed > 0) console.error(`[bench] !!! ${failed} case(s) failed validation and were not timed.`);
  if (tf.memory().numTensors !== 0) console.error(`[bench] !!! ${tf.memory().numTensors} tensor(s) still allocated at exit.`);
  // frees tfjs's GPU buffer pool
  tf.removeBackend('webgpu');
  gpu.uninstall();
  // Node exits by itself here once navigator.gpu is gone (checked on SwiftShader), but a driver
  // that keeps a handle open would hang CI: flush the output, then exit explicitly
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(failed > 0 ? 1 : 0);
}

/**
 * Writes one section run alone (`--masked`, `--generation`): prints its markdown under `title`,
 * saves `<adapter>.<name>[.quick].{json,md}`, and exits with `failed` validations.
 */
async function finishSection(name: string, title: string, body: string, data: object, failed: number): Promise<never> {
  const markdown = `# ${title}: ${gpu.description}\n\n${new Date().toISOString()} · Node ${process.version} (polls ${gpu.poll}) · ` +
    `tfjs ${tf.version.tfjs}${quick ? ' · --quick' : ''}\n\n${body}\n`;
  console.log(markdown);
  mkdirSync(resultsDir, { recursive: true });
  const base = join(resultsDir, `${slug(gpu.description)}.${name}${quick ? '.quick' : ''}`);
  writeFileSync(`${base}.json`, `${JSON.stringify({ adapter: gpu.description, poll: gpu.poll, date: new Date().toISOString(), quick, [name]: data }, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  log(`wrote ${base}.json and .md`);
  return finish(failed);
}

if (maskedOnly) {
  const masked = await measureMaskedAttention(backend, maskedLengths, SEED, TOLERANCE, log, maskedMinutes);
  await finishSection('masked', 'Masked attention', maskedAttentionMarkdown(masked), masked,
    masked.results.filter((r) => r.validation && !r.validation.ok).length);
}

if (process.argv.includes('--mixers')) {
  const chosen = mixersFromArgs(process.argv);
  const registry = await measureMixers(backend, chosen, quick ? MIXER_LENGTHS.quick : MIXER_LENGTHS.full, SEED, log);
  await finishSection(chosen.length < mixers.length ? `mixers.${chosen.map((m) => m.name).join('+')}` : 'mixers', 'Every registered mixer', mixersMarkdown(registry), registry,
    registry.rows.filter((r) => r.validation && !r.validation.ok).length);
}

if (process.argv.includes('--blocks')) {
  const blocks = await measureBlocks(backend, quick, SEED, TOLERANCE, log);
  await finishSection('blocks', 'Blocks', blocksMarkdown(blocks), blocks, blocks.filter((r) => !r.validation.ok).length);
}

const lengths = quick ? LENGTHS.quick : LENGTHS.full;
// the copy kernel's size: the mixers' largest input
const largest = BATCH * Math.max(...lengths) * WIDTH;
const attentionSizes = {
  lengths: quick ? ATTENTION_LENGTHS.quick : ATTENTION_LENGTHS.full,
  caches: quick ? DECODE_CACHES.quick : DECODE_CACHES.full,
};

if (process.argv.includes('--attention')) {
  // `--minutes N`: the section's deadline instead of the whole bench's (reported in its limits)
  if (minutesArg >= 0) LIMITS.benchMinutes = maskedMinutes;
  const { runKernel: copyRate } = await measureCopies(['runKernel'], largest);
  const attention = await measureAttention(backend, attentionSizes, SEED, TOLERANCE, copyRate.gbps, started, log);
  const copyLine = `Copy kernel (the decode table's % copy): ${largest} floats in ${copyRate.medianMs.toFixed(2)} ms, ` +
    `${copyRate.gbps.toFixed(2)} GB/s, ${copyRate.iterations} iterations.`;
  await finishSection('attention', 'Attention', `${copyLine}\n\n${attentionMarkdown(attention, TOLERANCE).join('\n')}`, attention,
    [...attention.decode.cases, ...attention.ops.flatMap((o) => o.cases)].filter((c) => c.validation && !c.validation.ok).length);
}

if (generationOnly) {
  const generation = await measureGeneration(backend, {
    quick, minutes: minutesArg >= 0 ? maskedMinutes : GENERATION_MINUTES, seed: SEED, tolerance: TOLERANCE, log,
  });
  await finishSection('generation', 'Generation', generationMarkdown(generation), generation,
    generation.steps.filter((r) => r.validation && !r.validation.ok).length);
}

/** Kernel against reference on the same input; the case is timed only if they agree. */
async function validate(c: BenchCase, x: tf.Tensor3D, dy: tf.Tensor3D): Promise<Validation> {
  const kernel = runCase(c, 'webgpu', x, dy);
  const reference = runCase(c, 'reference', x, dy);
  const [k, r] = await Promise.all([kernel.data(), reference.data()]);
  tf.dispose([kernel, reference]);
  return agreement([[k, r]], TOLERANCE);
}

/** Validates then times one case on both sides. */
async function measureCase(c: BenchCase, copyGbps: number): Promise<CaseResult> {
  const [B, T, D] = c.shape;
  const label = `${c.mixer.name} ${c.pass} T=${T}`;
  const x = tf.randomUniform(c.shape, -1, 1, 'float32', SEED) as tf.Tensor3D;
  const dy = tf.randomUniform(c.shape, -1, 1, 'float32', SEED + 1) as tf.Tensor3D;
  try {
    const validation = await validate(c, x, dy);
    const base = { mixer: c.mixer.name, pass: c.pass, B, T, D, bytes: c.bytes, validation };
    if (!validation.ok) {
      console.error(`\n[bench] !!! VALIDATION FAILED: ${label}: max|kernel − reference| = ${validation.maxAbsDiff} ` +
        `against max|reference| = ${validation.maxAbsReference} (relative ${validation.relative}, tolerance ${TOLERANCE}). ` +
        'Not timed.\n');
      return base;
    }
    const { kernel, reference } = await timeInterleaved(backend, {
      kernel: () => runCase(c, 'webgpu', x, dy),
      reference: () => runCase(c, 'reference', x, dy),
    }, CASE_BUDGET);
    const kernelGbps = gbps(c.bytes, kernel.medianMs);
    log(`${label}: kernel ${kernel.medianMs.toFixed(2)} ms, reference ${reference.medianMs.toFixed(2)} ms`);
    return {
      ...base,
      webgpu: { ...kernel, gbps: kernelGbps, percentOfCopy: (100 * kernelGbps) / copyGbps },
      reference: { ...reference, gbps: gbps(c.bytes, reference.medianMs) },
      speedup: reference.medianMs / kernel.medianMs,
    };
  } finally {
    tf.dispose([x, dy]);
  }
}

/** A copy must reproduce its input exactly before it is timed. */
async function checkCopy(x: tf.Tensor1D, path: RuntimePath): Promise<void> {
  const y = copy(backend, x, path);
  const [a, b] = await Promise.all([x.data(), y.data()]);
  y.dispose();
  if (!a.every((v, i) => v === b[i])) throw new Error(`bench: the ${path} copy does not reproduce its input.`);
}

/** The copy at `elements` floats through the given paths, validated, then timed interleaved. */
async function measureCopies<P extends RuntimePath>(paths: readonly P[], elements: number): Promise<Record<P, Measured>> {
  const x = tf.randomUniform([elements], -1, 1, 'float32', SEED) as tf.Tensor1D;
  try {
    for (const path of paths) await checkCopy(x, path);
    const runs = Object.fromEntries(paths.map((p) => [p, () => copy(backend, x, p)])) as Record<P, () => tf.Tensor>;
    const timings = await timeInterleaved(backend, runs, COPY_BUDGET);
    return Object.fromEntries(paths.map((p) => [p, { ...timings[p], gbps: gbps(8 * elements, timings[p].medianMs) }])) as
      Record<P, Measured>;
  } finally {
    x.dispose();
  }
}

/**
 * Per-dispatch cost of each path from bursts of tiny copies: the CPU time to record a burst
 * (tfjs submits every WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches) and the fenced time to
 * finish it. The paths alternate burst by burst, so drift in the adapter hits both alike.
 */
async function dispatchOverhead(): Promise<Record<RuntimePath, Overhead>> {
  const x = tf.randomUniform([OVERHEAD.elements], -1, 1, 'float32', SEED) as tf.Tensor1D;
  const record: Record<RuntimePath, number[]> = { runKernel: [], runWebGPUProgram: [] };
  const fenced: Record<RuntimePath, number[]> = { runKernel: [], runWebGPUProgram: [] };
  for (const path of RUNTIME_PATHS) await checkCopy(x, path);
  for (let r = -1; r < OVERHEAD.repeats; r++) {
    for (const path of RUNTIME_PATHS) {
      await fence(backend);
      const start = performance.now();
      // each output is freed at once; tfjs keeps its buffer until the batch is submitted
      for (let i = 0; i < OVERHEAD.dispatches; i++) copy(backend, x, path).dispose();
      const recorded = performance.now();
      await fence(backend);
      const done = performance.now();
      // the first round is a warm-up
      if (r < 0) continue;
      record[path].push(((recorded - start) * 1000) / OVERHEAD.dispatches);
      fenced[path].push(((done - start) * 1000) / OVERHEAD.dispatches);
    }
  }
  x.dispose();
  const summary = (path: RuntimePath) => ({ recordUs: median(record[path]), fencedUs: median(fenced[path]) });
  return { runKernel: summary('runKernel'), runWebGPUProgram: summary('runWebGPUProgram') };
}

const { runKernel: roofline } = await measureCopies(['runKernel'], largest);
log(`roofline: copy of ${largest} floats ${roofline.medianMs.toFixed(2)} ms, ${roofline.gbps.toFixed(2)} GB/s`);

const overhead = await dispatchOverhead();
const bandwidth = await measureCopies(RUNTIME_PATHS, PATH_COPY_ELEMENTS);
const paths = {} as Record<RuntimePath, PathResult>;
for (const path of RUNTIME_PATHS) {
  paths[path] = { ...overhead[path], bandwidth: bandwidth[path] };
  log(`${path}: ${paths[path].recordUs.toFixed(0)} µs/dispatch to record, ${paths[path].fencedUs.toFixed(0)} µs fenced, ` +
    `${paths[path].bandwidth.gbps.toFixed(2)} GB/s`);
}

const cases: CaseResult[] = [];
for (const c of benchCases(lengths)) cases.push(await measureCase(c, roofline.gbps));

const attention = await measureAttention(backend, attentionSizes, SEED, TOLERANCE, roofline.gbps, started, log);

const maskedAttention = await measureMaskedAttention(backend, maskedLengths, SEED, TOLERANCE, log, maskedMinutes);

const selectiveScan = await measureSelectiveScan(backend, quick ? SCAN_LENGTHS.quick : SCAN_LENGTHS.full, SEED, roofline.gbps, log);

const registry = await measureMixers(backend, mixers, quick ? MIXER_LENGTHS.quick : MIXER_LENGTHS.full, SEED, log);

const generation = await measureGeneration(backend, { quick, minutes: GENERATION_MINUTES, seed: SEED, tolerance: TOLERANCE, log });

const blocks = await measureBlocks(backend, quick, SEED, TOLERANCE, log);

const report: Report & { generation: GenerationReport; mixers: MixersReport; blocks: BlockRow[] } = {
  adapter: gpu.description,
  poll: gpu.poll,
  date: new Date().toISOString(),
  node: process.version,
  tfjs: tf.version.tfjs,
  quick,
  bytesFormula: {
    forward: PASSES.forward.formula,
    'forward+backward': PASSES['forward+backward'].formula,
    copy: '8·N (read N floats, write N floats)',
  },
  tolerance: TOLERANCE,
  roofline: { elements: largest, bytes: 8 * largest, ...roofline },
  cases,
  runtimePaths: {
    overhead: { elements: OVERHEAD.elements, dispatches: OVERHEAD.dispatches },
    bandwidth: { elements: PATH_COPY_ELEMENTS, bytes: 8 * PATH_COPY_ELEMENTS },
    ...paths,
  },
  attention,
  maskedAttention,
  selectiveScan,
  mixers: registry,
  generation,
  blocks,
  wallSeconds: (performance.now() - started) / 1000,
};
const markdown = `${toMarkdown(report)}\n\n${maskedAttentionMarkdown(maskedAttention)}\n\n${selectiveScanMarkdown(selectiveScan)}\n\n` +
  `${mixersMarkdown(registry)}\n\n${generationMarkdown(generation)}\n\n${blocksMarkdown(blocks)}\n`;
console.log(markdown);
const written = writeReport(resultsDir, report, markdown);
for (const file of [...written, ...writePlots(written[0]!.replace(/\.json$/, ''), report)]) log(`wrote ${file}`);

await finish([...cases, ...selectiveScan.cases, ...registry.rows, ...maskedAttention.results, ...attention.decode.cases, ...generation.steps,
  ...attention.ops.flatMap((o) => o.cases), ...blocks].filter((c) => c.validation && !c.validation.ok).length);
