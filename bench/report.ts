import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pass } from './cases.js';
import type { Timing } from './timing.js';

/** A timing with its bandwidth. */
export interface Measured extends Timing {
  /** Bytes moved per run / median time. */
  gbps: number;
}

/** Kernel output against reference output, before any timing. */
export interface Validation {
  maxAbsDiff: number;
  maxAbsReference: number;
  /** `maxAbsDiff / maxAbsReference`; the case is timed only when it is below the tolerance. */
  relative: number;
  ok: boolean;
}

/** One mixer × pass × shape. `webgpu` and `reference` are absent when validation failed. */
export interface CaseResult {
  mixer: string;
  pass: Pass;
  B: number;
  T: number;
  D: number;
  bytes: number;
  validation: Validation;
  webgpu?: Measured & { percentOfCopy: number };
  reference?: Measured;
  /** Reference median / kernel median: how many times faster the kernel is. */
  speedup?: number;
}

/** Per-dispatch cost of a runtime path, from bursts of tiny copies (medians, µs). */
export interface Overhead {
  /** CPU time to record a dispatch (and tfjs's periodic submits). */
  recordUs: number;
  /** Wall time until the burst has finished on the GPU, per dispatch. */
  fencedUs: number;
}

/** The copy kernel through one runtime path. */
export interface PathResult extends Overhead {
  /** One large copy. */
  bandwidth: Measured;
}

/** A timing with its compute rate. */
export interface Computed extends Timing {
  /** Counted flops per run / median time. */
  gflops: number;
}

/** How an attention case was validated, and the outcome. */
export interface AttentionValidation extends Validation {
  /**
   * `reference`: every output element against the reference at the same T. `causal slices`
   * (where the reference is skipped): the kernel's rows for the first and the last
   * {@link AttentionReport.limits} `slice` queries against the reference on those queries alone.
   */
  method: 'reference' | 'causal slices';
}

/** One attention pass × T. A side is absent when it was skipped (see `skipped`) or validation failed. */
export interface AttentionResult {
  pass: Pass;
  B: number;
  T: number;
  H: number;
  Hkv: number;
  K: number;
  flops: number;
  /** Absent when the kernel was skipped. */
  validation?: AttentionValidation;
  webgpu?: Computed & { percentOfMatMul: number };
  reference?: Computed;
  /** Why a side did not run: predicted memory or time over the limits. */
  skipped: { webgpu?: string; reference?: string };
  /** Peak tfjs allocation (`tf.profile`) of one run of each side, measured in validation, bytes. */
  peakBytes: { webgpu?: number; reference?: number };
  /** Timed with the minimum iterations: the validation run is the warm-up, then 1–3 samples. */
  minimal: boolean;
  /** Reference median / kernel median. */
  speedup?: number;
}

/** The attention section of a run. */
export interface AttentionReport {
  shape: { B: number; H: number; Hkv: number; K: number; causal: boolean };
  flopsFormula: Record<Pass | 'matMul', string>;
  /** tfjs's own `tf.matMul` on the webgpu backend: the compute roofline. */
  matMul: { M: number; N: number; K: number; flops: number; validation: Validation } & Computed;
  /** When a side is skipped or timed with the minimum iterations. */
  limits: {
    /** Skip the reference when its predicted peak allocation exceeds this, GiB. */
    referenceGiB: number;
    /** Skip the reference when one run is predicted to exceed this, s. */
    referenceRunS: number;
    /** Skip the kernel when its validation run and one sample would end the whole bench after this, minutes. */
    benchMinutes: number;
    /** Time with the minimum iterations when a run of either side is predicted to exceed this, s. */
    minimalRunS: number;
    /** Queries per causal slice in validation without the reference. */
    slice: number;
  };
  cases: AttentionResult[];
}

/** Everything one run measured; written as JSON. */
export interface Report {
  adapter: string;
  date: string;
  node: string;
  tfjs: string;
  quick: boolean;
  /** How the byte counts behind GB/s are defined. */
  bytesFormula: Record<Pass | 'copy', string>;
  tolerance: number;
  roofline: { elements: number; bytes: number } & Measured;
  cases: CaseResult[];
  runtimePaths: {
    overhead: { elements: number; dispatches: number };
    bandwidth: { elements: number; bytes: number };
    runKernel: PathResult;
    runWebGPUProgram: PathResult;
  };
  attention: AttentionReport;
  wallSeconds: number;
}

/**
 * Kernel output against reference output, pair by pair: the largest absolute difference over
 * all pairs, relative to the largest reference magnitude. A NaN anywhere fails.
 */
