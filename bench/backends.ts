/**
 * The `--backend cpu|wasm|webgl` section of `npm run bench`: what the ops cost where they run their
 * tfjs-ops path instead of the WGSL kernels. On that backend, forward+backward (the gradients
 * of ⟨op(inputs), dOut⟩ with respect to every input) against T for:
 *
 * - every mixer of the library's registry (`mixers`), its descriptor's bench case through its
 *   main op with `implementation: 'auto'` (what a user gets there): the attention ops causal at
 *   B = 1, H = Hkv = 4, K = 64 (BlockSparse with its default layout), Aaren and
 *   GatedLinearAttention on inputs of the same shape, `ops.selectiveScan` at B = 1, E = 64, N = 16
 *   with D, z and deltaBias, and so on for any mixer added to the registry;
 * - composed attention: the causal softmax attention a user writes by hand in tfjs ops (matMul,
 *   scale, a causal −1e9 bias built once per T, softmax, matMul; tfjs's autodiff), the baseline
 *   of the ratios;
 * - a per-step scan on `ops.selectiveScan`'s inputs, written here in tfjs ops the way the
 *   reference was written before issue 15 (one `[B, E, N]` update per step), so that a run
 *   reports the scan's speed-up over it by itself.
 *
 * Every case runs interleaved with the others at the same T, sample by sample, so that load on
 * the machine falls on all alike. Its first run at a length is profiled (tfjs's kernel records,
 * as `tf.profile` reads them: the peak of the bytes tfjs holds in tensors, less the bytes live
 * before) and checked: composed attention against `flashAttention`, and the per-step scan
 * against `ops.selectiveScan`. A case
 * stops at the first length whose predicted run exceeds the time budget or whose predicted peak
 * (the peak at the previous length × (T / T_prev)²) exceeds the memory budget, and at any later
 * length after a run that went over the time budget. This file measures, wherever tfjs runs (in
 * Node for cpu and wasm, in a headless Chromium page for webgl); backends-run.ts starts it and
 * writes `bench/results/runs/<backend>-backends.{json,md}` with `uptime` before and after.
 *
 * `npm run bench -- --backend cpu|wasm|webgl [--max-t T] [--max-gib G] [--max-run-s S] [--minutes M] [--cases a,b] [--label TEXT]`
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { mixers as libraryMixers, type MixerCase, type MixerDescriptor } from '../src/index.js';
import { ATTENTION, attentionTolerance, causalBias, composedAttention, probe } from './cases.js';
import { agreement, type Validation } from './validation.js';
import { SCAN_TOLERANCE } from './selective-ssm.js';
import { median } from './timing.js';

/** The backends this section runs on: cpu and wasm in Node, webgl in headless Chromium. */
export const BENCH_BACKENDS = ['cpu', 'wasm', 'webgl'] as const;
export type BenchBackend = (typeof BENCH_BACKENDS)[number];

/** Sequence lengths, doubling, so that the memory rule's (T / T_prev)² is 4. */
export const BACKEND_LENGTHS = [256, 512, 1024, 2048, 4096, 8192, 16384] as const;
/** The selective scan's shape (the issue's: B = 1, E = 64, N = 16). */
export const BACKEND_SCAN = { B: 1, E: 64, N: 16 } as const;

/** The section's budgets, each set by a flag. */
export interface BackendBudgets {
  /** `--max-gib`: a case is skipped where its predicted peak exceeds this many GiB. */
  maxGiB: number;
  /** `--max-run-s`: a case is skipped where one run is predicted over this; a run that goes over it ends the case. */
  maxRunS: number;
  /** `--minutes`: a case is skipped where its runs at a length would end the section after this. */
  minutes: number;
  /** `--max-t`: the longest T (a run of the short lengths alone). */
  maxT: number;
}

const DEFAULT_BUDGETS: BackendBudgets = { maxGiB: 3, maxRunS: 60, minutes: 40, maxT: 16384 };

/** Samples per case and length after the profiled run; one sample only where a run takes over `longRunS`. */
const SAMPLING = { minSamples: 3, maxSamples: 10, budgetMs: 3000, longRunS: 5 };

/** A log-log slope at most this over a range of T counts as linear (noise of ±10% per point allowed). */
export const LINEAR_SLOPE = 1.2;

/** The issue's targets, judged where this run has the numbers. */
export const BACKEND_TARGETS = {
  /** wasm: flashAttention forward+backward at T = 16384 completes with a peak under this, MiB. */
  flashPeakMiB: 512,
  flashAtT: 16384,
  /** wasm: every attention op at least as fast as composed attention over these lengths, and BlockSparse linear. */
  fasterFrom: 256,
  fasterTo: 2048,
  /** cpu: ops.selectiveScan at least this much faster than the per-step scan, at this T. */
  scanSpeedup: 10,
  scanAtT: 1024,
} as const;

