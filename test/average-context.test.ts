import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { AverageContext, layers, ops, type Combine } from '../src/index.js';
import {
  averageContextGradOracle, averageContextOracle, causalMeanGradOracle, causalMeanOracle,
} from './oracle/average-context.js';
import { mixerProperties, shapes, type MixerUnderTest } from './mixer-properties.js';
import { itRoundTrips, itTrains } from './layer-properties.js';
import { describeOn, expectWithinDerivedTolerance, seededIntegers, seededUniform, values } from './helpers.js';
import { SCAN_TUNING_FLAG, scanLevels } from '../src/mixers/average-context/kernel.js';

const combines: Combine[] = ['max', 'min', 'mean'];

const mixer: MixerUnderTest<{ previous: tf.Tensor2D; sum: tf.Tensor2D; position: number }> = {
  name: 'averageContext',
  variants: [
    ...combines.map((combine) => ({ label: `combine ${combine}`, options: { combine }, causal: true, selects: combine !== 'mean' })),
    { label: 'combine max, causal false', options: { combine: 'max', causal: false }, causal: false, selects: true },
  ],
  op: (x, options, implementation) => ops.averageContext(x, { ...options, implementation }),
  oracle: (x, shape, o) => averageContextOracle(x, shape, o.combine as Combine, (o.causal ?? true) as boolean),
  gradOracle: (x, dy, shape, o) => averageContextGradOracle(x, dy, shape, o.combine as Combine, (o.causal ?? true) as boolean),
  // a running sum over T, then a division: recursive summation error, a few times over
  referenceErrorScale: () => 4,
  layer: (args) => layers.averageContext(args as ConstructorParameters<typeof AverageContext>[0]),
};

mixerProperties(mixer, 'cpu');
mixerProperties(mixer, 'webgpu');

describeOn('webgpu', 'causalMean', () => {
  it('kernel matches the oracle at least as well as the reference, forward and gradient', async () => {
    await fc.assert(fc.asyncProperty(shapes, async (c) => {
      const shape: [number, number, number] = [c.B, c.T, c.D];
      const n = c.B * c.T * c.D;
      const xs = seededUniform(c.seed, n);
      const dys = seededUniform(c.seed + 1, n);
      const run = (implementation: 'webgpu' | 'reference') => tf.tidy(() => {
        const f = (t: tf.Tensor) => ops.causalMean(t as tf.Tensor3D, { implementation });
        const x = tf.tensor3d(xs, shape);
        return [f(x), tf.grad(f)(x, tf.tensor3d(dys, shape))];
      });
      const [yk, dxk] = run('webgpu');
      const [yr, dxr] = run('reference');
      expectWithinDerivedTolerance(await values(yk!), await values(yr!), causalMeanOracle(xs, shape), 'forward');
      expectWithinDerivedTolerance(await values(dxk!), await values(dxr!), causalMeanGradOracle(dys, shape), 'gradient');
      tf.dispose([yk, dxk, yr, dxr]);
    }));
  });
});

describeOn('webgpu', 'averageContext kernels on a long sequence', () => {
  // T = 16420 makes three levels of chunk sums (kernel.ts scanLevels: 1027, 65 and 5 entries),
  // none of them whole multiples of a chunk (nor of a span of 16 chunks), so offsets and later
  // gradients cross boundaries at every level, for both lane widths (D = 8: vec4; D = 3:
  // scalar) and the whole-sequence context.
  const T = 16420;
  it('has three levels of chunk sums at this T', () => expect(scanLevels(T)).toHaveLength(3));
  // both tunings (kernel.ts tuningFor), whatever the adapter: a GPU's two levels a dispatch and
  // one chunk an invocation, and SwiftShader's one level a dispatch and spans of chunks
  const cases = [['max', true], ['mean', true], ['min', false]] as const;
  for (const tuning of ['gpu', 'cpu'] as const) {
    for (const [D, [combine, causal]] of [8, 3].flatMap((D) => cases.map((c) => [D, c] as const))) {
      it(`${tuning} tuning, D = ${D}, combine ${combine}, causal ${causal}: kernel matches the oracle, forward and gradient`, async () => {
        const shape: [number, number, number] = [1, T, D];
        const n = T * D;
        // integers make the min/max selections exact, so gradients are comparable across precisions
        const xs = combine === 'mean' ? seededUniform(11, n) : seededIntegers(11, n);
        const dys = seededUniform(12, n);
        const run = (implementation: 'webgpu' | 'reference') => tf.tidy(() => {
          const f = (t: tf.Tensor) => ops.averageContext(t as tf.Tensor3D, { combine, causal, implementation });
          const x = tf.tensor3d(xs, shape);
          return [f(x), tf.grad(f)(x, tf.tensor3d(dys, shape))];
        });
        tf.env().set(SCAN_TUNING_FLAG, tuning);
        let kernel: tf.Tensor[];
        try {
          kernel = run('webgpu');
        } finally {
          tf.env().set(SCAN_TUNING_FLAG, 'auto');
        }
        const [yk, dxk] = kernel;
        const [yr, dxr] = run('reference');
        expectWithinDerivedTolerance(await values(yk!), await values(yr!), averageContextOracle(xs, shape, combine, causal), 'forward');
        expectWithinDerivedTolerance(await values(dxk!), await values(dxr!),
          averageContextGradOracle(xs, dys, shape, combine, causal), 'gradient');
        tf.dispose([yk, dxk, yr, dxr]);
      });
    }
  }
});

for (const backend of ['cpu', 'webgpu'] as const) {
  describeOn(backend, 'AverageContext layer', () => {
    itRoundTrips(() => layers.averageContext({ combine: 'min' }), { combine: 'min', causal: true, projection: true });
    itRoundTrips(() => layers.averageContext({ combine: 'mean', causal: false }), { combine: 'mean', causal: false });
    if (backend === 'webgpu') itTrains(() => layers.averageContext());
  });
}

describe('averageContext input checks', () => {
  let x: tf.Tensor3D;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    x = tf.zeros([1, 4, 3]);
  });

  it('names the argument, the expectation and what it received', () => {
    expect(() => ops.averageContext(tf.zeros([1, 2, 3, 4]) as unknown as tf.Tensor3D))
      .toThrow(/averageContext: argument 'x' must be a float32 tensor of rank 3 \[B, T, D\]; received rank 4/);
    expect(() => ops.causalMean(tf.zeros([1, 4, 3], 'bool') as tf.Tensor3D)).toThrow(/causalMean: argument 'x' .* received dtype bool/);
    expect(() => ops.averageContext(x, { combine: 'sum' as Combine }))
      .toThrow(/option 'combine' must be one of 'max', 'min', 'mean'; received 'sum'/);
    expect(() => ops.averageContext(x, { causal: 'yes' as unknown as boolean })).toThrow(/option 'causal' must be a boolean; received 'yes'/);
    expect(() => ops.averageContext(tf.zeros([1, 0, 3]) as tf.Tensor3D)).toThrow(/argument 'x' must not be empty/);
    expect(() => ops.averageContextStep(x.reshape([4, 3]) as tf.Tensor2D, tf.zeros([4, 3]) as tf.Tensor2D, tf.zeros([4, 3]) as tf.Tensor2D, -1))
      .toThrow(/argument 'position' must be a non-negative integer; received -1/);
  });

  it('a non-causal layer refuses to decode', () => {
    const layer = new AverageContext({ causal: false });
    layer.apply(tf.zeros([1, 2, 3]));
    expect(() => layer.initState(1)).toThrow(/causal: false .* cannot decode token by token/);
  });
});
