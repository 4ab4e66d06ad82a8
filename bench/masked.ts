/**
 * The masked-attention section of `npm run bench`: `flashAttention`'s forward kernel, causal, on
 * padded, packed and windowed inputs, timed interleaved with the unmasked causal kernel at the
 * same T, with GFLOP/s counted on the visible (query, key) pairs only. A kernel that skips the
 * tiles no query sees keeps its rate per visible pair; the issue's target is half the unmasked
 * rate or better at T ≥ 4096. `npm run bench -- --masked` runs this section alone.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { ops, type FlashAttentionOptions } from '../src/index.js';
import { ATTENTION, type Side } from './cases.js';
import { LIMITS, seconds } from './limits.js';
import { agreement, type Validation } from './validation.js';
import { fence, timeInterleaved, type Budget, type Timing } from './timing.js';

/** Sequence lengths of a full run and of `--quick`; a length whose runs would pass the section's deadline is skipped. */
export const MASKED_LENGTHS = { full: [1024, 4096, 8192, 16384], quick: [1024, 2048] } as const;
/**
 * The section's own deadline in `npm run bench`, in minutes from its start, so that it adds at
 * most this; `-- --masked --minutes N` runs the section alone with a deadline of N.
 */
export const MASKED_MINUTES = 4;
/** The window of the windowed case, in keys (the diagonal included). */
export const WINDOW = 256;
/** Segments of the packed case, of T / SEGMENTS tokens each. */
export const SEGMENTS = 4;
/** The length at and above which the target (masked ≥ half the unmasked GFLOP/s per visible pair) applies. */
export const TARGET_FROM_T = 4096;
/** The target: masked GFLOP/s per visible pair over unmasked GFLOP/s, at least. */
export const TARGET_RATIO = 0.5;

// runs under a second: a warm-up sets the repeats per sample (timing.ts), then a few samples;
// longer runs: the validation run was the warm-up, and two or three samples
const SHORT_BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 20, budgetMs: 2000 };
const LONG_BUDGET: Budget = { warmup: 0, minIterations: 2, maxIterations: 3, budgetMs: 10_000 };

/** One visibility case: the options it adds to causal `flashAttention` at T, and its visible pairs. */
export interface MaskedCase {
  name: 'unmasked' | 'padded' | 'packed' | 'windowed';
  /** What the case passes, for the report. */
  about: string;
  /** How {@link MaskedCase.pairs} counts, for the report. */
  pairsFormula: string;
  /** The visible (query, key) pairs at T = Tq = Tk, B = 1, per head; exact. */
  pairs(T: number): number;
  /** The case's visibility inputs at T: tensors made once per length and disposed by the caller. */
  inputs(T: number): MaskedInputs;
}

/** A case's visibility tensors at one T: `[B]` kvLengths and `[B, T]` segment ids, where used. */
interface MaskedInputs {
  kvLengths?: tf.Tensor1D;
  segmentIds?: tf.Tensor2D;
}

/** Σ_{i<n} (i + 1): the causal pairs of n tokens. */
const triangle = (n: number) => (n * (n + 1)) / 2;

/** The four cases, unmasked first (the others' ratios are to it). */
export const MASKED_CASES: readonly MaskedCase[] = [
  {
    name: 'unmasked',
    about: 'causal only',
    pairsFormula: 'T(T+1)/2',
    pairs: triangle,
    inputs: () => ({}),
  },
  {
    name: 'padded',
    about: 'kvLengths = [T/2]: the second half of the keys is padding',
    pairsFormula: 'L(L+1)/2 + (T−L)·L with L = T/2 (the padded queries count: they see the L real keys)',
    pairs: (T) => triangle(T / 2) + (T - T / 2) * (T / 2),
    inputs: (T) => ({ kvLengths: tf.tensor1d([T / 2], 'int32') }),
  },
  {
    name: 'packed',
    about: `segmentIds: ${SEGMENTS} equal segments`,
    pairsFormula: `${SEGMENTS} · n(n+1)/2 with n = T/${SEGMENTS}`,
    pairs: (T) => SEGMENTS * triangle(T / SEGMENTS),
    inputs: (T) => ({
      segmentIds: tf.tensor2d(Int32Array.from({ length: T }, (_, i) => Math.floor((i * SEGMENTS) / T)), [1, T], 'int32'),
    }),
  },
  {
    name: 'windowed',
    about: `window: ${WINDOW}`,
    pairsFormula: `Σ_i min(i+1, w) = w(w+1)/2 + (T−w)·w with w = ${WINDOW} (T ≥ w)`,
    pairs: (T) => triangle(WINDOW) + (T - WINDOW) * WINDOW,
    inputs: () => ({}),
  },
];