/**
 * The cases, in report order (`--cases` picks some): composed attention, every mixer of the
 * library's registry by its bench case's op, and the per-step scan.
 */
export const CASE_NAMES: readonly string[] = ['composed', ...libraryMixers.map((m) => m.ops[0]!), 'per-step scan'];
export type CaseName = string;

/** What `npm run bench -- --backend …` asked for. */
export interface BackendsOptions {
  backend: BenchBackend;
  budgets: BackendBudgets;
  /** `--cases a,b`: the cases to run (default all); the ratios need composed, the scan target both scans. */
  cases: readonly CaseName[];
  /** `--label TEXT`: what code was measured (for example "before the chunked references"). */
  label: string;
}

/** A case's tensors at one length: the inputs it differentiates, dOut, and what it holds besides. */
interface Inputs {
  args: tf.Tensor[];
  dOut: tf.Tensor;
  held: tf.Tensor[];
}

/** One measured case. */
interface BenchCase {
  name: CaseName;
  about: string;
  /** Its tensors at length T, drawn from `seed`. */
  inputs(T: number, seed: number): Inputs;
  /** Forward+backward: the gradients with respect to every input. */
  run(x: Inputs): tf.Tensor[];
  /** Bytes the case keeps between runs that belong to it (composed attention's bias), counted into its peak. */
  residentBytes?(T: number): number;
}

const { B, H, Hkv, K } = ATTENTION;
/**
 * The selective scan one step at a time, as the reference was written before issue 15 (less its
 * handling of non-finite inputs): Δ = softplus(delta + deltaBias), every step's decay
 * exp(Δ ⊗ A) at once, then h ← decay_t·h + Δ_t·u_t ⊗ B_t and y_t = h·C_t per step, and
 * (y + D·u)·silu(z). The baseline of the issue's SelectiveSSM target.
 */
function perStepScan(u: tf.Tensor, delta: tf.Tensor, A: tf.Tensor, Bm: tf.Tensor, C: tf.Tensor, D: tf.Tensor, z: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  const dt = tf.softplus(tf.add(delta, bias));
  const decays = tf.unstack(tf.exp(tf.mul(dt.expandDims(3), A)), 1);
  const inputs = tf.unstack(tf.mul(dt, u).expandDims(3), 1);
  const Bs = tf.unstack(Bm.expandDims(2), 1);
  const Cs = tf.unstack(C.expandDims(2), 1);
  let h: tf.Tensor = tf.zeros([u.shape[0]!, u.shape[2]!, A.shape[1]!]);
  const ys: tf.Tensor[] = [];
  for (let t = 0; t < decays.length; t++) {
    h = tf.add(tf.mul(decays[t]!, h), tf.mul(inputs[t]!, Bs[t]!));
    ys.push(tf.sum(tf.mul(h, Cs[t]!), 2));
  }
  return tf.mul(tf.add(tf.stack(ys, 1), tf.mul(u, D)), tf.mul(z, tf.sigmoid(z)));
}

/** The vector-Jacobian product of `f` at `args` with `dOut`: every input's gradient. */
function gradients(f: (...a: tf.Tensor[]) => tf.Tensor, args: tf.Tensor[], dOut: tf.Tensor): tf.Tensor[] {
  return tf.tidy(() => tf.grads(f)(args, dOut));
}

/** dOut of a case, the same draw for every case whose output has this shape (so composed and flashAttention agree). */
const dOutOf = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed + 99);

/** A mixer of the registry: its bench case through `implementation: 'auto'`, what a user gets here. */
function registryCase(m: MixerDescriptor): BenchCase {
  const cases = new Map<Inputs, MixerCase>();
  return {
    name: m.ops[0]!,
    // read once a backend is set (a case draws tensors): its inputs at T = 1, with T written for the 1s of the lengths
    get about() {
      const c = probe(m);
      return `ops.${c.op}: ${c.about}; implementation 'auto', gradients of every input`;
    },
    inputs: (T, seed) => {
      const c = m.benchCase(T, seed);
      const x = { args: c.inputs, dOut: dOutOf(c.outputShape, seed), held: c.constants };
      cases.set(x, c);
      return x;
    },
    run: (x) => gradients((...args) => cases.get(x)!.run('auto', args), x.args, x.dOut),
  };
}

const SELECTIVE_SSM = libraryMixers.find((m) => m.name === 'selectiveSSM')!;

