/**
 * The SelectiveSSM section of `npm run bench`: `ops.selectiveScan`'s WGSL kernels against its
 * tfjs-ops reference at the issue's shape (B = 1, E = 512 as D = 256 with expand 2, N = 16),
 * forward and forward+backward, validated before timing, in GB/s of the bytes the op must move
 * against the copy roofline. The reference is skipped where a run of it would exceed its time
 * limit (it loops over the steps: tens of ms per step on SwiftShader); the kernel is then
 * validated on a prefix of the sequence (the scan is causal).
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { ops, type Implementation } from '../src/index.js';
import { gbps } from './report.js';
import { agreement, type Validation } from './validation.js';
import { timeInterleaved, type Budget, type Timing } from './timing.js';

export const SCAN_SHAPE = { B: 1, E: 512, N: 16 };
export const SCAN_LENGTHS = { quick: [256], full: [256, 1024, 4096, 16384] };
type ScanPass = 'forward' | 'forward+backward';
const SCAN_PASSES: ScanPass[] = ['forward', 'forward+backward'];

/**
 * Bytes the op must move at the least (float32): the forward reads u, delta, z and B, C and
 * writes out; the backward reads those and dOut again and writes du, d delta, dz, dB, dC.
 */
export const SCAN_BYTES: Record<ScanPass, { formula: string; bytes: (T: number) => number }> = {
  forward: { formula: '4·(4·B·T·E + 2·B·T·N)', bytes: (T) => 4 * T * SCAN_SHAPE.B * (4 * SCAN_SHAPE.E + 2 * SCAN_SHAPE.N) },
  'forward+backward': {
    formula: '4·(11·B·T·E + 6·B·T·N)', bytes: (T) => 4 * T * SCAN_SHAPE.B * (11 * SCAN_SHAPE.E + 6 * SCAN_SHAPE.N),
  },
};

/**
 * Relative agreement (max |kernel − reference| / max |reference|) the two must reach before
 * timing: the gradients of A, D and deltaBias are float32 sums over T steps whose rounding
 * grows with T, so this is looser than the elementwise mixers' 1e-4.
 */
export const SCAN_TOLERANCE = 1e-3;
/** The reference is skipped where one run of it is predicted (linearly in T) to exceed this. */
const REFERENCE_RUN_S = 150;
/** A reference run longer than this is timed by its validation run alone (one sample). */
const ONE_SAMPLE_S = 10;
/** Steps of a skipped case on which the kernel is validated against the reference. */
const PREFIX = 256;
const BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 20, budgetMs: 3000 };

/** One measured length and pass. */
export interface ScanCase {
  pass: ScanPass;
  T: number;
  bytes: number;
  validation: Validation & { on: 'full' | `first ${number} steps` };
  webgpu?: Timing & { gbps: number; percentOfCopy: number; msPerKiloStep: number };
  /** One sample means the validation run itself (its outputs read back) was the timing. */
  reference?: Timing & { gbps: number };
  speedup?: number;
  /** Why the reference was not timed. */
  skipped?: string;
}

export interface ScanReport {
  shape: typeof SCAN_SHAPE;
  bytesFormula: Record<ScanPass, string>;
  tolerance: number;
  referenceRunS: number;
  oneSampleS: number;
  cases: ScanCase[];
}

/** The scan's inputs and the output gradient of a case. */
export interface Inputs { u: tf.Tensor3D; delta: tf.Tensor3D; A: tf.Tensor2D; B: tf.Tensor3D; C: tf.Tensor3D; D: tf.Tensor1D; z: tf.Tensor3D; deltaBias: tf.Tensor1D; dOut: tf.Tensor3D }

