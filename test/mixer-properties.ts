// The properties every parameter-free mixer (CausalGeneration, AverageContext) must hold,
// written once and driven by a descriptor per mixer.
import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import type { Implementation } from '../src/index.js';
import type { Shape3 } from './oracle/causal-generation.js';
import {
  type TestBackend, EPS32, decodeSteps, describeOn, expectNoLeaks, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, seededIntegers,
  seededUniform, values,
} from './helpers.js';

/** A mixer variant: its options, and what the tests need to know about it. */
export interface Variant {
  label: string;
  options: Record<string, unknown>;
  /** Output t depends on inputs 0..t only. */
  causal: boolean;
  /** Uses min/max selections: gradient tests draw integer inputs so selections agree in every precision. */
  selects: boolean;
}

/** Layer surface used by the decode tests. */
export interface DecodingLayer<S extends tf.TensorContainer> extends tf.layers.Layer {
  initState(batch: number): S;
  step(x: tf.Tensor2D, state: S): [tf.Tensor2D, S];
  getWeights(): tf.Tensor[];
}

export interface MixerUnderTest<S extends tf.TensorContainer> {
  name: string;
  variants: Variant[];
  op(x: tf.Tensor3D, options: Record<string, unknown>, implementation: Implementation): tf.Tensor3D;
  oracle(x: ArrayLike<number>, shape: Shape3, options: Record<string, unknown>): Float64Array;
  gradOracle(x: ArrayLike<number>, dy: ArrayLike<number>, shape: Shape3, options: Record<string, unknown>): Float64Array;
  /** |float32 reference − float64 oracle| may reach (T + 4)·ε·scale·this (summation order error). */
  referenceErrorScale(options: Record<string, unknown>): number;
  layer(options: Record<string, unknown> & { implementation?: Implementation; projection?: boolean }): DecodingLayer<S>;
}

/**
 * B in 1..3; T of 1, odd, and long enough for many scan chunks; D in 1..37, half the time a
 * multiple of 4 (the kernels' vec4 variant) and otherwise any width (their scalar variant).
 */
export const shapes = fc.record({
  B: fc.integer({ min: 1, max: 3 }),
  T: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 60 }).map((v) => 2 * v + 1), fc.integer({ min: 2, max: 300 })),
  D: fc.oneof(fc.integer({ min: 1, max: 9 }).map((k) => 4 * k), fc.integer({ min: 1, max: 37 })),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

type Case = { B: number; T: number; D: number; seed: number };

const shapeOf = (c: Case): Shape3 => [c.B, c.T, c.D];

/** dL/dx of sum(op(x) · dy) */
function gradOf(f: (x: tf.Tensor3D) => tf.Tensor3D, x: tf.Tensor3D, dy: tf.Tensor3D): tf.Tensor {
  return tf.grad((v: tf.Tensor) => f(v as tf.Tensor3D))(x, dy);
}