const CASES: readonly BenchCase[] = [
  {
    name: 'composed',
    about: 'hand-written: transpose to heads, matMul(q, kᵀ)·scale + causal −1e9 bias ([T, T], built once per T and counted in its peak), softmax, matMul; tfjs autodiff',
    inputs: (T, seed) => ({
      args: [H, Hkv, Hkv].map((heads, i) => tf.randomNormal([B, T, heads, K], 0, 1, 'float32', seed + i)),
      dOut: dOutOf([B, T, H, K], seed),
      held: [causalBias(T)],
    }),
    run: (x) => gradients((q, k, v) => composedAttention(q!, k!, v!, x.held[0] as tf.Tensor2D), x.args, x.dOut),
    residentBytes: (T) => 4 * T * T,
  },
  ...libraryMixers.map(registryCase),
  {
    name: 'per-step scan',
    about: "selectiveScan's case one step at a time in tfjs ops, as the reference was before issue 15 (written in this file); " +
      'the baseline of the scan target',
    inputs: (T, seed) => {
      const c = SELECTIVE_SSM.benchCase(T, seed);
      return { args: c.inputs, dOut: dOutOf(c.outputShape, seed), held: c.constants };
    },
    run: (x) => gradients((u, delta, A, Bm, C, D, z, bias) => perStepScan(u!, delta!, A!, Bm!, C!, D!, z!, bias!), x.args, x.dOut),
  },
];

/** One case at one length. */
export interface BackendRow {
  case: CaseName;
  T: number;
  /** Median of the unprofiled samples, ms. */
  medianMs?: number;
  minMs?: number;
  samples?: number;
  /** Peak of tfjs's tensor bytes during the profiled run, less the bytes live before it, plus the case's resident bytes; MiB. */
  peakMiB?: number;
  /** medianMs over composed attention's medianMs at the same T. */
  timeVsComposed?: number;
  /** peakMiB over composed attention's at the same T. */
  peakVsComposed?: number;
  /** log(ms / previous ms) / log(T / previous T): 1 is linear, 2 quadratic. */
  growth?: number;
  /** composed against flashAttention, the per-step scan against ops.selectiveScan (on the profiled runs). */
  validation?: Validation & { against: CaseName; tolerance: number };
  skipped?: string;
}

/** Per case: the log-log slope of time against T over a range. */
export interface Slope { case: CaseName; from: number; to: number; slope: number; linear: boolean }

/** The section's results. */
export interface BackendsReport {
  backend: BenchBackend;
  /** `--label`: what code was measured (for example "before the chunked references, src at <commit>"). */
  label: string;
  commit: string;
  date: string;
  /** Where it ran: Node's version, or the browser's and its WebGL renderer. */
  runtime: string;
  tfjs: string;
  /** wasm: the threads tfjs-backend-wasm runs (1 in Node). */
  threads?: number;
  uptimeBefore: string;
  uptimeAfter: string;
  budgets: BackendBudgets;
  shape: { attention: typeof ATTENTION & { causal: true }; scan: typeof BACKEND_SCAN };
  cases: Array<Pick<BenchCase, 'name' | 'about'>>;
  rows: BackendRow[];
  slopes: Slope[];
  targets: Array<{ backend: BenchBackend; target: string; result: string; met: boolean | undefined }>;
  /** wasm: the wasm heap after each length (it only grows: a high-water mark over the run so far), MiB. */
  wasmHeapMiB?: Record<number, number>;
  minutes: number;
}

/** What the section measures where tfjs runs; the runner adds the rest of the report. */
export type BackendsMeasurement = Omit<BackendsReport, 'label' | 'commit' | 'runtime' | 'uptimeBefore' | 'uptimeAfter'>;

const MiB = 2 ** 20;

/** Parses the section's flags from `argv`; throws on a bad value, naming the flag. */
export function parseBackendFlags(argv: readonly string[]): BackendsOptions {
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const backend = value('--backend');
  if (!BENCH_BACKENDS.includes(backend as BenchBackend)) {
    throw new Error(`bench: --backend expects one of ${BENCH_BACKENDS.join(', ')}; received ${backend}.`);
  }
  const positive = (flag: string, fallback: number) => {
    const raw = value(flag);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!(n > 0)) throw new Error(`bench: ${flag} expects a number > 0; received ${raw}.`);
    return n;
  };
  const budgets: BackendBudgets = {
    maxGiB: positive('--max-gib', DEFAULT_BUDGETS.maxGiB),
    maxRunS: positive('--max-run-s', DEFAULT_BUDGETS.maxRunS),
    minutes: positive('--minutes', DEFAULT_BUDGETS.minutes),
    maxT: positive('--max-t', DEFAULT_BUDGETS.maxT),
  };
  if (budgets.maxT < BACKEND_LENGTHS[0]) throw new Error(`bench: --max-t expects at least ${BACKEND_LENGTHS[0]}; received ${budgets.maxT}.`);
  const cases = (value('--cases')?.split(',') ?? [...CASE_NAMES]).map((c) => c.trim());
  const unknown = cases.filter((c) => !CASE_NAMES.includes(c as CaseName));
  if (unknown.length || cases.length === 0) {
    throw new Error(`bench: --cases expects names from ${CASE_NAMES.join(', ')}, comma-separated; received ${value('--cases')}.`);
  }
  return { backend: backend as BenchBackend, budgets, cases: cases as CaseName[], label: value('--label') ?? '' };
}