/** Mamba's block at initialisation: A = −(1..N) per channel, D = 1, Δ ≈ 0.001..0.1. */
export function inputsAt(T: number, seed: number): Inputs {
  const { B, E, N } = SCAN_SHAPE;
  const r = (shape: number[], lo: number, hi: number, s: number) => tf.randomUniform(shape, lo, hi, 'float32', seed + s);
  return tf.tidy(() => ({
    u: r([B, T, E], -1, 1, 0) as tf.Tensor3D,
    delta: r([B, T, E], -1, 1, 1) as tf.Tensor3D,
    A: tf.neg(tf.tile(tf.range(1, N + 1).reshape([1, N]), [E, 1])) as tf.Tensor2D,
    B: r([B, T, N], -1, 1, 2) as tf.Tensor3D,
    C: r([B, T, N], -1, 1, 3) as tf.Tensor3D,
    D: tf.ones([E]) as tf.Tensor1D,
    z: r([B, T, E], -2, 2, 4) as tf.Tensor3D,
    deltaBias: r([E], -6.9, -2.25, 5) as tf.Tensor1D,
    dOut: r([B, T, E], -1, 1, 6) as tf.Tensor3D,
  }));
}

function prefixOf(x: Inputs, T: number): Inputs {
  const cut = (t: tf.Tensor3D) => t.slice([0, 0, 0], [-1, T, -1]);
  return { ...x, u: cut(x.u), delta: cut(x.delta), B: cut(x.B), C: cut(x.C), z: cut(x.z), dOut: cut(x.dOut) };
}

/** The output, or the output and every gradient of Σ dOut·out. */
export function runScan(x: Inputs, pass: ScanPass, implementation: Implementation): tf.Tensor[] {
  const scan = (u: tf.Tensor, delta: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor, D: tf.Tensor, z: tf.Tensor, deltaBias: tf.Tensor) =>
    ops.selectiveScan(u as tf.Tensor3D, delta as tf.Tensor3D, A as tf.Tensor2D, B as tf.Tensor3D, C as tf.Tensor3D,
      { D: D as tf.Tensor1D, z: z as tf.Tensor3D, deltaBias: deltaBias as tf.Tensor1D, implementation });
  const args = [x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.deltaBias];
  if (pass === 'forward') return [scan(...(args as Parameters<typeof scan>))];
  return tf.tidy(() => tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(scan(...(a as Parameters<typeof scan>)), x.dOut)))(args));
}

async function compare(x: Inputs, pass: ScanPass): Promise<{ validation: Validation; referenceMs: number }> {
  const kernel = runScan(x, pass, 'webgpu');
  const start = performance.now();
  const reference = runScan(x, pass, 'reference');
  const r = await Promise.all(reference.map((t) => t.data()));
  const referenceMs = performance.now() - start;
  const k = await Promise.all(kernel.map((t) => t.data()));
  tf.dispose([kernel, reference]);
  return { validation: agreement(k.map((v, i) => [v, r[i]!]), SCAN_TOLERANCE), referenceMs };
}