/** The options of a case for the whole sequence, or for the query rows from `offset` on. */
function optionsOf(c: MaskedCase, x: MaskedInputs, side: Side, slice?: { offset: number; rows?: tf.Tensor2D }): FlashAttentionOptions {
  const options: FlashAttentionOptions = { causal: true, implementation: side };
  if (c.name === 'windowed') options.window = WINDOW;
  if (x.kvLengths) options.kvLengths = x.kvLengths;
  if (slice) options.queryOffsets = [slice.offset];
  if (x.segmentIds) options.segmentIds = slice?.rows ? { query: slice.rows, key: x.segmentIds } : x.segmentIds;
  return options;
}

/** One case at one T. */
export interface MaskedResult {
  case: MaskedCase['name'];
  T: number;
  pairs: number;
  /** 4·B·H·K·pairs. */
  flops: number;
  validation?: Validation & { rows: string };
  webgpu?: Timing & { gflops: number };
  /** This case's GFLOP/s over the unmasked case's, in the same interleaved run. */
  ratio?: number;
  skipped?: string;
}

/** The section's results, written into the bench's JSON. */
export interface MaskedAttentionReport {
  shape: typeof ATTENTION & { causal: true };
  flopsFormula: string;
  cases: Array<Pick<MaskedCase, 'name' | 'about' | 'pairsFormula'>>;
  /** Rows `[T, case]`, by T then in {@link MASKED_CASES} order. */
  results: MaskedResult[];
  minutes: number;
  target: { fromT: number; ratio: number; met: boolean | undefined };
}

/**
 * The kernel against the reference on two slices of query rows (`LIMITS.slice` rows around T/2,
 * where the padding and a segment boundary fall, and the last ones), each slice through the
 * reference alone with `queryOffsets` placing its rows, so that the reference's scores stay
 * `[slice, T]`. `kernelOut` is the kernel's full output.
 */
async function validateSlices(
  c: MaskedCase, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, x: MaskedInputs, kernelOut: tf.Tensor4D, tolerance: number,
): Promise<Validation & { rows: string }> {
  const T = q.shape[1];
  const S = Math.min(LIMITS.slice, T / 2);
  const starts = [T / 2 - S / 2, T - S];
  const compared = tf.tidy(() => starts.flatMap((offset) => {
    const rows = x.segmentIds?.slice([0, offset], [-1, S]) as tf.Tensor2D | undefined;
    const qs = q.slice([0, offset, 0, 0], [-1, S, -1, -1]);
    const reference = ops.flashAttention(qs, k, v, optionsOf(c, x, 'reference', { offset, rows }));
    return [kernelOut.slice([0, offset, 0, 0], [-1, S, -1, -1]), reference];
  }));
  const data = await Promise.all(compared.map((t) => t.data()));
  tf.dispose(compared);
  const pairs = starts.map((_, i) => [data[2 * i]!, data[2 * i + 1]!] as [ArrayLike<number>, ArrayLike<number>]);
  return { ...agreement(pairs, tolerance), rows: starts.map((s) => `${s}–${s + S - 1}`).join(', ') };
}

/**
 * Validates then times every case at each length, the four interleaved sample by sample so
 * that their ratios come from one run. A length is skipped when its predicted runs (from the
 * previous length, in proportion to the visible pairs) would end the section after `minutes`.
 */