/** Selects and initialises the backend. */
async function startBackend(backend: BenchBackend): Promise<number | undefined> {
  if (backend === 'webgl') {
    if (!(await tf.setBackend('webgl'))) throw new Error('bench: the webgl backend failed to initialise.');
    return undefined;
  }
  if (backend === 'wasm') {
    // in Node the wasm backend loads its .wasm binary from node_modules by itself
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error('bench: the wasm backend failed to initialise.');
    return wasm.getThreadsCount();
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('bench: the cpu backend failed to initialise.');
  return undefined;
}

/** The wasm heap's size, bytes, or undefined on another backend. */
function wasmHeap(): number | undefined {
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
  return wasm?.HEAPU8?.buffer.byteLength;
}

/** The part of tfjs 4.22's engine state that `tf.profile` fills (tfjs-core's engine.ts). */
interface ProfilingState {
  profiling: boolean;
  activeProfile: { kernels: Array<{ totalBytesSnapshot: number }> };
}

/**
 * Runs `run` with tfjs's kernel profiling on and returns its result and the peak of the bytes
 * tfjs held in tensors after any of its kernels: `tf.profile`'s peakBytes, read from the same
 * records. `tf.profile` itself takes `Math.max(...records)`, which overflows the stack past
 * ~100k kernels (the per-step scan's at T = 4096).
 */
function profiled(run: () => tf.Tensor[]): { result: tf.Tensor[]; peakBytes: number } {
  const state = (tf.engine() as unknown as { state?: Partial<ProfilingState> }).state;
  if (typeof state?.profiling !== 'boolean' || !Array.isArray(state.activeProfile?.kernels)) {
    throw new Error(`bench: tfjs ${tf.version.tfjs}'s engine has no state.profiling / state.activeProfile.kernels ` +
      '(read as in tfjs 4.22), so the peak memory cannot be measured.');
  }
  const s = state as ProfilingState;
  s.activeProfile.kernels = [];
  s.profiling = true;
  let result: tf.Tensor[];
  try {
    result = run();
  } finally {
    s.profiling = false;
  }
  let peakBytes = 0;
  for (const k of s.activeProfile.kernels) peakBytes = Math.max(peakBytes, k.totalBytesSnapshot);
  s.activeProfile.kernels = [];
  return { result, peakBytes };
}

/** Least-squares slope of log(ms) against log(T). */
function logSlope(points: Array<[number, number]>): number {
  const xs = points.map(([T]) => Math.log(T));
  const ys = points.map(([, ms]) => Math.log(ms));
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const sxy = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0);
  const sxx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  return sxy / sxx;
}