export function agreement(pairs: Array<[ArrayLike<number>, ArrayLike<number>]>, tolerance: number): Validation {
  let maxAbsDiff = 0;
  let maxAbsReference = 0;
  for (const [k, r] of pairs) {
    if (k.length !== r.length) throw new Error(`bench: comparing ${k.length} values against ${r.length}.`);
    for (let i = 0; i < r.length; i++) {
      // Math.max would swallow a NaN
      const diff = Math.abs(k[i]! - r[i]!);
      maxAbsDiff = Number.isNaN(diff) || Number.isNaN(maxAbsDiff) ? NaN : Math.max(maxAbsDiff, diff);
      maxAbsReference = Math.max(maxAbsReference, Math.abs(r[i]!));
    }
  }
  const relative = maxAbsDiff / Math.max(maxAbsReference, Number.MIN_VALUE);
  return { maxAbsDiff, maxAbsReference, relative, ok: relative < tolerance };
}

/** GB/s from bytes and ms. */
export function gbps(bytes: number, ms: number): number {
  return bytes / (ms * 1e6);
}

/** A file-name-safe lowercase form of the adapter description. */
export function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 80).replace(/^-+|-+$/g, '') || 'unknown-adapter';
}

const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const rate = (v: number) => v.toFixed(2);

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const mib = (bytes: number | undefined) => (bytes === undefined ? '–' : (bytes / 2 ** 20).toFixed(bytes >= 10 * 2 ** 20 ? 0 : 1));
const gflops = (v: number) => v.toFixed(3);

/** The attention section as markdown: formulas, the compute roofline and the table. */
function attentionMarkdown(a: AttentionReport, tolerance: number): string[] {
  const m = a.matMul;
  const rows = a.cases.map((c) => {
    const head = [c.pass, String(c.T)];
    const v = c.validation;
    const check = v ? [v.method, v.relative.toExponential(1)] : ['not run', '–'];
    const peak = `${mib(c.peakBytes.webgpu)} / ${mib(c.peakBytes.reference)}`;
    if (!c.webgpu) {
      const why = c.skipped.webgpu ?? '**FAILED validation**';
      return [...head, why, '–', '–', c.skipped.reference ?? '–', '–', '–', ...check, peak, '–'];
    }
    const star = c.minimal ? '*' : '';
    const reference = c.reference
      ? [ms(c.reference.medianMs), gflops(c.reference.gflops), `${c.speedup!.toFixed(2)}×`]
      : [c.skipped.reference ?? '', '–', '–'];
    return [
      ...head, ms(c.webgpu.medianMs), gflops(c.webgpu.gflops), `${c.webgpu.percentOfMatMul.toFixed(0)}%`,
      ...reference, ...check, peak, `${c.webgpu.iterations}/${c.reference?.iterations ?? '–'}${star}`,
    ];
  });
  const l = a.limits;
  return [
    '## Attention',
    '',
    `\`ops.flashAttention\`, causal, B = ${a.shape.B}, H = ${a.shape.H}, Hkv = ${a.shape.Hkv}, K = ${a.shape.K}, T = Tq = Tk: ` +
      'kernel = `implementation: \'webgpu\'` (FlashAttention-2 WGSL kernels: forward saving the log-sum-exp, then dQ and dK/dV), ' +
      'reference = `implementation: \'reference\'`, composed attention in tfjs ops (matMul, mask with `tf.where`, softmax, matMul), ' +
      'which materialises the [B, H, T, T] scores. GFLOP/s = flops / median time, with flops:',
    '',
    `- forward: ${a.flopsFormula.forward}`,
    `- forward+backward: ${a.flopsFormula['forward+backward']}`,
    `- matMul: ${a.flopsFormula.matMul}`,
    '',
    '% matMul = kernel GFLOP/s / tf.matMul GFLOP/s (the compute roofline, same run). ' +
      'peak MiB = tfjs\'s peak allocation during one run (`tf.profile`, in validation), kernel / reference.',
    `validation: \`reference\` = every output (forward: o; forward+backward: dq, dk, dv) against the reference at the same T; ` +
      `\`causal slices\` = where the reference is skipped, the kernel's rows for the first ${l.slice} and the last ${l.slice} queries ` +
      'against the reference on those queries alone (causality makes them equal: the first ones over the first tokens, the last ones ' +
      `over all keys), o or dq, plus dk and dv of the last ${l.slice} keys. rel err as above (tolerance ${tolerance}).`,
    `Skips: the reference when its predicted peak (the [B,H,T,T] buffers measured at the previous T × B·H·T²·4 bytes) exceeds ${l.referenceGiB} GiB, ` +
      `or one run, predicted from the previous T's median × (T/T′)², exceeds ${l.referenceRunS} s; the kernel when its validation run and one sample, at the predicted time, would end the whole bench after ${l.benchMinutes} minutes. ` +
      `* = minimum iterations (a run predicted over ${l.minimalRunS} s): the validation run is the warm-up, then 1–3 samples.`,
    '',
    '### Compute roofline',
    '',
    table(['kernel', 'shape', 'ms', 'GFLOP/s', 'rel err', 'iters'],
      [['tf.matMul (webgpu)', `[${m.M},${m.K}]·[${m.K},${m.N}]`, ms(m.medianMs), gflops(m.gflops), m.validation.relative.toExponential(1), String(m.iterations)]]),
    '',
    '### flashAttention vs composed attention',
    '',
    table(['pass', 'T', 'kernel ms', 'kernel GFLOP/s', '% matMul', 'reference ms', 'reference GFLOP/s', 'speedup', 'validation', 'rel err',
      'peak MiB k / r', 'iters k/r'], rows),
    '',
  ];
}

