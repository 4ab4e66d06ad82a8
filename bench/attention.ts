/**
 * The attention section of `npm run bench`: `ops.flashAttention`'s WGSL kernels against
 * composed attention (its tfjs-ops reference: matMul, mask, softmax, matMul), forward and
 * forward+backward, with tfjs's own `tf.matMul` as the compute roofline. Where the reference
 * would not fit in memory or time it is skipped, and the kernel is validated on causal slices.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import {
  ATTENTION, ATTENTION_PASSES, attentionCases, runAttention,
  type AttentionCase, type AttentionInputs, type Pass, type Side,
} from './cases.js';
import { agreement, type AttentionReport, type AttentionResult, type AttentionValidation } from './report.js';
import { fence, timeInterleaved, type Budget, type Timing } from './timing.js';

/** When a side is skipped or timed with the minimum iterations (see {@link AttentionReport}). */
export const LIMITS: AttentionReport['limits'] = {
  referenceGiB: 2,
  referenceRunS: 20,
  benchMinutes: 8,
  minimalRunS: 1,
  slice: 128,
};

/**
 * `[B, H, T, T]` float32 buffers alive at the reference's peak, until one is measured:
 * tf.profile of the reference at T = 128 gave 7.6 forward and 14.9 forward+backward (the
 * score, scaled, −1e30 fill, tiled mask, masked and softmax buffers, and their gradients).
 */
const SCORE_BUFFERS: Record<Pass, number> = { forward: 8, 'forward+backward': 15 };

/** tf.matMul `[M, K] · [K, N]`; 1024² runs at the same rate here and costs 8× as long. */
const MATMUL = { M: 512, N: 512, K: 512 };
const MATMUL_BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 10, budgetMs: 4000 };
// validation has already run each side once, so one warm-up run suffices
const CASE_BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 30, budgetMs: 2000 };
// runs over a second: the validation run (same op, same shapes) is the warm-up
const MINIMAL_BUDGET: Budget = { warmup: 0, minIterations: 1, maxIterations: 3, budgetMs: 10_000 };

const GiB = 2 ** 30;
const seconds = (ms: number) => (ms / 1000).toFixed(ms >= 10_000 ? 0 : 1);
const gib = (bytes: number) => (bytes / GiB).toFixed(bytes >= 10 * GiB ? 0 : 2);

/** Rows `[start, start + n)` along T of a `[B, T, H, K]` tensor. */
function rows(x: tf.Tensor4D, start: number, n: number): tf.Tensor4D {
  return x.slice([0, start, 0, 0], [-1, n, -1, -1]);
}

/** Runs once under `tf.profile`: the outputs, the peak tfjs allocation above the start, and the fenced wall time. */
async function profiled(backend: WebGPUBackend, run: () => tf.Tensor[]): Promise<{ out: tf.Tensor[]; peakBytes: number; ms: number }> {
  const before = tf.memory().numBytes;
  const start = performance.now();
  let out: tf.Tensor[] = [];
  const info = await tf.profile(() => (out = run()));
  await fence(backend);
  return { out, peakBytes: info.peakBytes - before, ms: performance.now() - start };
}

/** tfjs's `tf.matMul` on the webgpu backend, checked against a float64 product, then timed. */
export async function measureMatMul(backend: WebGPUBackend, seed: number, tolerance: number): Promise<AttentionReport['matMul']> {
  const { M, N, K } = MATMUL;
  const a = tf.randomUniform([M, K], -1, 1, 'float32', seed) as tf.Tensor2D;
  const b = tf.randomUniform([K, N], -1, 1, 'float32', seed + 1) as tf.Tensor2D;
  try {
    const c = tf.matMul(a, b);
    const [A, B, C] = await Promise.all([a.data(), b.data(), c.data()]);
    c.dispose();
    const expected = new Float64Array(M * N);
    for (let i = 0; i < M; i++) {
      for (let p = 0; p < K; p++) {
        const aip = A[i * K + p]!;
        for (let j = 0; j < N; j++) expected[i * N + j]! += aip * B[p * N + j]!;
      }
    }
    const validation = agreement([[C, expected]], tolerance);
    if (!validation.ok) throw new Error(`bench: tf.matMul disagrees with a float64 product (relative ${validation.relative}); no compute roofline.`);
    const { matMul } = await timeInterleaved(backend, { matMul: () => tf.matMul(a, b) }, MATMUL_BUDGET);
    const flops = 2 * M * N * K;
    return { M, N, K, flops, validation, ...matMul, gflops: flops / (matMul.medianMs * 1e6) };
  } finally {
    tf.dispose([a, b]);
  }
}

/**
 * The kernel's outputs against the reference's, leaving no tensor behind. With `reference`,
 * every output element at the same T. Without, causal slices: causality makes the kernel's
 * rows for the first S queries equal to attention over the first S tokens alone, and its rows
 * for the last S queries equal to those S queries over all T keys (the causal mask is
 * bottom-right aligned when Tq < Tk); the last S keys are seen only by the last S queries,
 * so their dk and dv are checked too. The first S keys' dk and dv are not (every query sees them).
 */
