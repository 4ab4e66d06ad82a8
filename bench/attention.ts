/**
 * The attention section of `npm run bench`: each attention op's WGSL kernels against its
 * tfjs-ops reference (the chunked attention of src/attention/reference.ts),
 * forward and forward+backward, with tfjs's own `tf.matMul` as the compute roofline, and
 * flashAttention's decode step split-K against unsplit. Where the reference would not fit in
 * memory or time it is skipped, and the kernel is validated on causal slices.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import {
  ATTENTION, ATTENTION_PASSES, attentionCases, attentionOps, runAttention,
  type AttentionCase, type AttentionInputs, type Pass, type Side,
} from './cases.js';
import { measureDecode } from './decode.js';
import { LIMITS, budgetsOf, minimalSides, overBudget, seconds } from './limits.js';
import type { AttentionReport, AttentionResult, AttentionValidation } from './report.js';
import { agreement } from './validation.js';
import { fence, timeInterleaved, type Budget, type Timing } from './timing.js';

/**
 * `[B, H, T, T]` float32 buffers alive at the reference's peak, until one is measured: what the
 * dense references held at T = 128 (7.6 forward, 14.9 forward+backward). The chunked ones hold
 * fewer, and fewer per T² as T grows, so scaling the measured count by T² over-predicts: a
 * reference may be skipped at a length it would fit, never run at one it would not.
 */
const SCORE_BUFFERS: Record<Pass, number> = { forward: 8, 'forward+backward': 15 };

/**
 * tf.matMul of square `[n, n] · [n, n]`: n starts at 512 and doubles while a run takes under
 * MATMUL_GROW_MS (up to 4096), so a fast GPU is measured on a product large enough to fill it,
 * and SwiftShader (512² takes most of a second) is not kept waiting.
 */
const MATMUL_SIZES = [512, 1024, 2048, 4096];
const MATMUL_GROW_MS = 20;
/** Rows of the product checked against float64 dot products. */
const MATMUL_CHECKED_ROWS = 8;
const MATMUL_BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 10, budgetMs: 4000 };

const GiB = 2 ** 30;
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

/** tf.matMul of `[n, n] · [n, n]`, its first rows checked against float64 dot products, then timed. */
async function matMulAt(backend: WebGPUBackend, n: number, seed: number, tolerance: number): Promise<AttentionReport['matMul']> {
  const a = tf.randomUniform([n, n], -1, 1, 'float32', seed) as tf.Tensor2D;
  const b = tf.randomUniform([n, n], -1, 1, 'float32', seed + 1) as tf.Tensor2D;
  try {
    const c = tf.matMul(a, b);
    const head = c.slice([0, 0], [MATMUL_CHECKED_ROWS, n]);
    const [A, B, C] = await Promise.all([a.data(), b.data(), head.data()]);
    tf.dispose([c, head]);
    const expected = new Float64Array(MATMUL_CHECKED_ROWS * n);
    for (let i = 0; i < MATMUL_CHECKED_ROWS; i++) {
      for (let p = 0; p < n; p++) {
        const aip = A[i * n + p]!;
        for (let j = 0; j < n; j++) expected[i * n + j]! += aip * B[p * n + j]!;
      }
    }
    const validation = agreement([[C, expected]], tolerance);
    if (!validation.ok) throw new Error(`bench: tf.matMul disagrees with a float64 product (relative ${validation.relative}); no compute roofline.`);
    const { matMul } = await timeInterleaved(backend, { matMul: () => tf.matMul(a, b) }, MATMUL_BUDGET);
    const flops = 2 * n * n * n;
    return { M: n, N: n, K: n, flops, validation, ...matMul, gflops: flops / (matMul.medianMs * 1e6) };
  } finally {
    tf.dispose([a, b]);
  }
}

/** tfjs's `tf.matMul` on the webgpu backend, at the first size of {@link MATMUL_SIZES} that takes long enough. */
export async function measureMatMul(backend: WebGPUBackend, seed: number, tolerance: number): Promise<AttentionReport['matMul']> {
  let result = await matMulAt(backend, MATMUL_SIZES[0]!, seed, tolerance);
  for (const n of MATMUL_SIZES.slice(1)) {
    if (result.medianMs >= MATMUL_GROW_MS) break;
    result = await matMulAt(backend, n, seed, tolerance);
  }
  return result;
}

/**
 * The kernel's outputs against the reference's, leaving no tensor behind. With `reference`,
 * every output element at the same T. Without, causal slices: causality makes the kernel's
 * rows for the first S queries equal to the op over the first S tokens alone, and its rows for
 * the last S queries equal to the last S rows of the op's shorter tail problem
 * (`AttentionOp.tail` in cases.ts: those queries with the keys they see); the last S keys are seen
 * only by the last S queries, so their dk and dv are checked too. The first S keys' dk and dv
 * are not (every query sees them).
 */