export async function measureMaskedAttention(
  backend: WebGPUBackend, lengths: readonly number[], seed: number, tolerance: number, log: (line: string) => void,
  minutes = MASKED_MINUTES,
): Promise<MaskedAttentionReport> {
  const { B, H, Hkv, K } = ATTENTION;
  const started = performance.now();
  const results: MaskedResult[] = [];
  // the previous length's kernel runs, and what its validation round spent besides them (the
  // reference on the slices, tfjs compiling its shaders for the new shapes)
  let last: { T: number; ms: number[]; overheadMs: number } | undefined;
  for (const T of lengths) {
    const rowOf = (c: MaskedCase) => ({ case: c.name, T, pairs: c.pairs(T), flops: 4 * B * H * K * c.pairs(T) });
    const predicted = last && MASKED_CASES.map((c, i) => last!.ms[i]! * (c.pairs(T) / c.pairs(last!.T)));
    const perRound = predicted?.reduce((a, b) => a + b, 0);
    const long = perRound !== undefined && Math.max(...predicted!) > LIMITS.minimalRunS * 1000;
    // the validation run and the samples
    const rounds = 1 + (long ? LONG_BUDGET : SHORT_BUDGET).minIterations;
    const endMinutes = perRound === undefined ? 0 : (performance.now() + rounds * perRound + last!.overheadMs - started) / 60_000;
    if (endMinutes > minutes) {
      const skipped = `skipped: over time budget (the four runs predicted ~${seconds(perRound!)} s; ` +
        `the section would end at ~${endMinutes.toFixed(0)} min > ${minutes})`;
      log(`masked attention T=${T}: ${skipped}`);
      for (const c of MASKED_CASES) results.push({ ...rowOf(c), skipped });
      continue;
    }
    const q = tf.randomNormal([B, T, H, K], 0, 1, 'float32', seed) as tf.Tensor4D;
    const k = tf.randomNormal([B, T, Hkv, K], 0, 1, 'float32', seed + 1) as tf.Tensor4D;
    const v = tf.randomNormal([B, T, Hkv, K], 0, 1, 'float32', seed + 2) as tf.Tensor4D;
    const inputs = MASKED_CASES.map((c) => c.inputs(T));
    try {
      const ms: number[] = [];
      const rows: MaskedResult[] = [];
      const validationStart = performance.now();
      for (const [i, c] of MASKED_CASES.entries()) {
        await fence(backend);
        const start = performance.now();
        const out = ops.flashAttention(q, k, v, optionsOf(c, inputs[i]!, 'webgpu'));
        await fence(backend);
        ms.push(performance.now() - start);
        const validation = await validateSlices(c, q, k, v, inputs[i]!, out, tolerance);
        out.dispose();
        rows.push({ ...rowOf(c), validation });
        if (!validation.ok) {
          console.error(`\n[bench] !!! VALIDATION FAILED: masked attention ${c.name} T=${T} (rows ${validation.rows}): ` +
            `max|kernel − reference| = ${validation.maxAbsDiff} against max|reference| = ${validation.maxAbsReference} ` +
            `(relative ${validation.relative}, tolerance ${tolerance}). Not timed.\n`);
        }
      }
      const overheadMs = performance.now() - validationStart - ms.reduce((a, b) => a + b, 0);
      const timed = MASKED_CASES.filter((_, i) => rows[i]!.validation!.ok);
      const runs = Object.fromEntries(timed.map((c) => [c.name, () =>
        ops.flashAttention(q, k, v, optionsOf(c, inputs[MASKED_CASES.indexOf(c)]!, 'webgpu'))]));
      const budget = Math.max(...ms) > LIMITS.minimalRunS * 1000 ? LONG_BUDGET : SHORT_BUDGET;
      const timings: Record<string, Timing> = await timeInterleaved(backend, runs, budget);
      for (const row of rows) {
        const t = timings[row.case];
        if (t) row.webgpu = { ...t, gflops: row.flops / (t.medianMs * 1e6) };
      }
      const unmasked = rows[0]!.webgpu?.gflops;
      for (const row of rows) {
        if (row.webgpu && unmasked) row.ratio = row.webgpu.gflops / unmasked;
        log(`masked attention ${row.case} T=${T}: ` + (row.webgpu
          ? `${row.webgpu.medianMs.toFixed(1)} ms (${row.webgpu.iterations}×), ${row.webgpu.gflops.toFixed(3)} GFLOP/s on ` +
            `${row.pairs} visible pairs, ×${row.ratio?.toFixed(2)} unmasked; relative ${row.validation!.relative.toExponential(1)}`
          : 'not timed'));
      }
      // the medians predict the next length better than the validation runs, which compiled the pipelines
      last = { T, ms: rows.map((row, i) => row.webgpu?.medianMs ?? ms[i]!), overheadMs };
      results.push(...rows);
    } finally {
      tf.dispose([q, k, v, ...inputs.flatMap((x) => [x.kvLengths, x.segmentIds].filter((t) => t !== undefined))]);
    }
  }
  // a masked case that ran but has no ratio (its validation, or the unmasked one's, failed) fails the target
  const judged = results.filter((r) => r.T >= TARGET_FROM_T && r.case !== 'unmasked' && !r.skipped);
  return {
    shape: { ...ATTENTION, causal: true },
    flopsFormula: '4·B·H·K·P, P the visible (query, key) pairs of the case (q·kᵀ and p·v, 2·K flops per pair each, per head)',
    cases: MASKED_CASES.map(({ name, about, pairsFormula }) => ({ name, about, pairsFormula })),
    results,
    minutes: (performance.now() - started) / 60_000,
    target: { fromT: TARGET_FROM_T, ratio: TARGET_RATIO, met: judged.length ? judged.every((r) => r.ratio !== undefined && r.ratio >= TARGET_RATIO) : undefined },
  };
}

