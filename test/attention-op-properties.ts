// Properties every attention op's kernels hold, whatever their scores: shared by the
// flashAttention, expressiveAttention and blockSparseAttention tests.
import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import type { AttentionShape } from './oracle/attention.js';
import { expectNoLeaks, maxAbsDiff, seededUniform, values } from './helpers.js';

/**
 * The softmax and ExpressiveAttention op tests' cases: B 1..2; Tq and Tk of 1, odd, and past a
 * 64-row query tile and a 32-key tile, independently (so Tq ≠ Tk and rows with no visible key
 * occur); H / Hkv from MHA to MQA; K of 8 to 128 and 7, not a multiple of 4 (the scalar-lane
 * kernels); causal or not; a random scale.
 */
export const attentionCases = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  Tq: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 40 }).map((v) => 2 * v + 1), fc.integer({ min: 60, max: 90 })),
  Tk: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 40 }).map((v) => 2 * v + 1), fc.integer({ min: 60, max: 90 })),
  heads: fc.constantFrom([1, 1], [2, 2], [4, 2], [4, 1], [3, 1]),
  K: fc.constantFrom(8, 16, 32, 64, 128, 7),
  causal: fc.boolean(),
  scale: fc.double({ min: 0.05, max: 0.5, noNaN: true }),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});
export type AttentionCase = { B: number; Tq: number; Tk: number; heads: readonly number[]; K: number; causal: boolean; scale: number; seed: number };

/** A case's q and k (uniform within ±spread), v and dO (within ±1), seeded by it. */
export function attentionInputs(c: AttentionCase, spread = 1): AttentionCaseInputs & { dOs: Float32Array } {
  const s = { B: c.B, Tq: c.Tq, Tk: c.Tk, H: c.heads[0]!, Hkv: c.heads[1]!, K: c.K };
  const qs = seededUniform(c.seed, s.B * s.Tq * s.H * s.K, -spread, spread);
  const ks = seededUniform(c.seed + 1, s.B * s.Tk * s.Hkv * s.K, -spread, spread);
  const vs = seededUniform(c.seed + 2, s.B * s.Tk * s.Hkv * s.K);
  const dOs = seededUniform(c.seed + 3, s.B * s.Tq * s.H * s.K);
  return { s, qs, ks, vs, dOs };
}

/** An attention op `(q, k, v, { implementation })` as the three attention ops take it. */
export type AttentionOpUnderTest = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: { implementation: 'webgpu' | 'reference' }) => tf.Tensor4D;

/** A test case's inputs: q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`, flat. */
export interface AttentionCaseInputs { s: AttentionShape; qs: Float32Array; ks: Float32Array; vs: Float32Array }

/** The op under test through its kernels, with the options case `c` gives it. */
export type AttentionKernel<C> = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, c: C) => tf.Tensor4D;

/**
 * An attention op's forward and its gradients, through the kernels and through the reference,
 * leave no tensor behind: q `[1, 9, 2, 8]`, k = v `[1, 9, 1, 8]` (grouped-query heads).
 */
export function itAttentionOpLeaksNothing(op: AttentionOpUnderTest): void {
  it('forward and gradients leak no tensors', async () => {
    const q = tf.randomNormal([1, 9, 2, 8]) as tf.Tensor4D;
    const kv = tf.randomNormal([1, 9, 1, 8]) as tf.Tensor4D;
    await expectNoLeaks(async () => {
      for (const implementation of ['webgpu', 'reference'] as const) {
        const o = op(q, kv, kv, { implementation });
        const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => op(a as tf.Tensor4D, b as tf.Tensor4D, b as tf.Tensor4D, { implementation }))([q, kv]);
        await o.data();
        tf.dispose([o, g]);
      }
    });
    tf.dispose([q, kv]);
  });
}

/**
 * With fewer key/value heads than query heads (every case of `grouped`), the kernel gives exactly
 * what it gives with each key/value head repeated.
 */
export function itMatchesRepeatedHeads<C>(
  grouped: fc.Arbitrary<C>, inputs: (c: C) => AttentionCaseInputs, op: AttentionKernel<C>, numRuns = 8,
): void {
  it('grouped-query attention equals multi-head attention with repeated K/V heads', async () => {
    await fc.assert(fc.asyncProperty(grouped, async (c) => {
      const [a, b] = tf.tidy(() => {
        const { s, qs, ks, vs } = inputs(c);
        const q = tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]);
        const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
        const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
        const heads = tf.tensor1d(Array.from({ length: s.H }, (_, h) => Math.floor((h * s.Hkv) / s.H)), 'int32');
        return [op(q, k, v, c), op(q, tf.gather(k, heads, 2) as tf.Tensor4D, tf.gather(v, heads, 2) as tf.Tensor4D, c)];
      });
      expect(maxAbsDiff(await values(a!), await values(b!))).toBe(0);
      tf.dispose([a, b]);
    }), { numRuns });
  });
}

/** Causal: keys and values after the last a query sees (set to ±5 here) leave its output exactly as it was. */
export function itIgnoresKeysItCannotSee<C extends { Tk: number; causal: boolean }>(
  cases: fc.Arbitrary<C>, inputs: (c: C) => AttentionCaseInputs, op: AttentionKernel<C>,
): void {
  it('causal: keys and values a query cannot see do not change its output', async () => {
    await fc.assert(fc.asyncProperty(cases.filter((c) => c.Tk >= 2), fc.nat(), async (c0, cut) => {
      const c = { ...c0, causal: true };
      const { s, qs, ks, vs } = inputs(c);
      const j = cut % (s.Tk - 1); // change keys j+1..Tk−1; queries i with i + Tk − Tq ≤ j see none of them
      const lastRow = j + s.Tq - s.Tk;
      if (lastRow < 0) return;
      const ks2 = ks.slice();
      const vs2 = vs.slice();
      const row = s.Hkv * s.K;
      for (let b = 0; b < s.B; b++) {
        for (let t = j + 1; t < s.Tk; t++) {
          for (let e = 0; e < row; e++) { ks2[(b * s.Tk + t) * row + e] = 5; vs2[(b * s.Tk + t) * row + e] = -5; }
        }
      }
      const [a, b] = tf.tidy(() => [[ks, vs], [ks2, vs2]].map(([kk, vv]) => op(
        tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]), tf.tensor4d(kk!, [s.B, s.Tk, s.Hkv, s.K]), tf.tensor4d(vv!, [s.B, s.Tk, s.Hkv, s.K]), c,
      ).slice([0, 0, 0, 0], [s.B, lastRow + 1, s.H, s.K])));
      expect(maxAbsDiff(await values(a!), await values(b!))).toBe(0);
      tf.dispose([a, b]);
    }), { numRuns: 8 });
  });
}