/** The report as markdown: header, roofline, mixers, runtime paths, attention. */
export function toMarkdown(r: Report): string {
  const caseRows = r.cases.map((c) => {
    const head = [c.mixer, c.pass, String(c.T)];
    const err = c.validation.relative.toExponential(1);
    if (!c.webgpu || !c.reference) return [...head, '**FAILED validation**', '', '', '', '', '', err, ''];
    return [
      ...head,
      ms(c.webgpu.medianMs), rate(c.webgpu.gbps), `${c.webgpu.percentOfCopy.toFixed(0)}%`,
      ms(c.reference.medianMs), rate(c.reference.gbps), `${c.speedup!.toFixed(2)}×`,
      err, `${c.webgpu.iterations}/${c.reference.iterations}`,
    ];
  });
  const path = (name: string, p: PathResult) =>
    [name, p.recordUs.toFixed(0), p.fencedUs.toFixed(0), ms(p.bandwidth.medianMs), rate(p.bandwidth.gbps)];
  const rp = r.runtimePaths;
  return [
    `# tfjs-mixers bench: ${r.adapter}`,
    '',
    `${r.date} · Node ${r.node} · tfjs ${r.tfjs}${r.quick ? ' · --quick' : ''} · wall ${r.wallSeconds.toFixed(0)} s`,
    '',
    'Fenced wall time (submit, then `queue.onSubmittedWorkDone()`), median over the iterations after warm-up;',
    'kernel and reference samples alternate, each side stopping on its own time budget (at least 3 samples).',
    'B = 1, D = 256. GB/s = bytes / median time, with bytes:',
    '',
    `- forward: ${r.bytesFormula.forward}`,
    `- forward+backward: ${r.bytesFormula['forward+backward']}`,
    `- copy: ${r.bytesFormula.copy}`,
    '',
    'kernel = `implementation: \'webgpu\'`, reference = `implementation: \'reference\'` (tfjs ops), both on the webgpu backend.',
    `speedup = reference ms / kernel ms. % copy = kernel GB/s / copy GB/s. rel err = max|kernel − reference| / max|reference| (tolerance ${r.tolerance}).`,
    '',
    '## Memory roofline',
    '',
    table(['kernel', 'elements', 'ms', 'GB/s', 'iters'],
      [['copy.wgsl (runKernel)', String(r.roofline.elements), ms(r.roofline.medianMs), rate(r.roofline.gbps), String(r.roofline.iterations)]]),
    '',
    '## Mixers',
    '',
    table(['mixer', 'pass', 'T', 'kernel ms', 'kernel GB/s', '% copy', 'reference ms', 'reference GB/s', 'speedup', 'rel err', 'iters k/r'],
      caseRows),
    '',
    '## Runtime paths',
    '',
    `The same copy through our \`runKernel\` (raw pipeline in tfjs's encoder) and tfjs's \`runWebGPUProgram\` (a \`WebGPUProgram\`).`,
    `Overhead: bursts of ${rp.overhead.dispatches} copies of ${rp.overhead.elements} floats, per dispatch: CPU time to record, and wall time until the fence.`,
    `Bandwidth: one fenced copy of ${rp.bandwidth.elements} floats.`,
    '',
    table(['path', 'record µs / dispatch', 'fenced µs / dispatch', 'copy ms', 'copy GB/s'],
      [path('runKernel', rp.runKernel), path('runWebGPUProgram', rp.runWebGPUProgram)]),
    '',
    ...attentionMarkdown(r.attention, r.tolerance),
  ].join('\n');
}

/**
 * Writes `<dir>/<adapter-slug>.json` and `.md` (`.quick.json` and `.quick.md` for a smoke
 * run, so it never overwrites a full run's numbers); returns their paths.
 */
export function writeReport(dir: string, r: Report, markdown: string): string[] {
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${slug(r.adapter)}${r.quick ? '.quick' : ''}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  return [`${base}.json`, `${base}.md`];
}