/** The section as markdown: one row per case and length. */
export function maskedAttentionMarkdown(r: MaskedAttentionReport): string {
  const { B, H, Hkv, K } = r.shape;
  const head = [
    '## Masked attention (flashAttention forward)',
    '',
    `B = ${B}, H = ${H}, Hkv = ${Hkv}, K = ${K}, causal; every case timed interleaved with the unmasked one at the same T. ` +
      `GFLOP/s counts ${r.flopsFormula}. Validated against the reference on query slices before timing.`,
    '',
    ...r.cases.map((c) => `- **${c.name}**: ${c.about}; P = ${c.pairsFormula}`),
    '',
    '| T | case | visible pairs | ms | GFLOP/s (visible) | × unmasked | validation (rows, relative) | iters |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  // a length is skipped whole: one row for its four cases
  const rows = r.results.filter((x) => !x.skipped || x.case === 'unmasked').map((x) => {
    if (x.skipped) return `| ${x.T} | all four | – | ${x.skipped} | – | – | – | – |`;
    const checked = x.validation
      ? `${x.validation.ok ? 'ok' : 'FAILED'} (${x.validation.rows}, ${x.validation.relative.toExponential(1)})`
      : '–';
    if (!x.webgpu) return `| ${x.T} | ${x.case} | ${x.pairs} | not timed | – | – | ${checked} | – |`;
    return `| ${x.T} | ${x.case} | ${x.pairs} | ${x.webgpu.medianMs.toFixed(1)} | ${x.webgpu.gflops.toFixed(3)} | ` +
      `${x.ratio?.toFixed(2) ?? '–'} | ${checked} | ${x.webgpu.iterations} |`;
  });
  const verdict = r.target.met === undefined
    ? `no masked case ran at T ≥ ${r.target.fromT}, so the target is not judged`
    : r.target.met ? 'met' : 'not met';
  return [...head, ...rows, '',
    `Target (every masked case ≥ ${r.target.ratio} × the unmasked GFLOP/s at T ≥ ${r.target.fromT}): **${verdict}**. ` +
    `Section: ${r.minutes.toFixed(1)} min.`].join('\n');
}
