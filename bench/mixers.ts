/**
 * The registry section of `npm run bench`: every registered mixer's bench case (its
 * descriptor's `benchCase`: the main op at B = 1 and the case's own sizes, e.g. H = 4, K = 64)
 * through its WGSL kernels against its tfjs-ops reference on webgpu, forward and
 * forward+backward (every input's gradient) at T = 256 to 16384, validated within the
 * descriptor's tolerance before timing. The reference is skipped where one run of it is
 * predicted (linearly in T from the last one timed) to exceed {@link REFERENCE_RUN_S}; the
 * kernel is still timed. Per mixer and pass, the log-log slope of the kernel's time against T
 * over the lengths says how it grows (1 linear, 2 quadratic). A mixer joins this section through
 * its descriptor alone. `npm run bench -- --mixers [--cases a,b]` runs it alone, for the named
 * mixers only with `--cases`.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { mixerNamed, mixers as allMixers, type Implementation, type MixerCase, type MixerDescriptor } from '../src/index.js';
import { probe } from './cases.js';
import { agreement, type Validation } from './validation.js';
import { timeInterleaved, type Budget, type Timing } from './timing.js';

export const MIXER_LENGTHS = { quick: [256, 1024], full: [256, 1024, 4096, 16384] };
type Pass = 'forward' | 'forward+backward';
const PASSES: Pass[] = ['forward', 'forward+backward'];
/** The reference is skipped where one run of it is predicted to exceed this. */
const REFERENCE_RUN_S = 60;
const BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 20, budgetMs: 2000 };

/** One mixer, pass and length. */
export interface MixerRow {
  mixer: string;
  op: string;
  pass: Pass;
  T: number;
  /** Absent where the reference was skipped (the kernel was validated at the shorter lengths). */
  validation?: Validation;
  kernel?: Timing;
  reference?: Timing;
  speedup?: number;
  /** Why the reference was not timed. */
  skipped?: string;
}

export interface MixersReport {
  /** Each mixer's case, in words, and its tolerance. */
  cases: Array<{ mixer: string; op: string; about: string; tolerance: number }>;
  referenceRunS: number;
  rows: MixerRow[];
  /** Per mixer and pass, the log-log slope of the kernel's time over the lengths. */
  slopes: Array<{ mixer: string; pass: Pass; from: number; to: number; slope: number }>;
}

/** The output, or every input's gradient of ⟨output, dOut⟩. */
function runPass(c: MixerCase, pass: Pass, implementation: Implementation, dOut: tf.Tensor): tf.Tensor[] {
  if (pass === 'forward') return [c.run(implementation, c.inputs)];
  return tf.tidy(() => tf.grads((...xs: tf.Tensor[]) => c.run(implementation, xs))(c.inputs, dOut));
}