/** Runs the section on the backend it names, where tfjs runs now (Node or a page), and returns what it measured. */
export async function runBackends(options: BackendsOptions, seed: number, log: (line: string) => void): Promise<BackendsMeasurement> {
  const { backend, budgets } = options;
  const cases = CASES.filter((c) => options.cases.includes(c.name));
  const threads = await startBackend(backend);
  const started = performance.now();
  const lengths = BACKEND_LENGTHS.filter((T) => T <= budgets.maxT);
  const rows: BackendRow[] = [];
  const wasmHeapMiB: Record<number, number> = {};
  // per case: its measured lengths (ms, peak) and, once it stops, why
  const history = new Map<CaseName, Array<{ T: number; ms: number; peak: number }>>(cases.map((c) => [c.name, []]));
  const stopped = new Map<CaseName, { T: number; reason: string }>();

  for (const T of lengths) {
    const active: BenchCase[] = [];
    // this length's rows, in CASES order
    const atT = new Map<CaseName, BackendRow>();
    for (const c of cases) {
      const earlier = stopped.get(c.name);
      const reason = earlier ? `stopped at T = ${earlier.T} (${earlier.reason.replace(/^skipped: /, '')})` : overBudget(history.get(c.name)!, T, budgets, started);
      if (reason) {
        if (!earlier) stopped.set(c.name, { T, reason });
        atT.set(c.name, { case: c.name, T, skipped: reason });
        log(`${c.name} T=${T}: ${reason}`);
      } else {
        active.push(c);
      }
    }
    const flush = () => rows.push(...cases.flatMap((c) => atT.get(c.name) ?? []));
    if (active.length === 0) {
      flush();
      continue;
    }
    const inputs = new Map(active.map((c) => [c.name, c.inputs(T, seed)]));
    try {
      const measured = new Map<CaseName, BackendRow & { outputs: Float32Array[]; profiledMs: number }>();
      for (const c of active) {
        const before = tf.memory();
        const start = performance.now();
        const profile = profiled(() => c.run(inputs.get(c.name)!));
        const profiledMs = performance.now() - start;
        const { result } = profile;
        const outputs = result.map((t) => t.dataSync() as Float32Array);
        tf.dispose(result);
        const after = tf.memory();
        if (after.numTensors !== before.numTensors) {
          throw new Error(`bench: ${c.name} at T = ${T} leaked ${after.numTensors - before.numTensors} tensor(s).`);
        }
        const peak = profile.peakBytes - before.numBytes + (c.residentBytes?.(T) ?? 0);
        measured.set(c.name, { case: c.name, T, peakMiB: peak / MiB, outputs, profiledMs });
        log(`${c.name} T=${T}: profiled run ${(profiledMs / 1000).toFixed(2)} s, peak ${(peak / MiB).toFixed(1)} MiB`);
      }
      validate(measured, 'composed', 'flashAttention', attentionTolerance(T));
      validate(measured, 'per-step scan', 'selectiveScan', SCAN_TOLERANCE);
      const timings = sampleInterleaved(active, inputs, measured, budgets.maxRunS);
      for (const c of active) {
        const row = measured.get(c.name)!;
        const t = timings.get(c.name)!;
        Object.assign(row, t);
        const past = history.get(c.name)!;
        const previous = past[past.length - 1];
        if (previous) row.growth = Math.log(t.medianMs / previous.ms) / Math.log(T / previous.T);
        past.push({ T, ms: t.medianMs, peak: row.peakMiB! * MiB });
        if (t.medianMs > budgets.maxRunS * 1000) {
          stopped.set(c.name, { T, reason: `its run took over the ${budgets.maxRunS} s budget` });
        }
      }
      const composed = measured.get('composed');
      for (const c of active) {
        const { outputs: _outputs, profiledMs: _profiledMs, ...row } = measured.get(c.name)!;
        if (composed?.medianMs && row.medianMs) row.timeVsComposed = row.medianMs / composed.medianMs;
        if (composed?.peakMiB && row.peakMiB !== undefined) row.peakVsComposed = row.peakMiB / composed.peakMiB;
        atT.set(c.name, row);
        log(`${c.name} T=${T}: ${row.medianMs!.toFixed(1)} ms (${row.samples} samples)` +
          (row.timeVsComposed ? `, ×${row.timeVsComposed.toFixed(2)} composed` : '') +
          (row.growth !== undefined ? `, growth T^${row.growth.toFixed(2)}` : '') +
          (row.validation ? `, ${row.validation.ok ? 'agrees' : 'DISAGREES'} with ${row.validation.against} (rel ${row.validation.relative.toExponential(1)})` : ''));
      }
      flush();
      const heap = wasmHeap();
      if (heap !== undefined) wasmHeapMiB[T] = heap / MiB;
    } finally {
      tf.dispose([...inputs.values()].flatMap((x) => [...x.args, x.dOut, ...x.held]));
    }
  }

  const slopes = slopesOf(rows);
  if (tf.memory().numTensors !== 0) log(`!!! ${tf.memory().numTensors} tensor(s) still allocated at the end.`);
  return {
    backend, date: new Date().toISOString(), tfjs: tf.version.tfjs, threads, budgets,
    shape: { attention: { ...ATTENTION, causal: true }, scan: BACKEND_SCAN },
    cases: cases.map(({ name, about }) => ({ name, about })),
    rows, slopes, targets: targetsOf(backend, rows, slopes),
    wasmHeapMiB: backend === 'wasm' ? wasmHeapMiB : undefined,
    minutes: (performance.now() - started) / 60_000,
  };
}

/** The file name a run's report takes under `runs/`, less its extension: the backend, the cases if not all, the longest T if cut. */
export function backendsFileName(options: BackendsOptions): string {
  const cases = CASES.filter((c) => options.cases.includes(c.name));
  const some = cases.length < CASES.length ? `.${cases.map((c) => c.name.replace(/\W+/g, '-')).join('+')}` : '';
  return `${options.backend}-backends${some}${options.budgets.maxT < BACKEND_LENGTHS[BACKEND_LENGTHS.length - 1]! ? `.upto${options.budgets.maxT}` : ''}`;
}