/** Validates, then times every length and pass; `copyGbps` is the roofline. */
export async function measureSelectiveScan(
  backend: WebGPUBackend, lengths: number[], seed: number, copyGbps: number, log: (line: string) => void,
): Promise<ScanReport> {
  const cases: ScanCase[] = [];
  for (const pass of SCAN_PASSES) {
    let lastReference: { T: number; ms: number } | undefined;
    for (const T of lengths) {
      const x = inputsAt(T, seed);
      const predictedS = lastReference ? (lastReference.ms * T) / lastReference.T / 1000 : 0;
      const skip = predictedS > REFERENCE_RUN_S;
      const label = `selectiveScan ${pass} T=${T}`;
      try {
        const checked = skip ? prefixOf(x, PREFIX) : x;
        const { validation, referenceMs } = await compare(checked, pass);
        if (skip) tf.dispose([checked.u, checked.delta, checked.B, checked.C, checked.z, checked.dOut]);
        if (!skip) lastReference = { T, ms: referenceMs };
        const bytes = SCAN_BYTES[pass].bytes(T);
        const base: ScanCase = { pass, T, bytes, validation: { ...validation, on: skip ? `first ${PREFIX} steps` : 'full' } };
        if (!validation.ok) {
          console.error(`\n[bench] !!! VALIDATION FAILED: ${label}: relative ${validation.relative} (tolerance ${SCAN_TOLERANCE}). Not timed.\n`);
          cases.push(base);
          continue;
        }
        const oneSample = !skip && referenceMs > ONE_SAMPLE_S * 1000;
        const contenders: Record<string, () => tf.TensorContainer> = { kernel: () => runScan(x, pass, 'webgpu') };
        if (!skip && !oneSample) contenders.reference = () => runScan(x, pass, 'reference');
        const t = await timeInterleaved(backend, contenders, BUDGET);
        const kernelGbps = gbps(bytes, t.kernel!.medianMs);
        const result: ScanCase = {
          ...base,
          webgpu: { ...t.kernel!, gbps: kernelGbps, percentOfCopy: (100 * kernelGbps) / copyGbps, msPerKiloStep: (1024 * t.kernel!.medianMs) / T },
        };
        const reference = oneSample ? { medianMs: referenceMs, minMs: referenceMs, iterations: 1, runsPerSample: 1 } : t.reference;
        if (reference) {
          result.reference = { ...reference, gbps: gbps(bytes, reference.medianMs) };
          result.speedup = reference.medianMs / t.kernel!.medianMs;
        } else {
          result.skipped = `one run predicted at ${predictedS.toFixed(0)} s (limit ${REFERENCE_RUN_S} s)`;
        }
        log(`${label}: kernel ${t.kernel!.medianMs.toFixed(1)} ms` +
          (reference ? `, reference ${reference.medianMs.toFixed(1)} ms (${result.speedup!.toFixed(1)}×)` : ', reference skipped'));
        cases.push(result);
      } finally {
        tf.dispose(Object.values(x));
      }
    }
  }
  return {
    shape: SCAN_SHAPE,
    bytesFormula: { forward: SCAN_BYTES.forward.formula, 'forward+backward': SCAN_BYTES['forward+backward'].formula },
    tolerance: SCAN_TOLERANCE,
    referenceRunS: REFERENCE_RUN_S,
    oneSampleS: ONE_SAMPLE_S,
    cases,
  };
}

const fixed = (v: number | undefined, digits: number) => (v === undefined ? '–' : v.toFixed(digits));

/** The section's markdown table. */
export function selectiveScanMarkdown(r: ScanReport): string {
  const { B, E, N } = r.shape;
  const rows = r.cases.map((c) => `| ${c.pass} | ${c.T} | ${fixed(c.webgpu?.medianMs, 1)} | ${fixed(c.webgpu?.msPerKiloStep, 2)} | ` +
    `${fixed(c.webgpu?.gbps, 3)} | ${fixed(c.webgpu?.percentOfCopy, 0)}% | ${c.reference ? `${fixed(c.reference.medianMs, 0)}${c.reference.iterations === 1 ? ' (1 sample)' : ''}` : `skipped: ${c.skipped ?? 'not validated'}`} | ` +
    `${c.speedup ? `${c.speedup.toFixed(1)}×` : '–'} | ${c.validation.ok ? 'ok' : 'FAILED'} (${c.validation.on}, rel ${c.validation.relative.toExponential(1)}) |`);
  return [
    `## SelectiveSSM: ops.selectiveScan, B = ${B}, E = ${E}, N = ${N}, with D, z and deltaBias`,
    '',
    `Bytes: forward ${r.bytesFormula.forward}, forward+backward ${r.bytesFormula['forward+backward']}. ` +
      `Validated (relative tolerance ${r.tolerance}) before timing; the reference is skipped where one run is predicted over ${r.referenceRunS} s, ` +
      `and timed by its validation run alone (1 sample) where that run took over ${r.oneSampleS} s.`,
    '',
    '| pass | T | kernel ms | kernel ms per 1024 steps | kernel GB/s | of copy | reference ms | speed-up | validation |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}