async function readAll(ts: tf.Tensor[]): Promise<Float32Array[]> {
  const out = await Promise.all(ts.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(ts);
  return out;
}

/** The mixers `--cases a,b` names, or every registered one. */
export function mixersFromArgs(argv: string[]): readonly MixerDescriptor[] {
  const at = argv.indexOf('--cases');
  if (at < 0) return allMixers;
  return (argv[at + 1] ?? '').split(',').map((name) => mixerNamed(name, 'bench --mixers --cases'));
}

/** Validates, then times every mixer given, pass and length. */
export async function measureMixers(backend: WebGPUBackend, mixers: readonly MixerDescriptor[], lengths: number[], seed: number,
  log: (line: string) => void): Promise<MixersReport> {
  const rows: MixerRow[] = [];
  const cases: MixersReport['cases'] = [];
  for (const m of mixers) {
    const { op, about } = probe(m);
    cases.push({ mixer: m.name, op, about, tolerance: m.kernels.tolerance });
    for (const pass of PASSES) {
      let lastReference: { T: number; ms: number } | undefined;
      for (const T of lengths) {
        const c = m.benchCase(T, seed);
        const dOut = tf.randomNormal(c.outputShape, 0, 1, 'float32', seed + 99);
        const label = `${m.name} ${pass} T=${T}`;
        try {
          const predictedS = lastReference ? (lastReference.ms * T) / lastReference.T / 1000 : 0;
          const skip = predictedS > REFERENCE_RUN_S;
          const kernelOut = await readAll(runPass(c, pass, 'webgpu', dOut));
          let validation: Validation | undefined;
          if (!skip) {
            const start = performance.now();
            const referenceOut = await readAll(runPass(c, pass, 'reference', dOut));
            lastReference = { T, ms: performance.now() - start };
            validation = agreement(kernelOut.map((k, i) => [k, referenceOut[i]!]), m.kernels.tolerance);
          }
          const row: MixerRow = { mixer: m.name, op: c.op, pass, T, ...(validation ? { validation } : {}) };
          rows.push(row);
          if (validation && !validation.ok) {
            console.error(`\n[bench] !!! VALIDATION FAILED: ${label}: relative ${validation.relative} (tolerance ${m.kernels.tolerance}). Not timed.\n`);
            continue;
          }
          const contenders: Record<string, () => tf.TensorContainer> = { kernel: () => runPass(c, pass, 'webgpu', dOut) };
          if (!skip) contenders.reference = () => runPass(c, pass, 'reference', dOut);
          const t = await timeInterleaved(backend, contenders, BUDGET);
          row.kernel = t.kernel;
          if (t.reference) {
            row.reference = t.reference;
            row.speedup = t.reference.medianMs / t.kernel!.medianMs;
          } else {
            row.skipped = `one run predicted at ${predictedS.toFixed(0)} s (limit ${REFERENCE_RUN_S} s)`;
          }
          log(`${label}: kernel ${t.kernel!.medianMs.toFixed(1)} ms` +
            (t.reference ? `, reference ${t.reference.medianMs.toFixed(1)} ms (${row.speedup!.toFixed(1)}×)` : ', reference skipped'));
        } finally {
          tf.dispose([...c.inputs, ...c.constants, dOut]);
        }
      }
    }
  }
  const slopes: MixersReport['slopes'] = [];
  for (const m of mixers) for (const pass of PASSES) {
    const timed = rows.filter((r) => r.mixer === m.name && r.pass === pass && r.kernel);
    if (timed.length < 2) continue;
    const [a, b] = [timed[0]!, timed[timed.length - 1]!];
    slopes.push({ mixer: m.name, pass, from: a.T, to: b.T, slope: Math.log(b.kernel!.medianMs / a.kernel!.medianMs) / Math.log(b.T / a.T) });
  }
  return { cases, referenceRunS: REFERENCE_RUN_S, rows, slopes };
}

const fixed = (v: number | undefined, digits: number) => (v === undefined ? '–' : v.toFixed(digits));

/** The section's markdown. */
export function mixersMarkdown(r: MixersReport): string {
  return [
    '## Every registered mixer: its bench case, kernels against reference',
    '',
    ...r.cases.map((c) => `- \`${c.mixer}\`: ops.${c.op}, ${c.about}; tolerance ${c.tolerance}`),
    '',
    `Validated before timing; the reference is skipped where one run is predicted over ${r.referenceRunS} s.`,
    '',
    '| mixer | pass | T | kernel ms | reference ms | speed-up | validation |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...r.rows.map((row) => `| ${row.mixer} | ${row.pass} | ${row.T} | ${fixed(row.kernel?.medianMs, 2)} | ` +
      `${row.reference ? fixed(row.reference.medianMs, 2) : row.skipped ? `skipped: ${row.skipped}` : '–'} | ` +
      `${row.speedup ? `${row.speedup.toFixed(1)}×` : '–'} | ` +
      `${!row.validation ? 'not compared (validated at the shorter lengths)' : row.validation.ok ? `ok (rel ${row.validation.relative.toExponential(1)})` : 'FAILED'} |`),
    '',
    '| mixer | pass | T from | T to | log-log slope of the kernel time |',
    '| --- | --- | --- | --- | --- |',
    ...r.slopes.map((s) => `| ${s.mixer} | ${s.pass} | ${s.from} | ${s.to} | ${s.slope.toFixed(2)} |`),
  ].join('\n');
}