/**
 * Why a case is not run at T, predicted from its previous lengths, or undefined: a run over
 * the time budget (the last time × (T / T_prev)^e, e the least-squares log-log slope of all its
 * lengths within [1, 2], and 2 with fewer than three lengths: one noisy pair under load once
 * predicted a 2048-token dense run at 60 s that took 120), a peak over the memory budget (the
 * last peak × (T / T_prev)²), or the profiled run and the samples ending the section past its
 * deadline.
 */
function overBudget(past: Array<{ T: number; ms: number; peak: number }>, T: number, b: BackendBudgets, started: number): string | undefined {
  const last = past[past.length - 1];
  if (!last) return undefined;
  const e = past.length >= 3 ? Math.min(2, Math.max(1, logSlope(past.map((p) => [p.T, p.ms])))) : 2;
  const runMs = last.ms * (T / last.T) ** e;
  const peak = last.peak * (T / last.T) ** 2;
  if (peak > b.maxGiB * 2 ** 30) {
    return `skipped: predicted peak ${(peak / 2 ** 30).toFixed(2)} GiB (${(last.peak / MiB).toFixed(0)} MiB at T = ${last.T} × ${(T / last.T) ** 2}) ` +
      `over the ${b.maxGiB} GiB budget`;
  }
  if (runMs > b.maxRunS * 1000) return `skipped: a run predicted at ${(runMs / 1000).toFixed(0)} s (T^${e.toFixed(2)}) over the ${b.maxRunS} s budget`;
  const runs = runMs > SAMPLING.longRunS * 1000 ? 2 : 1 + SAMPLING.minSamples;
  const endMinutes = (performance.now() + runs * runMs - started) / 60_000;
  if (endMinutes > b.minutes) return `skipped: its runs would end the section at ~${endMinutes.toFixed(0)} min, past the ${b.minutes} min budget`;
  return undefined;
}

/** Compares a case's profiled outputs with another's, recording the result on the first. */
function validate(measured: Map<CaseName, BackendRow & { outputs: Float32Array[] }>, name: CaseName, against: CaseName, tolerance: number): void {
  const a = measured.get(name);
  const b = measured.get(against);
  if (!a || !b) return;
  a.validation = { ...agreement(a.outputs.map((o, i) => [o, b.outputs[i]!]), tolerance), against, tolerance };
  if (!a.validation.ok) {
    console.error(`\n[bench] !!! ${name} disagrees with ${against} at T = ${a.T}: relative ${a.validation.relative} ` +
      `(tolerance ${tolerance.toExponential(1)}).\n`);
  }
}

/**
 * Times the active cases by wall time, one sample of each in turn (the profiled run was the
 * warm-up): each takes at least {@link SAMPLING} minSamples and stops after budgetMs or
 * maxSamples; one sample where the profiled run took over longRunS, and none where it took
 * over `maxRunS` (its time is then the profiled run's, `samples` 0). cpu and wasm run
 * synchronously, so a run has finished when it returns; on webgl a sample ends by reading one
 * value of the run's last gradient, which WebGL returns once every shader before it has run.
 */
function sampleInterleaved(active: readonly BenchCase[], inputs: Map<CaseName, Inputs>, measured: Map<CaseName, { profiledMs: number }>, maxRunS: number):
  Map<CaseName, { medianMs: number; minMs: number; samples: number }> {
  const samples = new Map<CaseName, number[]>(active.map((c) => [c.name, []]));
  const wanted = (c: BenchCase) => {
    const ms = measured.get(c.name)!.profiledMs;
    return ms > maxRunS * 1000 ? 0 : ms > SAMPLING.longRunS * 1000 ? 1 : SAMPLING.minSamples;
  };
  const done = (c: BenchCase) => {
    const s = samples.get(c.name)!;
    const spent = s.reduce((x, y) => x + y, 0);
    return s.length >= SAMPLING.maxSamples || (s.length >= wanted(c) && (wanted(c) <= 1 || spent >= SAMPLING.budgetMs));
  };
  while (active.some((c) => !done(c))) {
    for (const c of active.filter((x) => !done(x))) {
      const before = tf.memory().numTensors;
      const start = performance.now();
      const result = c.run(inputs.get(c.name)!);
      if (tf.getBackend() === 'webgl') {
        const one = tf.tidy(() => tf.slice(tf.reshape(result[result.length - 1]!, [-1]), 0, 1));
        one.dataSync();
        one.dispose();
      }
      tf.dispose(result);
      samples.get(c.name)!.push(performance.now() - start);
      if (tf.memory().numTensors !== before) throw new Error(`bench: a sample of ${c.name} leaked tensors.`);
    }
  }
  return new Map(active.map((c) => {
    const s = samples.get(c.name)!;
    if (s.length === 0) return [c.name, { medianMs: measured.get(c.name)!.profiledMs, minMs: measured.get(c.name)!.profiledMs, samples: 0 }];
    return [c.name, { medianMs: median(s), minMs: Math.min(...s), samples: s.length }];
  }));
}

