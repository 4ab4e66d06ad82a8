// src/tensors.ts's detached (the same values, off the gradient tape, its own reference to the
// data), and the int and gather helpers that stand in for tfjs-wasm's faulty kernels.
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { clampInts, detached, gatherRows } from '../src/tensors.js';
import { REFERENCE_BACKENDS, describeOn, expectNoLeaks } from './helpers.js';

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'detached', () => {
  it('holds x\'s values, gives no gradient, and outlives x or dies before it without freeing the other', async () => {
    const x = tf.tensor1d([1, -2, 3]);
    await expectNoLeaks(async () => {
      // d/da (a·a + a·detached(a)) = 2a + detached(a) = 3a, not 4a
      const g = tf.grad((a: tf.Tensor) => tf.sum(tf.add(tf.mul(a, a), tf.mul(a, detached(a)))))(x);
      expect(Array.from(await g.data())).toEqual([3, -6, 9]);
      g.dispose();
      const d = detached(x);
      expect(Array.from(await d.data())).toEqual([1, -2, 3]);
      d.dispose();
      expect(Array.from(await x.data())).toEqual([1, -2, 3]);
    });
    const y = tf.tensor1d([4, 5]);
    const e = detached(y);
    y.dispose();
    expect(Array.from(await e.data())).toEqual([4, 5]);
    e.dispose();
    x.dispose();
  });
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'gatherRows and clampInts', () => {
  it('gatherRows takes each row\'s own tokens, for any count per row (tfjs-wasm\'s batched gather is right only at B)', async () => {
    const cases = fc.record({
      B: fc.integer({ min: 1, max: 4 }), L: fc.integer({ min: 1, max: 6 }), M: fc.integer({ min: 1, max: 5 }),
      rest: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }), seed: fc.integer({ min: 0, max: 1e6 }),
    });
    await fc.assert(fc.asyncProperty(cases, async ({ B, L, M, rest, seed }) => {
      const inner = rest.reduce((a, b) => a * b, 1);
      const xs = Array.from({ length: B * L * inner }, (_, n) => n - 7);
      const picks = Array.from({ length: B * M }, (_, n) => (seed + 5 * n * n) % L);
      const expected = Array.from({ length: B * M * inner }, (_, n) => {
        const [c, m, b] = [n % inner, Math.floor(n / inner) % M, Math.floor(n / (inner * M))];
        return xs[(b * L + picks[b * M + m]!) * inner + c]!;
      });
      const x = tf.tensor(xs, [B, L, ...rest]);
      const indices = tf.tensor2d(picks, [B, M], 'int32');
      await expectNoLeaks(async () => {
        const out = gatherRows(x, indices);
        expect(out.shape).toEqual([B, M, ...rest]);
        expect(Array.from(await out.data())).toEqual(expected);
        out.dispose();
      });
      tf.dispose([x, indices]);
    }), { numRuns: 30 });
  });

  it('clampInts clamps int32 at both ends (tfjs-wasm\'s ClipByValue clamps only the negative ones)', async () => {
    const x = tf.tensor1d([-(2 ** 31), -5, -1, 0, 3, 4, 5, 2 ** 24 + 1, 2 ** 31 - 1], 'int32');
    await expectNoLeaks(async () => {
      const out = clampInts(x, 0, 4);
      expect(out.dtype).toBe('int32');
      expect(Array.from(await out.data())).toEqual([0, 0, 0, 0, 3, 4, 4, 4, 4]);
      out.dispose();
    });
    x.dispose();
  });
});