async function validateAttention(
  backend: WebGPUBackend, pass: Pass, x: AttentionInputs, withReference: boolean, tolerance: number,
): Promise<{ validation: AttentionValidation; peakBytes: Partial<Record<Side, number>>; ms: Partial<Record<Side, number>> }> {
  const before = tf.memory().numTensors;
  const kernel = await profiled(backend, () => runAttention(pass, 'webgpu', x));
  const peakBytes: Partial<Record<Side, number>> = { webgpu: kernel.peakBytes };
  const ms: Partial<Record<Side, number>> = { webgpu: kernel.ms };
  let compared: tf.Tensor[];
  let method: AttentionValidation['method'];
  if (withReference) {
    method = 'reference';
    const reference = await profiled(backend, () => runAttention(pass, 'reference', x));
    peakBytes.reference = reference.peakBytes;
    ms.reference = reference.ms;
    compared = kernel.out.flatMap((k, i) => [k, reference.out[i]!]);
  } else {
    method = 'causal slices';
    const T = x.q.shape[1];
    const S = Math.min(LIMITS.slice, T);
    // forward: [o]; forward+backward: [dq, dk, dv]
    const [first, dk, dv] = kernel.out as tf.Tensor4D[];
    compared = tf.tidy(() => {
      const firstTokens = { q: rows(x.q, 0, S), k: rows(x.k, 0, S), v: rows(x.v, 0, S), dO: rows(x.dO, 0, S) };
      const lastQueries = { q: rows(x.q, T - S, S), k: x.k, v: x.v, dO: rows(x.dO, T - S, S) };
      const [head] = runAttention(pass, 'reference', firstTokens);
      const [tail, tailDk, tailDv] = runAttention(pass, 'reference', lastQueries);
      const pairs = [rows(first!, 0, S), head!, rows(first!, T - S, S), tail!];
      if (pass === 'forward') return pairs;
      return [...pairs, rows(dk!, T - S, S), rows(tailDk!, T - S, S), rows(dv!, T - S, S), rows(tailDv!, T - S, S)];
    });
    tf.dispose(kernel.out);
  }
  const data = await Promise.all(compared.map((t) => t.data()));
  tf.dispose(compared);
  if (tf.memory().numTensors !== before) {
    throw new Error(`bench: attention validation leaked ${tf.memory().numTensors - before} tensor(s).`);
  }
  const pairs = Array.from({ length: data.length / 2 }, (_, i) => [data[2 * i]!, data[2 * i + 1]!] as [ArrayLike<number>, ArrayLike<number>]);
  return { validation: { method, ...agreement(pairs, tolerance) }, peakBytes, ms };
}

/** The last run of a side in a pass: its length and time, from which the next length is predicted. */
type Last = Record<Pass, Partial<Record<Side, { T: number; ms: number }>>>;

/** A run of `side` at `T`, predicted from its last run by the T² cost of causal attention; undefined before any run. */
function predictMs(last: Last, pass: Pass, side: Side, T: number): number | undefined {
  const p = last[pass][side];
  return p ? p.ms * (T / p.T) ** 2 : undefined;
}

/** Why the reference cannot run at this case, or undefined if it can. */
function referenceSkip(c: AttentionCase, buffers: number, predicted: number | undefined): string | undefined {
  const { B, H } = ATTENTION;
  const scoreBytes = B * H * c.T * c.T * 4;
  if (buffers * scoreBytes > LIMITS.referenceGiB * GiB) {
    return `skipped: needs ~${gib(buffers * scoreBytes)} GiB for the [B,H,T,T] scores (${buffers.toFixed(1)} × ${gib(scoreBytes)} GiB)`;
  }
  if (predicted !== undefined && predicted > LIMITS.referenceRunS * 1000) {
    return `skipped: over time budget (one run predicted ~${seconds(predicted)} s > ${LIMITS.referenceRunS} s)`;
  }
  return undefined;
}

/**
 * Validates then times one attention case, skipping a side whose predicted memory or time is
 * over {@link LIMITS}: the kernel when its validation run and one sample would end the bench
 * past its budget, counted from `started`.
 */