/** Per case, the log-log slope of time over the target's range and over every length it ran. */
function slopesOf(rows: readonly BackendRow[]): Slope[] {
  const slopes: Slope[] = [];
  for (const c of CASES) {
    const points = rows.filter((r) => r.case === c.name && r.medianMs !== undefined).map((r) => [r.T, r.medianMs!] as [number, number]);
    const ranges: Array<[number, number]> = [[BACKEND_TARGETS.fasterFrom, BACKEND_TARGETS.fasterTo], [points[0]?.[0] ?? 0, points[points.length - 1]?.[0] ?? 0]];
    for (const [from, to] of ranges) {
      const inRange = points.filter(([T]) => T >= from && T <= to);
      const [first, last] = [inRange[0]?.[0], inRange[inRange.length - 1]?.[0]];
      if (inRange.length < 2 || slopes.some((s) => s.case === c.name && s.from === first && s.to === last)) continue;
      const slope = logSlope(inRange);
      slopes.push({ case: c.name, from: first!, to: last!, slope, linear: slope <= LINEAR_SLOPE });
    }
  }
  return slopes;
}

/**
 * Issue 15's targets of this run's backend (wasm's or cpu's; none on webgl), judged where the run
 * has the numbers (undefined where it does not).
 */
function targetsOf(backend: BenchBackend, rows: readonly BackendRow[], slopes: readonly Slope[]): BackendsReport['targets'] {
  const t = BACKEND_TARGETS;
  const row = (name: CaseName, T: number) => rows.find((r) => r.case === name && r.T === T);
  const targets: BackendsReport['targets'] = [];
  // a target is judged only where the run reached its lengths: a case skipped there fails it
  const flash = row('flashAttention', t.flashAtT);
  targets.push({
    backend: 'wasm', target: `flashAttention forward+backward at T = ${t.flashAtT} completes with a peak under ${t.flashPeakMiB} MiB`,
    result: flash?.peakMiB !== undefined ? `ran, peak ${flash.peakMiB.toFixed(0)} MiB, ${(flash.medianMs! / 1000).toFixed(1)} s`
      : `did not run (${flash?.skipped ?? 'not reached'})`,
    met: backend !== 'wasm' || !flash ? undefined : flash.peakMiB !== undefined && flash.peakMiB < t.flashPeakMiB,
  });
  const range = BACKEND_LENGTHS.filter((T) => T >= t.fasterFrom && T <= t.fasterTo);
  const ratios = (['flashAttention', 'expressiveAttention', 'blockSparseAttention'] as const).map((name) => {
    const own = range.map((T) => [row(name, T), row('composed', T)] as const);
    const worst = Math.max(...own.map(([r]) => r?.timeVsComposed ?? Number.NaN));
    const reached = own.every(([r, c]) => r && c);
    return { name, worst, reached, ran: own.every(([r]) => r?.timeVsComposed !== undefined) };
  });
  targets.push({
    backend: 'wasm', target: `at T = ${t.fasterFrom}–${t.fasterTo} every attention op at least as fast as composed attention (time ratio ≤ 1)`,
    result: ratios.map((r) => `${r.name} worst ×${Number.isNaN(r.worst) ? '–' : r.worst.toFixed(2)}`).join(', '),
    met: backend !== 'wasm' || !ratios.every((r) => r.reached) ? undefined : ratios.every((r) => r.ran && r.worst <= 1),
  });
  const sparse = slopes.find((s) => s.case === 'blockSparseAttention' && s.from === t.fasterFrom && s.to === t.fasterTo);
  targets.push({
    backend: 'wasm', target: `blockSparseAttention's time linear in T over ${t.fasterFrom}–${t.fasterTo} (log-log slope ≤ ${LINEAR_SLOPE})`,
    result: sparse ? `slope ${sparse.slope.toFixed(2)}` : 'not measured',
    met: backend !== 'wasm' || !sparse ? undefined : sparse.linear,
  });
  const scan = row('selectiveScan', t.scanAtT);
  const perStep = row('per-step scan', t.scanAtT);
  const speedup = scan?.medianMs && perStep?.medianMs ? perStep.medianMs / scan.medianMs : undefined;
  targets.push({
    backend: 'cpu', target: `ops.selectiveScan forward+backward at least ${t.scanSpeedup}× faster than the per-step scan at T = ${t.scanAtT}`,
    result: speedup !== undefined ? `${scan!.medianMs!.toFixed(0)} ms against ${perStep!.medianMs!.toFixed(0)} ms: ${speedup.toFixed(2)}×` : 'not measured',
    met: backend !== 'cpu' || speedup === undefined ? undefined : speedup >= t.scanSpeedup,
  });
  return targets.filter((x) => x.backend === backend);
}

