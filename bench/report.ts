import { mkdirSync, writeFileSync } from 'node:fs';
import type { ScanReport } from './selective-ssm.js';
import type { MaskedAttentionReport } from './masked.js';
import { join } from 'node:path';
import type { DecodeSide, Pass, Side } from './cases.js';
import { MIN_SAMPLE_MS, type Timing } from './timing.js';
import type { Validation } from './validation.js';

/** A timing with its bandwidth. */
export interface Measured extends Timing {
  /** Bytes moved per run / median time. */
  gbps: number;
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
   * {@link AttentionReport.limits} `slice` queries against the reference on shorter problems
   * that give exactly those rows.
   */
  method: 'reference' | 'causal slices';
}

/** One attention op × pass × T. A side is absent when it was skipped (see `skipped`) or validation failed. */
export interface AttentionResult {
  op: string;
  pass: Pass;
  B: number;
  T: number;
  H: number;
  Hkv: number;
  K: number;
  /** The (query, key) pairs counted (see {@link AttentionOpReport.pairsFormula}). */
  pairs: number;
  flops: number;
  /** Absent when the kernel was skipped. */
  validation?: AttentionValidation;
  webgpu?: Computed & { percentOfMatMul: number };
  reference?: Computed;
  /** Why a side did not run: predicted memory or time over the limits. */
  skipped: { webgpu?: string; reference?: string };
  /** Peak tfjs allocation (`tf.profile`) of one run of each side, measured in validation, bytes. */
  peakBytes: { webgpu?: number; reference?: number };
  /** The sides timed with the minimum iterations: the validation run is the warm-up, then 1–3 samples. */
  minimal: Side[];
  /** Reference median / kernel median. */
  speedup?: number;
}

/** One attention op over its lengths. */
export interface AttentionOpReport {
  op: string;
  /** What its kernel and its reference run. */
  about: string;
  /** How its (query, key) pairs are counted. */
  pairsFormula: string;
  /** Pass by pass, each by increasing T. */
  cases: AttentionResult[];
}

/** A decode timing with its bandwidth and the share of the copy's. */
export type DecodeMeasured = Measured & { percentOfCopy: number };

/** One decode step: one query against a cache of Tk keys, split-K against unsplit against the reference. */
export interface DecodeResult {
  B: number;
  Tk: number;
  H: number;
  Hkv: number;
  K: number;
  /** Bytes the step must read (k and v), the numerator of GB/s. */
  bytes: number;
  /** Absent when the kernels were skipped. `ok` when every comparison passed. */
  validation?: {
    splitVsUnsplit: Validation;
    splitVsReference?: Validation;
    unsplitVsReference?: Validation;
    ok: boolean;
  };
  split?: DecodeMeasured;
  unsplit?: DecodeMeasured;
  reference?: Measured;
  skipped: { kernels?: string; reference?: string };
  /** The sides timed with the minimum iterations (see {@link AttentionResult.minimal}). */
  minimal: DecodeSide[];
  /** Unsplit median / split median: how many times faster split-K is. */
  splitSpeedup?: number;
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
    /** Skip a side when its validation run and one sample would end the whole bench after this, minutes. */
    benchMinutes: number;
    /** Time with the minimum iterations when a run of either side is predicted to exceed this, s. */
    minimalRunS: number;
    /** Queries per causal slice in validation without the reference. */
    slice: number;
  };
  /** Decode through `ops.flashAttention`, run first. */
  decode: { bytesFormula: string; cases: DecodeResult[] };
  ops: AttentionOpReport[];
  /** The order the cases ran in, `op pass T`: shortest predicted kernel run first, under the deadline. */
  order: string[];
}

