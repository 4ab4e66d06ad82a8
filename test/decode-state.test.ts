// src/layers/decode-state.ts's prefill helpers, fillPadding and windowAfter: tfjs ops on every
// backend and, on webgpu, one launch each of kernels/prefill/*.wgsl, against the same selection
// made here on the host. Both only move or zero numbers, so every check is exact (Object.is,
// which also tells a NaN kept from a 0 and -0 from 0).
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { fillPadding, windowAfter } from '../src/layers/decode-state.js';
import { REFERENCE_BACKENDS, describeOn, expectNoLeaks, launchedPipelines, seededUniform } from './helpers.js';

/** Whether every number of `got` is `expected`'s, NaN and the sign of 0 included. */
function expectSame(got: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(expected.length);
  const first = Array.from(got).findIndex((g, i) => !Object.is(g, expected[i]));
  expect(first, `${what}: first difference at ${first} (${got[first]} where ${expected[first]})`).toBe(-1);
}

/** Numbers in −2..2 with a NaN, an ∞ and a −0 strewn in (seeded). */
function strewn(seed: number, n: number): Float32Array {
  const xs = seededUniform(seed, n, -2, 2);
  for (const [k, special] of [[3, NaN], [5, Infinity], [7, -0]] as const) if (n > 0) xs[(seed * k) % n] = special;
  return xs;
}

const paddingCases = fc.record({
  B: fc.integer({ min: 0, max: 3 }), T: fc.integer({ min: 1, max: 9 }),
  // one trailing axis (a layer's x) or two (GLA's k and log gates [B, T, H, K])
  rest: fc.oneof(fc.tuple(fc.integer({ min: 1, max: 70 })), fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 5 }))),
  fractions: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 3, maxLength: 3 }),
  // a prompt's 0, or SelectiveSSM's −10³⁰ for its Δ's pre-activation
  fill: fc.constantFrom(0, -1e30),
  seed: fc.integer({ min: 1, max: 1e6 }),
});

const windowCases = fc.record({
  B: fc.integer({ min: 1, max: 3 }), T: fc.integer({ min: 1, max: 8 }), H: fc.integer({ min: 1, max: 4 }),
  D: fc.integer({ min: 1, max: 5 }), extra: fc.integer({ min: 0, max: 4 }),
  fractions: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 3, maxLength: 3 }),
  seed: fc.integer({ min: 1, max: 1e6 }),
});

/** Lengths in 0..T from fractions, with 0 and T among them as often as not. */
function lengthsOf(fractions: number[], B: number, T: number): number[] {
  return fractions.slice(0, B).map((f) => (f < 0.2 ? 0 : f > 0.8 ? T : Math.round(f * T)));
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'prefill helpers', () => {
  const ways = backend === 'webgpu' ? [false, true] : [false];
  for (const onKernel of ways) {
    const how = onKernel ? ' (one launch of its kernel)' : '';

    it(`fillPadding keeps each row's first lengths[b] steps as they are and fills the rest${how}`, async () => {
      await fc.assert(fc.asyncProperty(paddingCases, async ({ B, T, rest, fractions, fill, seed }) => {
        const shape = [B, T, ...rest];
        const inner = rest.reduce((a, b) => a * b, 1);
        const xs = strewn(seed, B * T * inner);
        const lengths = lengthsOf(fractions, B, T);
        const expected = xs.map((v, i) => (Math.floor(i / inner) % T < lengths[Math.floor(i / (inner * T))]! ? v : Math.fround(fill)));
        const x = tf.tensor(xs, shape);
        const n = tf.tensor1d(lengths, 'int32');
        await expectNoLeaks(async () => {
          let out: tf.Tensor | undefined;
          const ran = await launchedPipelines(async () => {
            out = fillPadding(x, n, { fill, onKernel });
            await out.data();
          });
          if (onKernel && B > 0) expect(ran).toEqual(['FillPadding']);
          expect(out!.shape).toEqual(shape);
          expectSame(await out!.data(), expected, `[${shape}] lengths [${lengths}]`);
          out!.dispose();
        });
        tf.dispose([x, n]);
      }), { numRuns: 25 });
    });

    it(`windowAfter holds each row's last H steps of the window and x's first lengths[b] steps${how}`, async () => {
      await fc.assert(fc.asyncProperty(windowCases, async ({ B, T, H, D, extra, fractions, seed }) => {
        // x's steps W = D + extra wide, of which the window takes the first D (SelectiveSSM's in projection)
        const W = D + extra;
        const hs = strewn(seed, B * H * D);
        const xs = strewn(seed + 1, B * T * W);
        const lengths = lengthsOf(fractions, B, T);
        const expected = Array.from({ length: B * H * D }, (_, m) => {
          const [d, i, b] = [m % D, Math.floor(m / D) % H, Math.floor(m / (D * H))];
          const c = lengths[b]! + i;
          return c < H ? hs[(b * H + c) * D + d]! : xs[(b * T + c - H) * W + d]!;
        });
        const history = tf.tensor3d(hs, [B, H, D]);
        const x = tf.tensor3d(xs, [B, T, W]);
        const n = tf.tensor1d(lengths, 'int32');
        await expectNoLeaks(async () => {
          let out: tf.Tensor | undefined;
          const ran = await launchedPipelines(async () => {
            out = windowAfter(history, x, n, onKernel);
            await out.data();
          });
          if (onKernel) expect(ran).toEqual(['WindowAfter']);
          expect(out!.shape).toEqual([B, H, D]);
          expectSame(await out!.data(), expected, `B ${B} T ${T} H ${H} D ${D} W ${W} lengths [${lengths}]`);
          out!.dispose();
        });
        tf.dispose([history, x, n]);
      }), { numRuns: 25 });
    });

    const taped = backend === 'wasm' ? 'fillPadding is differentiable (wasm has no gather gradient)' : 'both are differentiable';
    it(`under a gradient tape ${taped}${onKernel ? ' (tfjs ops: the kernels have no gradient)' : ''}`, async () => {
      // fillPadding's gradient is its mask; windowAfter's puts each output's on the step it took
      const x = tf.tensor3d([[[1, 2], [3, 4], [5, 6]]]);
      const history = tf.tensor3d([[[7], [8]]]);
      const n = tf.tensor1d([1], 'int32');
      await expectNoLeaks(async () => {
        const [dPadded] = tf.grads((t: tf.Tensor) => tf.sum(fillPadding(t as tf.Tensor3D, n, { fill: 5, onKernel })))([x]);
        expectSame(await dPadded!.data(), [1, 1, 0, 0, 0, 0], 'fillPadding');
        dPadded!.dispose();
        // the window after one step: [history[1], x[0]'s first number]
        const window = () => tf.grads((h: tf.Tensor, t: tf.Tensor) =>
          tf.sum(tf.mul(windowAfter(h as tf.Tensor3D, t as tf.Tensor3D, n, onKernel), tf.tensor3d([[[10], [20]]]))))([history, x]);
        // a gather's gradient is an UnsortedSegmentSum, which tfjs-wasm 4.22 lacks: no gather
        // is differentiable there, so windowAfter's gradient is checked on the other backends
        if (backend === 'wasm') return;
        const [dHistory, dx] = window();
        expectSame(await dHistory!.data(), [0, 10], 'windowAfter, history');
        expectSame(await dx!.data(), [20, 0, 0, 0, 0, 0], 'windowAfter, x');
        tf.dispose([dHistory!, dx!]);
      });
      tf.dispose([x, history, n]);
    });
  }
});