const fixed = (v: number | undefined, digits: number) => (v === undefined ? '–' : v.toFixed(digits));

/** The section as markdown: the budgets, one row per case and length, the slopes and the targets. */
export function backendsMarkdown(r: BackendsReport): string {
  const { attention: a, scan: s } = r.shape;
  const rows = r.rows.map((x) => {
    if (x.skipped) return `| ${x.T} | ${x.case} | ${x.skipped} | – | – | – | – | – | – |`;
    const checked = x.validation ? `${x.validation.ok ? 'agrees' : 'DISAGREES'} with ${x.validation.against} (rel ${x.validation.relative.toExponential(1)})` : '';
    return `| ${x.T} | ${x.case} | ${fixed(x.medianMs, x.medianMs! < 100 ? 1 : 0)} | ${x.samples || '0 (profiled run)'} | ${fixed(x.timeVsComposed, 2)} | ` +
      `${fixed(x.peakMiB, 1)} | ${fixed(x.peakVsComposed, 2)} | ${fixed(x.growth, 2)} | ${checked} |`;
  });
  const heap = r.wasmHeapMiB && Object.keys(r.wasmHeapMiB).length
    ? ['', `wasm heap after each length (it only grows, so this is the high-water mark of the run so far), MiB: ` +
      Object.entries(r.wasmHeapMiB).map(([T, m]) => `${T}: ${m.toFixed(0)}`).join(', ') + '.']
    : [];
  return [
    `# Off WebGPU: ${r.backend} backend`,
    '',
    `${r.date} · ${r.runtime} · tfjs ${r.tfjs}${r.threads !== undefined ? ` · wasm threads ${r.threads}` : ''} · commit ${r.commit}` +
      `${r.label ? ` · **${r.label}**` : ''} · section ${r.minutes.toFixed(1)} min`,
    '',
    `- uptime before: \`${r.uptimeBefore}\``,
    `- uptime after: \`${r.uptimeAfter}\``,
    '',
    `Forward+backward (every input's gradient of ⟨op(inputs), dOut⟩), attention causal at B = ${a.B}, H = ${a.H}, Hkv = ${a.Hkv}, ` +
      `K = ${a.K}; the scan at B = ${s.B}, E = ${s.E}, N = ${s.N}. All cases interleaved sample by sample at each T; ms is the median ` +
      `of wall-time samples after a profiled first run (one sample where that run took over ${SAMPLING.longRunS} s; samples 0: the ` +
      `profiled run alone, where it took over the time budget). ` +
      '**peak MiB**: `tf.profile` peakBytes during the first run less the bytes live before it (the inputs), plus the bytes a case keeps ' +
      'between runs (composed attention\'s [T, T] bias); it counts tensors, not the scratch a kernel allocates inside itself. ' +
      '**growth**: log(ms / ms at the previous T) / log(T / previous T) (1 linear, 2 quadratic).',
    '',
    `Budgets: a case stops at the first T whose predicted peak (the previous T's × 4) exceeds **${r.budgets.maxGiB} GiB** (\`--max-gib\`), ` +
      `whose predicted run (the previous T's × 2^e, e the log-log slope of its lengths so far within [1, 2], 2 before three lengths) ` +
      `exceeds **${r.budgets.maxRunS} s** (\`--max-run-s\`), ` +
      `or whose runs would end the section after **${r.budgets.minutes} min** (\`--minutes\`); and after a run over ${r.budgets.maxRunS} s. ` +
      `Lengths up to ${r.budgets.maxT} (\`--max-t\`).`,
    '',
    ...r.cases.map((c) => `- **${c.name}**: ${c.about}`),
    '',
    '| T | case | ms | samples | × composed (time) | peak MiB | × composed (peak) | growth | check |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    ...heap,
    '',
    `### Growth in T (least-squares slope of log ms against log T; linear when ≤ ${LINEAR_SLOPE})`,
    '',
    '| case | T range | slope | linear |',
    '| --- | --- | --- | --- |',
    ...r.slopes.map((x) => `| ${x.case} | ${x.from}–${x.to} | ${x.slope.toFixed(2)} | ${x.linear ? 'yes' : 'no'} |`),
    ...(r.targets.length === 0 ? [] : [
      '',
      '### Issue 15\'s targets',
      '',
      '| backend | target | this run | met |',
      '| --- | --- | --- | --- |',
      ...r.targets.map((x) => `| ${x.backend} | ${x.target} | ${x.result} | ${x.met === undefined ? '– (not measured)' : x.met ? '**yes**' : '**no**'} |`),
    ]),
  ].join('\n');
}
