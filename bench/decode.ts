/**
 * Decode in the attention section of `npm run bench`: one query against a key/value cache
 * through `ops.flashAttention`'s split-K kernels (Flash-Decoding: partials per key chunk, then
 * a merge), its unsplit tiled kernel, and its reference, validated against each other first.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { ATTENTION, runDecode, type DecodeSide } from './cases.js';
import { LIMITS, budgetsOf, minimalSides, overBudget, seconds } from './limits.js';
import { gbps, type AttentionReport, type DecodeResult } from './report.js';
import { agreement, type Validation } from './validation.js';
import { timeInterleaved } from './timing.js';

const DECODE_SIDES: readonly DecodeSide[] = ['split', 'unsplit', 'reference'];

/** A run of each side at Tk, predicted from its last run in proportion to Tk; undefined before any run. */
function predict(last: Partial<Record<DecodeSide, { Tk: number; ms: number }>>, side: DecodeSide, Tk: number): number | undefined {
  const p = last[side];
  return p && p.ms * (Tk / p.Tk);
}

/** Each side run once on the same inputs: the kernels against each other, and each against the reference when it ran. */
async function validateDecode(
  sides: readonly DecodeSide[], q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, tolerance: number,
): Promise<{ validation: NonNullable<DecodeResult['validation']>; ms: Partial<Record<DecodeSide, number>> }> {
  const out: Partial<Record<DecodeSide, Float32Array>> = {};
  const ms: Partial<Record<DecodeSide, number>> = {};
  for (const side of sides) {
    const start = performance.now();
    const o = runDecode(side, q, k, v);
    out[side] = (await o.data()) as Float32Array;
    ms[side] = performance.now() - start;
    o.dispose();
  }
  const against = (a: DecodeSide, b: DecodeSide): Validation | undefined =>
    out[a] && out[b] && agreement([[out[a]!, out[b]!]], tolerance);
  const splitVsUnsplit = against('split', 'unsplit')!;
  const splitVsReference = against('split', 'reference');
  const unsplitVsReference = against('unsplit', 'reference');
  const ok = [splitVsUnsplit, splitVsReference, unsplitVsReference].every((c) => c === undefined || c.ok);
  return { validation: { splitVsUnsplit, splitVsReference, unsplitVsReference, ok }, ms };
}

/**
 * A decode step at each cache length in `caches`, increasing: q `[B, 1, H, K]`, k and v
 * `[B, Tk, Hkv, K]`, causal (one query sees every key). Skips the kernels when their validation
 * run and one sample would end the bench past its deadline, the reference also when one run is
 * predicted over {@link LIMITS} `referenceRunS`; its scores are only `[B, H, 1, Tk]`.
 */
export async function measureDecode(
  backend: WebGPUBackend, caches: readonly number[], seed: number, tolerance: number, copyGbps: number, started: number,
  log: (line: string) => void,
): Promise<AttentionReport['decode']> {
  const { B, H, Hkv, K } = ATTENTION;
  const last: Partial<Record<DecodeSide, { Tk: number; ms: number }>> = {};
  const cases: DecodeResult[] = [];
  for (const Tk of caches) {
    const bytes = 2 * B * Tk * Hkv * K * 4;
    const result: DecodeResult = { B, Tk, H, Hkv, K, bytes, skipped: {}, minimal: [] };
    cases.push(result);
    const [split, unsplit, reference] = DECODE_SIDES.map((side) => predict(last, side, Tk));
    const kernels = split !== undefined && unsplit !== undefined ? split + unsplit : undefined;
    result.skipped.kernels = overBudget(kernels, started, 'a split and an unsplit run');
    result.skipped.reference = result.skipped.kernels ? 'not run: the kernels are skipped'
      : reference !== undefined && reference > LIMITS.referenceRunS * 1000
        ? `skipped: over time budget (one run predicted ~${seconds(reference)} s > ${LIMITS.referenceRunS} s)`
        : overBudget(kernels !== undefined && reference !== undefined ? kernels + reference : undefined, started,
          'the kernels\' and one reference run');
    const label = `flashAttention decode Tk=${Tk}`;
    if (result.skipped.kernels) {
      log(`${label}: ${result.skipped.kernels}`);
      continue;
    }
    const sides = DECODE_SIDES.filter((side) => side !== 'reference' || !result.skipped.reference);
    result.minimal = minimalSides<DecodeSide>(result.skipped.reference ? { split, unsplit } : { split, unsplit, reference });
    const q = tf.randomNormal([B, 1, H, K], 0, 1, 'float32', seed) as tf.Tensor4D;
    const k = tf.randomNormal([B, Tk, Hkv, K], 0, 1, 'float32', seed + 1) as tf.Tensor4D;
    const v = tf.randomNormal([B, Tk, Hkv, K], 0, 1, 'float32', seed + 2) as tf.Tensor4D;
    try {
      const checked = await validateDecode(sides, q, k, v, tolerance);
      result.validation = checked.validation;
      for (const side of sides) last[side] = { Tk, ms: checked.ms[side]! };
      if (!checked.validation.ok) {
        console.error(`\n[bench] !!! VALIDATION FAILED: ${label}: ${JSON.stringify(checked.validation)}. Not timed.\n`);
        continue;
      }
      const runs = Object.fromEntries(sides.map((side) => [side, () => runDecode(side, q, k, v)])) as
        Record<DecodeSide, () => tf.Tensor>;
      const timings = await timeInterleaved(backend, runs, ...budgetsOf(result.minimal));
      for (const side of sides) last[side] = { Tk, ms: timings[side].medianMs };
      const measured = (side: DecodeSide) => ({ ...timings[side], gbps: gbps(bytes, timings[side].medianMs) });
      const kernel = (side: DecodeSide) => ({ ...measured(side), percentOfCopy: (100 * measured(side).gbps) / copyGbps });
      result.split = kernel('split');
      result.unsplit = kernel('unsplit');
      if (timings.reference) result.reference = measured('reference');
      result.splitSpeedup = result.unsplit.medianMs / result.split.medianMs;
      log(`${label}: split ${result.split.medianMs.toFixed(1)} ms, unsplit ${result.unsplit.medianMs.toFixed(1)} ms ` +
        `(${result.splitSpeedup.toFixed(2)}×), reference ${result.reference ? `${result.reference.medianMs.toFixed(1)} ms` : result.skipped.reference}`);
    } finally {
      tf.dispose([q, k, v]);
    }
  }
  return { bytesFormula: '8·B·Tk·Hkv·K (read k and v once; float32)', cases };
}