/** Everything one run measured; written as JSON. */
export interface Report {
  adapter: string;
  /** How Node waited for the GPU (`installWebGPU`'s `poll`); absent in results from before it. */
  poll?: 'busy' | 'yield';
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
  /** Absent from reports written before the section existed. */
  maskedAttention?: MaskedAttentionReport;
  selectiveScan: ScanReport;
  wallSeconds: number;
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

const speedup = (v: number) => `${v.toFixed(2)}×`;
const relErr = (v: Validation | undefined) => (v ? v.relative.toExponential(1) : '–');

/** The mark of a side timed with the minimum iterations. */
const star = <K extends string>(minimal: readonly K[], side: K) => (minimal.includes(side) ? '*' : '');

/**
 * An op's table, one row per pass × T. `time/T ÷ prev` is the kernel's ms per token over that
 * of the previous T of the same pass: 1 where time grows linearly in T, T / T′ where it grows
 * as T².
 */
function opTable(o: AttentionOpReport): string {
  const rows = o.cases.map((c, i) => {
    const head = [c.pass, String(c.T)];
    const v = c.validation;
    const check = v ? [v.method, relErr(v)] : ['not run', '–'];
    const peak = `${mib(c.peakBytes.webgpu)} / ${mib(c.peakBytes.reference)}`;
    if (!c.webgpu) {
      const why = c.skipped.webgpu ?? '**FAILED validation**';
      return [...head, why, '–', '–', '–', c.skipped.reference ?? '–', '–', '–', ...check, peak, '–'];
    }
    const previous = o.cases.slice(0, i).reverse().find((p) => p.pass === c.pass && p.webgpu);
    const growth = previous ? ((c.webgpu.medianMs / c.T) / (previous.webgpu!.medianMs / previous.T)).toFixed(2) : '–';
    const reference = c.reference
      ? [ms(c.reference.medianMs), gflops(c.reference.gflops), speedup(c.speedup!)]
      : [c.skipped.reference ?? '', '–', '–'];
    return [
      ...head, ms(c.webgpu.medianMs), growth, gflops(c.webgpu.gflops), `${c.webgpu.percentOfMatMul.toFixed(0)}%`,
      ...reference, ...check, peak, `${c.webgpu.iterations}${star(c.minimal, 'webgpu')}/${c.reference?.iterations ?? '–'}${star(c.minimal, 'reference')}`,
    ];
  });
  return table(['pass', 'T', 'kernel ms', 'time/T ÷ prev', 'kernel GFLOP/s', '% matMul', 'reference ms', 'reference GFLOP/s',
    'speedup', 'validation', 'rel err', 'peak MiB k / r', 'iters k/r'], rows);
}

/** The decode table, one row per cache length. */
function decodeTable(cases: DecodeResult[]): string {
  const rows = cases.map((c) => {
    const v = c.validation;
    const errs = [relErr(v?.splitVsUnsplit), `${relErr(v?.splitVsReference)} / ${relErr(v?.unsplitVsReference)}`];
    if (!c.split || !c.unsplit) {
      return [String(c.Tk), c.skipped.kernels ?? '**FAILED validation**', '–', '–', '–', '–', '–', c.skipped.reference ?? '–', ...errs, '–'];
    }
    const kernel = (m: DecodeMeasured) => [ms(m.medianMs), rate(m.gbps), `${m.percentOfCopy.toFixed(0)}%`];
    const iters = `${c.split.iterations}${star(c.minimal, 'split')}/${c.unsplit.iterations}${star(c.minimal, 'unsplit')}/` +
      `${c.reference?.iterations ?? '–'}${star(c.minimal, 'reference')}`;
    return [String(c.Tk), ...kernel(c.split), ...kernel(c.unsplit), speedup(c.splitSpeedup!),
      c.reference ? ms(c.reference.medianMs) : c.skipped.reference ?? '', ...errs, iters];
  });
  return table(['Tk', 'split ms', 'split GB/s', 'split % copy', 'unsplit ms', 'unsplit GB/s', 'unsplit % copy', 'unsplit / split',
    'reference ms', 'rel err split vs unsplit', 'rel err vs reference (split / unsplit)', 'iters s/u/r'], rows);
}

/** The attention section as markdown: formulas, the compute roofline, decode and one table per op. */
export function attentionMarkdown(a: AttentionReport, tolerance: number): string[] {
  const m = a.matMul;
  const l = a.limits;
  return [
    '## Attention',
    '',
    `Causal, B = ${a.shape.B}, H = ${a.shape.H}, Hkv = ${a.shape.Hkv}, K = ${a.shape.K}, T = Tq = Tk. ` +
      'kernel = `implementation: \'webgpu\'`, reference = `implementation: \'reference\'` (tfjs ops, which materialise the ' +
      '[B, H, T, T] scores). forward+backward = the gradients of q, k and v given a random dO. GFLOP/s = flops / median time, with flops:',
    '',
    `- forward: ${a.flopsFormula.forward}`,
    `- forward+backward: ${a.flopsFormula['forward+backward']}`,
    `- matMul: ${a.flopsFormula.matMul}`,
    '',
    '% matMul = kernel GFLOP/s / tf.matMul GFLOP/s (the compute roofline, same run). time/T ÷ prev = the kernel\'s ms per token ' +
      'over that of the previous T in the table (1 for time linear in T, T / T′ for quadratic). ' +
      'peak MiB = tfjs\'s peak allocation during one run (`tf.profile`, in validation), kernel / reference.',
    `validation: \`reference\` = every output (forward: o; forward+backward: dq, dk, dv) against the reference at the same T; ` +
      `\`causal slices\` = where the reference is skipped, the kernel's rows for the first ${l.slice} queries against the reference on ` +
      `the first ${l.slice} tokens, and for the last ${l.slice} queries against the reference on those queries with the keys they see ` +
      `(all T keys, or for the block-sparse layout the tokens of their active blocks), o or dq, plus dk and dv of the last ${l.slice} keys. ` +
      `rel err = max|kernel − reference| / max|reference| (tolerance ${tolerance}).`,
    `Skips: the reference when its predicted peak (the [B,H,T,T] buffers measured at the previous T × B·H·T²·4 bytes) exceeds ${l.referenceGiB} GiB, ` +
      `or one run, predicted from the previous T's median × (T/T′)², exceeds ${l.referenceRunS} s; a side when its validation run and one sample, ` +
      `at the predicted time (the kernel's in proportion to its counted pairs), would end the whole bench after ${l.benchMinutes} minutes. ` +
      'The cases run shortest predicted kernel run first (the order is in the JSON), so the deadline cuts the longest kernels of every op. ' +
      `* after a side's iterations = its minimum (its run predicted over ${l.minimalRunS} s): the validation run is the warm-up, ` +
      'then 1–3 samples; the other side is sampled in full beside it.',
    '',
    '### Compute roofline',
    '',
    table(['kernel', 'shape', 'ms', 'GFLOP/s', 'rel err', 'iters'],
      [['tf.matMul (webgpu)', `[${m.M},${m.K}]·[${m.K},${m.N}]`, ms(m.medianMs), gflops(m.gflops), relErr(m.validation), String(m.iterations)]]),
    '',
    '### Decode: flashAttention split-K vs unsplit',
    '',
    `One query [${a.shape.B}, 1, ${a.shape.H}, ${a.shape.K}] against a k/v cache [${a.shape.B}, Tk, ${a.shape.Hkv}, ${a.shape.K}] ` +
      '(causal, so it sees every key): `split: \'always\'` (split-K: partials per 128-key chunk, then a merge) against ' +
      '`split: \'never\'` (the tiled forward) and the reference. ' +
      `GB/s = bytes / median time, with bytes ${a.decode.bytesFormula}; % copy against the copy kernel above. ` +
      'All three are validated against each other first; iters split/unsplit/reference.',
    '',
    decodeTable(a.decode.cases),
    '',
    ...a.ops.flatMap((o) => [
      `### ${o.op}`,
      '',
      `${o.about}. Pairs P: ${o.pairsFormula}.`,
      '',
      opTable(o),
      '',
    ]),
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
    `${r.date} · Node ${r.node}${r.poll ? ` (polls ${r.poll})` : ''} · tfjs ${r.tfjs}${r.quick ? ' · --quick' : ''} · wall ${r.wallSeconds.toFixed(0)} s`,
    '',
    'Fenced wall time (submit, then `queue.onSubmittedWorkDone()`), median over the samples after warm-up;',
    'kernel and reference samples alternate, each side stopping on its own time budget (at least 3 samples).',
    `A run shorter than ${MIN_SAMPLE_MS} ms in the warm-up is repeated back to back within a sample (fenced once, time divided`,
    'by the repeats), so that the fence and an idle GPU\'s clock ramp do not dominate; iters counts runs.',
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