async function measureAttentionCase(
  backend: WebGPUBackend, c: AttentionCase, last: Last, buffers: Record<Pass, number>,
  matMulGflops: number, seed: number, tolerance: number, started: number, log: (line: string) => void,
): Promise<AttentionResult> {
  const { B, H, Hkv, K } = ATTENTION;
  const { pass, T } = c;
  const label = `flashAttention ${pass} T=${T}`;
  const result: AttentionResult = { pass, B, T, H, Hkv, K, flops: c.flops, skipped: {}, peakBytes: {}, minimal: false };
  const kernelPredicted = predictMs(last, pass, 'webgpu', T);
  // the validation run and one sample at least
  const endMinutes = kernelPredicted === undefined ? 0 : (performance.now() + 2 * kernelPredicted - started) / 60_000;
  if (endMinutes > LIMITS.benchMinutes) {
    result.skipped.webgpu = `skipped: over time budget (one run predicted ~${seconds(kernelPredicted!)} s; ` +
      `validated and timed, the bench would end at ~${endMinutes.toFixed(0)} min > ${LIMITS.benchMinutes})`;
  }
  result.skipped.reference = referenceSkip(c, buffers[pass], predictMs(last, pass, 'reference', T)) ??
    (result.skipped.webgpu ? 'not run: the kernel is skipped' : undefined);
  if (result.skipped.webgpu) {
    log(`${label}: kernel ${result.skipped.webgpu}; reference ${result.skipped.reference}`);
    return result;
  }
  const withReference = !result.skipped.reference;
  // from the previous length only: a first validation run also compiles the pipelines
  result.minimal = [kernelPredicted, withReference ? predictMs(last, pass, 'reference', T) : undefined]
    .some((ms) => ms !== undefined && ms > LIMITS.minimalRunS * 1000);

  const q = tf.randomNormal([B, T, H, K], 0, 1, 'float32', seed) as tf.Tensor4D;
  const k = tf.randomNormal([B, T, Hkv, K], 0, 1, 'float32', seed + 1) as tf.Tensor4D;
  const v = tf.randomNormal([B, T, Hkv, K], 0, 1, 'float32', seed + 2) as tf.Tensor4D;
  const dO = tf.randomNormal([B, T, H, K], 0, 1, 'float32', seed + 3) as tf.Tensor4D;
  const x = { q, k, v, dO };
  try {
    const checked = await validateAttention(backend, pass, x, withReference, tolerance);
    result.validation = checked.validation;
    result.peakBytes = checked.peakBytes;
    if (checked.peakBytes.reference !== undefined) buffers[pass] = checked.peakBytes.reference / (B * H * T * T * 4);
    // until a side is timed, its validation run predicts the next length
    for (const side of ['webgpu', 'reference'] as const) {
      if (checked.ms[side] !== undefined) last[pass][side] = { T, ms: checked.ms[side]! };
    }
    if (!result.validation.ok) {
      console.error(`\n[bench] !!! VALIDATION FAILED: ${label} (${result.validation.method}): max|kernel − reference| = ` +
        `${result.validation.maxAbsDiff} against max|reference| = ${result.validation.maxAbsReference} ` +
        `(relative ${result.validation.relative}, tolerance ${tolerance}). Not timed.\n`);
      return result;
    }
    const budget = result.minimal ? MINIMAL_BUDGET : CASE_BUDGET;
    const run = (side: Side) => () => runAttention(pass, side, x);
    // kernel and reference samples alternate; the kernel alone where the reference is skipped
    const timings: { kernel: Timing; reference?: Timing } = withReference
      ? await timeInterleaved(backend, { kernel: run('webgpu'), reference: run('reference') }, budget)
      : await timeInterleaved(backend, { kernel: run('webgpu') }, budget);
    const kernel = timings.kernel;
    const kernelGflops = c.flops / (kernel.medianMs * 1e6);
    result.webgpu = { ...kernel, gflops: kernelGflops, percentOfMatMul: (100 * kernelGflops) / matMulGflops };
    last[pass].webgpu = { T, ms: kernel.medianMs };
    const reference = timings.reference;
    if (reference) {
      result.reference = { ...reference, gflops: c.flops / (reference.medianMs * 1e6) };
      result.speedup = reference.medianMs / kernel.medianMs;
      last[pass].reference = { T, ms: reference.medianMs };
    }
    log(`${label}: kernel ${kernel.medianMs.toFixed(1)} ms (${kernel.iterations}×), reference ` +
      `${reference ? `${reference.medianMs.toFixed(1)} ms (${reference.iterations}×)` : result.skipped.reference}; ` +
      `validated by ${result.validation.method}, relative ${result.validation.relative.toExponential(1)}`);
    return result;
  } finally {
    tf.dispose([q, k, v, dO]);
  }
}

/**
 * The attention section: the compute roofline, then every pass × length in order. `started`
 * (a `performance.now()`) is when the whole bench began, for its time budget.
 */
export async function measureAttention(
  backend: WebGPUBackend, lengths: readonly number[], seed: number, tolerance: number, started: number,
  log: (line: string) => void,
): Promise<AttentionReport> {
  const matMul = await measureMatMul(backend, seed, tolerance);
  log(`compute roofline: tf.matMul [${matMul.M},${matMul.K}]·[${matMul.K},${matMul.N}] ${matMul.medianMs.toFixed(1)} ms, ` +
    `${matMul.gflops.toFixed(3)} GFLOP/s`);
  const last: Last = { forward: {}, 'forward+backward': {} };
  const buffers = { ...SCORE_BUFFERS };
  const cases: AttentionResult[] = [];
  for (const c of attentionCases(lengths)) {
    cases.push(await measureAttentionCase(backend, c, last, buffers, matMul.gflops, seed, tolerance, started, log));
  }
  return {
    shape: { ...ATTENTION, causal: true },
    flopsFormula: {
      forward: ATTENTION_PASSES.forward.formula,
      'forward+backward': ATTENTION_PASSES['forward+backward'].formula,
      matMul: '2·M·N·K',
    },
    matMul,
    limits: LIMITS,
    cases,
  };
}