async function validateAttention(
  backend: WebGPUBackend, c: AttentionCase, x: AttentionInputs, withReference: boolean, tolerance: number,
): Promise<{ validation: AttentionValidation; peakBytes: Partial<Record<Side, number>>; ms: Partial<Record<Side, number>> }> {
  const { op, pass, T } = c;
  const before = tf.memory().numTensors;
  const kernel = await profiled(backend, () => runAttention(op, pass, 'webgpu', x));
  const peakBytes: Partial<Record<Side, number>> = { webgpu: kernel.peakBytes };
  const ms: Partial<Record<Side, number>> = { webgpu: kernel.ms };
  let compared: tf.Tensor[];
  let method: AttentionValidation['method'];
  if (withReference) {
    method = 'reference';
    const reference = await profiled(backend, () => runAttention(op, pass, 'reference', x));
    peakBytes.reference = reference.peakBytes;
    ms.reference = reference.ms;
    compared = kernel.out.flatMap((k, i) => [k, reference.out[i]!]);
  } else {
    method = 'causal slices';
    const S = Math.min(LIMITS.slice, T);
    const tail = op.tail(T, S);
    // forward: [o]; forward+backward: [dq, dk, dv]
    const [first, dk, dv] = kernel.out as tf.Tensor4D[];
    compared = tf.tidy(() => {
      const gather = (t: tf.Tensor4D, tokens: Int32Array) => tf.gather(t, tf.tensor1d(tokens, 'int32'), 1) as tf.Tensor4D;
      const firstTokens = { q: rows(x.q, 0, S), k: rows(x.k, 0, S), v: rows(x.v, 0, S), dO: rows(x.dO, 0, S) };
      const tailTokens = { q: gather(x.q, tail.q), k: gather(x.k, tail.kv), v: gather(x.v, tail.kv), dO: gather(x.dO, tail.q) };
      const [head] = runAttention(op, pass, 'reference', firstTokens);
      const [tailO, tailDk, tailDv] = runAttention(op, pass, 'reference', tailTokens);
      const last = (t: tf.Tensor4D) => rows(t, t.shape[1] - S, S);
      const pairs = [rows(first!, 0, S), head!, last(first!), last(tailO!)];
      if (pass === 'forward') return pairs;
      return [...pairs, last(dk!), last(tailDk!), last(dv!), last(tailDv!)];
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

/** One op × pass, its lengths run in increasing order, each predicted from the last that ran. */
interface Chain {
  /** The cases still to run. */
  cases: AttentionCase[];
  results: AttentionResult[];
  /** The last run of each side: its length and time. */
  last: Partial<Record<Side, { T: number; ms: number }>>;
  /** `[B, H, T, T]` float32 buffers alive at the reference's peak, as measured at the last length. */
  buffers: number;
}

/** What a case is predicted to cost, from its chain's last runs. */
interface Plan {
  /** One kernel run: the last × the ratio of counted pairs. Undefined before any run. */
  kernelMs?: number;
  /** One reference run: the last × (T/T′)², an upper bound (the chunked references skip tiles). */
  referenceMs?: number;
  /** Why the reference cannot run for memory or time per run, or undefined. */
  referenceSkip?: string;
}

function plan(chain: Chain, c: AttentionCase): Plan {
  const { webgpu: k, reference: r } = chain.last;
  const kernelMs = k && k.ms * (c.op.pairs(c.T) / c.op.pairs(k.T));
  const referenceMs = r && r.ms * (c.T / r.T) ** 2;
  return { kernelMs, referenceMs, referenceSkip: referenceSkip(c, chain.buffers, referenceMs) };
}


/** Why the reference cannot run at this case for memory or time per run, or undefined if it can. */
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
 * Validates then times the next case of a chain, skipping a side whose predicted memory or time
 * is over {@link LIMITS}: the kernel when its validation run and one sample would end the bench
 * past its deadline, counted from `started`; the reference also when, run beside the kernel, it would.
 */
async function measureAttentionCase(
  backend: WebGPUBackend, chain: Chain, c: AttentionCase, matMulGflops: number, seed: number, tolerance: number,
  started: number, log: (line: string) => void,
): Promise<AttentionResult> {
  const { B, H, Hkv, K } = ATTENTION;
  const { op, pass, T } = c;
  const label = `${op.name} ${pass} T=${T}`;
  const result: AttentionResult = {
    op: op.name, pass, B, T, H, Hkv, K, pairs: op.pairs(T), flops: c.flops, skipped: {}, peakBytes: {}, minimal: [],
  };
  const p = plan(chain, c);
  result.skipped.webgpu = overBudget(p.kernelMs, started, 'one kernel run');
  result.skipped.reference = p.referenceSkip ??
    (result.skipped.webgpu ? 'not run: the kernel is skipped' : undefined) ??
    overBudget(p.kernelMs !== undefined && p.referenceMs !== undefined ? p.kernelMs + p.referenceMs : undefined, started,
      'one kernel and one reference run');
  if (result.skipped.webgpu) {
    log(`${label}: kernel ${result.skipped.webgpu}; reference ${result.skipped.reference}`);
    return result;
  }
  const withReference = !result.skipped.reference;
  result.minimal = minimalSides<Side>(withReference ? { webgpu: p.kernelMs, reference: p.referenceMs } : { webgpu: p.kernelMs });

  const q = tf.randomNormal([B, T, H, K], 0, 1, 'float32', seed) as tf.Tensor4D;
  const k = tf.randomNormal([B, T, Hkv, K], 0, 1, 'float32', seed + 1) as tf.Tensor4D;
  const v = tf.randomNormal([B, T, Hkv, K], 0, 1, 'float32', seed + 2) as tf.Tensor4D;
  const dO = tf.randomNormal([B, T, H, K], 0, 1, 'float32', seed + 3) as tf.Tensor4D;
  const x = { q, k, v, dO };
  try {
    const checked = await validateAttention(backend, c, x, withReference, tolerance);
    result.validation = checked.validation;
    result.peakBytes = checked.peakBytes;
    if (checked.peakBytes.reference !== undefined) chain.buffers = checked.peakBytes.reference / (B * H * T * T * 4);
    // until a side is timed, its validation run predicts the next length
    for (const side of ['webgpu', 'reference'] as const) {
      if (checked.ms[side] !== undefined) chain.last[side] = { T, ms: checked.ms[side]! };
    }
    if (!result.validation.ok) {
      console.error(`\n[bench] !!! VALIDATION FAILED: ${label} (${result.validation.method}): max|kernel − reference| = ` +
        `${result.validation.maxAbsDiff} against max|reference| = ${result.validation.maxAbsReference} ` +
        `(relative ${result.validation.relative}, tolerance ${tolerance}). Not timed.\n`);
      return result;
    }
    const run = (side: Side) => () => runAttention(op, pass, side, x);
    // kernel and reference samples alternate; the kernel alone where the reference is skipped
    const sides: Side[] = withReference ? ['webgpu', 'reference'] : ['webgpu'];
    const timings: Partial<Record<Side, Timing>> = await timeInterleaved(backend,
      Object.fromEntries(sides.map((side) => [side, run(side)])) as Record<Side, () => tf.Tensor[]>, ...budgetsOf(result.minimal));
    const kernel = timings.webgpu!;
    const kernelGflops = c.flops / (kernel.medianMs * 1e6);
    result.webgpu = { ...kernel, gflops: kernelGflops, percentOfMatMul: (100 * kernelGflops) / matMulGflops };
    chain.last.webgpu = { T, ms: kernel.medianMs };
    const reference = timings.reference;
    if (reference) {
      result.reference = { ...reference, gflops: c.flops / (reference.medianMs * 1e6) };
      result.speedup = reference.medianMs / kernel.medianMs;
      chain.last.reference = { T, ms: reference.medianMs };
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
 * The attention section: the compute roofline, decode at each cache length, then every op ×
 * pass × length, the case whose kernel run is predicted shortest first. So every op runs its
 * short lengths before any runs its long ones, and the bench's deadline (counted from `started`,
 * a `performance.now()`) cuts the longest kernels of all ops rather than every case of the last.
 */
export async function measureAttention(
  backend: WebGPUBackend, sizes: { lengths: readonly number[]; caches: readonly number[] }, seed: number, tolerance: number,
  copyGbps: number, started: number, log: (line: string) => void,
): Promise<AttentionReport> {
  const matMul = await measureMatMul(backend, seed, tolerance);
  log(`compute roofline: tf.matMul [${matMul.M},${matMul.K}]·[${matMul.K},${matMul.N}] ${matMul.medianMs.toFixed(1)} ms, ` +
    `${matMul.gflops.toFixed(3)} GFLOP/s`);
  const decode = await measureDecode(backend, sizes.caches, seed, tolerance, copyGbps, started, log);
  const attention = attentionOps();
  const chains = attention.map((op) => attentionCases(op, sizes.lengths).map((cases): Chain =>
    ({ cases, results: [], last: {}, buffers: SCORE_BUFFERS[cases[0]!.pass] })));
  const order: string[] = [];
  for (let pending = chains.flat(); pending.length > 0; pending = pending.filter((chain) => chain.cases.length > 0)) {
    // the kernel's predicted run alone: a reference that no longer fits is shed at the deadline first
    const cost = (chain: Chain) => plan(chain, chain.cases[0]!).kernelMs ?? 0;
    const chain = pending.reduce((best, next) => (cost(next) < cost(best) ? next : best));
    const c = chain.cases.shift()!;
    order.push(`${c.op.name} ${c.pass} ${c.T}`);
    chain.results.push(await measureAttentionCase(backend, chain, c, matMul.gflops, seed, tolerance, started, log));
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
    decode,
    ops: attention.map((op, i) => ({
      op: op.name, about: op.about, pairsFormula: op.pairsFormula, cases: chains[i]!.flatMap((chain) => chain.results),
    })),
    order,
  };
}