/** The backends' shared properties, run on `backend`. */
export function mixerProperties<S extends tf.TensorContainer>(m: MixerUnderTest<S>, backend: TestBackend): void {
  const implementations: Implementation[] = backend === 'webgpu' ? ['webgpu', 'reference'] : ['reference'];

  describeOn(backend, m.name, () => {
    for (const v of m.variants) {
      it(`${v.label}: reference matches the float64 oracle within its summation error`, async () => {
        await fc.assert(fc.asyncProperty(shapes, async (c) => {
          const shape = shapeOf(c);
          const n = c.B * c.T * c.D;
          const xs = v.selects ? seededIntegers(c.seed, n) : seededUniform(c.seed, n);
          const dys = seededUniform(c.seed + 1, n);
          const bound = (c.T + 4) * EPS32 * m.referenceErrorScale(v.options);
          const [y, dx] = tf.tidy(() => {
            const x = tf.tensor3d(xs, shape);
            const dy = tf.tensor3d(dys, shape);
            const f = (t: tf.Tensor3D) => m.op(t, v.options, 'reference');
            return [f(x), gradOf(f, x, dy)];
          });
          const yOracle = m.oracle(xs, shape, v.options);
          expect(maxAbsDiff(await values(y), yOracle)).toBeLessThanOrEqual(bound * Math.max(1, maxAbs(xs)));
          const dxOracle = m.gradOracle(xs, dys, shape, v.options);
          expect(maxAbsDiff(await values(dx), dxOracle)).toBeLessThanOrEqual(bound * Math.max(1, maxAbs(dxOracle)));
          tf.dispose([y, dx]);
        }));
      });

      if (backend === 'webgpu') {
        it(`${v.label}: kernel matches the oracle at least as well as the reference, forward and gradient`, async () => {
          await fc.assert(fc.asyncProperty(shapes, fc.boolean(), async (c, integers) => {
            const shape = shapeOf(c);
            const n = c.B * c.T * c.D;
            // selections must agree across precisions for gradients to be comparable
            const xs = integers || v.selects ? seededIntegers(c.seed, n) : seededUniform(c.seed, n);
            const dys = seededUniform(c.seed + 1, n);
            const run = (impl: Implementation) => tf.tidy(() => {
              const x = tf.tensor3d(xs, shape);
              const f = (t: tf.Tensor3D) => m.op(t, v.options, impl);
              return [f(x), gradOf(f, x, tf.tensor3d(dys, shape))];
            });
            const [yk, dxk] = run('webgpu');
            const [yr, dxr] = run('reference');
            const yOracle = m.oracle(xs, shape, v.options);
            expectWithinDerivedTolerance(await values(yk!), await values(yr!), yOracle, 'forward');
            const dxOracle = m.gradOracle(xs, dys, shape, v.options);
            expectWithinDerivedTolerance(await values(dxk!), await values(dxr!), dxOracle, 'gradient');
            tf.dispose([yk, dxk, yr, dxr]);
          }));
        });

        it(`${v.label}: a continuous forward input matches the oracle too`, async () => {
          await fc.assert(fc.asyncProperty(shapes, async (c) => {
            const shape = shapeOf(c);
            const xs = seededUniform(c.seed, c.B * c.T * c.D, -3, 3);
            const [yk, yr] = tf.tidy(() => {
              const x = tf.tensor3d(xs, shape);
              return [m.op(x, v.options, 'webgpu'), m.op(x, v.options, 'reference')];
            });
            expectWithinDerivedTolerance(await values(yk), await values(yr), m.oracle(xs, shape, v.options), 'forward');
            tf.dispose([yk, yr]);
          }));
        });
      }

      for (const impl of implementations) {
        it(`${v.label} (${impl}): ${v.causal ? 'changing tokens after t leaves outputs up to t unchanged' : 'outputs see later tokens (non-causal)'}`, async () => {
          await fc.assert(fc.asyncProperty(shapes.filter((c) => c.T >= 2), fc.nat(), async (c, cut) => {
            const shape = shapeOf(c);
            const t = cut % (c.T - 1); // keep 0..t, change t+1..T-1
            const xs = seededUniform(c.seed, c.B * c.T * c.D);
            const changed = xs.slice();
            const other = seededUniform(c.seed + 7, xs.length, 2, 3);
            for (let b = 0; b < c.B; b++) {
              for (let i = ((b * c.T) + t + 1) * c.D; i < (b + 1) * c.T * c.D; i++) changed[i] = other[i]!;
            }
            const [y1, y2] = tf.tidy(() => [xs, changed].map((a) =>
              m.op(tf.tensor3d(a, shape), v.options, impl).slice([0, 0, 0], [c.B, t + 1, c.D])));
            const diff = maxAbsDiff(await values(y1!), await values(y2!));
            if (v.causal) expect(diff).toBe(0);
            else expect(diff).toBeGreaterThan(0);
            tf.dispose([y1, y2]);
          }));
        });

        it(`${v.label} (${impl}): permuting the batch permutes the output`, async () => {
          await fc.assert(fc.asyncProperty(shapes.filter((c) => c.B >= 2), async (c) => {
            const shape = shapeOf(c);
            const perm = Array.from({ length: c.B }, (_, i) => (i + 1) % c.B);
            const [a, b] = tf.tidy(() => {
              const x = tf.tensor3d(seededUniform(c.seed, c.B * c.T * c.D), shape);
              const idx = tf.tensor1d(perm, 'int32');
              return [tf.gather(m.op(x, v.options, impl), idx), m.op(tf.gather(x, idx), v.options, impl)];
            });
            expect(maxAbsDiff(await values(a!), await values(b!))).toBe(0);
            tf.dispose([a, b]);
          }));
        });
      }
    }

    for (const impl of implementations) {
      const v = m.variants.find((x) => x.causal)!;
      it(`(${impl}) layer step decode reproduces the parallel forward`, async () => {
        await fc.assert(fc.asyncProperty(shapes.filter((c) => c.T <= 40), async (c) => {
          const shape = shapeOf(c);
          const xs = seededUniform(c.seed, c.B * c.T * c.D);
          const layer = m.layer({ ...v.options, implementation: impl });
          const x = tf.tensor3d(xs, shape);
          const parallel = layer.apply(x) as tf.Tensor3D;
          const stepped = decodeSteps(layer, x);
          // the two paths sum the running mean in different orders ((T + 4)·ε·max|x|), and the
          // projection adds each such difference D times (weights' column sums bound the spread)
          const W = layer.getWeights()[0]!;
          const colSum = maxAbs(await values(tf.tidy(() => tf.abs(W).sum(0))));
          const bound = ((c.T + 4) * EPS32 * maxAbs(xs) + (c.D + 2) * EPS32 * maxAbs(xs)) * colSum * 2;
          expect(maxAbsDiff(await values(stepped), await values(parallel))).toBeLessThanOrEqual(bound);
          tf.dispose([x, parallel, stepped]);
          layer.dispose();
        }), { numRuns: 8 });
      });

      it(`(${impl}) ops, gradients, layer calls and decode leak no tensors`, async () => {
        const x = tf.randomNormal([2, 19, 5]) as tf.Tensor3D;
        const layer = m.layer({ ...v.options, implementation: impl });
        layer.apply(x); // build the weights outside the measured region
        await expectNoLeaks(async () => {
          for (const variant of m.variants) {
            const y = m.op(x, variant.options, impl);
            const g = tf.grad((t: tf.Tensor) => m.op(t as tf.Tensor3D, variant.options, impl))(x);
            await y.data();
            await g.data();
            tf.dispose([y, g]);
          }
          const out = layer.apply(x) as tf.Tensor;
          out.dispose();
          const x0 = tf.tidy(() => x.slice([0, 0, 0], [2, 1, 5]).reshape([2, 5]) as tf.Tensor2D);
          const s0 = layer.initState(2);
          const [y, s1] = layer.step(x0, s0);
          const [y2, s2] = layer.step(y, s1);
          tf.dispose([x0, s0, y, s1, y2, s2]);
        });
        layer.dispose();
        x.dispose();
      });
    }
  });
}
