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

/** The report as markdown: header, roofline, mixers, runtime paths. */
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
