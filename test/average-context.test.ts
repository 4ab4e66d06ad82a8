import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { AverageContext, layers, ops, type Combine } from '../src/index.js';
import {
  averageContextGradOracle, averageContextOracle, causalMeanGradOracle, causalMeanOracle,
} from './oracle/average-context.js';
import { mixerProperties, shapes, type MixerUnderTest } from './mixer-properties.js';
import { itRoundTrips, itTrains } from './layer-properties.js';
import {
  EPS32, REFERENCE_BACKENDS, describeOn, expectNoLeaks, expectWithinDerivedTolerance, seededIntegers, seededUniform, stepLaunches, values,
} from './helpers.js';
import { averageContextAdvance } from '../src/mixers/average-context/op.js';
import { LOOKBACK_FLAG, RUN_FLAG, SCAN_FLAG, chunksPerRun, lookbackTile, scanLevels, type Scan } from '../src/mixers/average-context/kernel.js';

const combines: Combine[] = ['max', 'min', 'mean'];

const mixer: MixerUnderTest<{ previous: tf.Tensor2D; sum: tf.Tensor2D; positions: tf.Tensor1D }> = {
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

for (const backend of REFERENCE_BACKENDS) mixerProperties(mixer, backend);
mixerProperties(mixer, 'webgpu');

/**
 * How the kernels run in a test: a scan, for the levels scan its chunks per invocation
 * (kernel.ts chunksPerRun: 'auto' gives these tests' short sequences one), and for the one-pass
 * forward what its tiles publish (LOOKBACK_FLAG).
 */
type ScanRun = { scan: Scan; run: 'auto' | 4; lookback?: 'aggregates' | 'recompute' };

/** Runs `f` with AverageContext's kernels set to `how`, whatever the adapter and the shape would choose. */
function withScan<R>(how: ScanRun, f: () => R): R {
  tf.env().set(SCAN_FLAG, how.scan);
  tf.env().set(RUN_FLAG, how.run);
  tf.env().set(LOOKBACK_FLAG, how.lookback ?? 'wait');
  try {
    return f();
  } finally {
    tf.env().set(SCAN_FLAG, 'auto');
    tf.env().set(RUN_FLAG, 'auto');
    tf.env().set(LOOKBACK_FLAG, 'wait');
  }
}

const LOOKBACK_LABELS = { aggregates: ', tiles publishing their aggregates alone', recompute: ', tiles publishing nothing' };

type Op = (x: tf.Tensor3D, implementation: 'webgpu' | 'reference') => tf.Tensor3D;

/**
 * The kernel of `op`, run with `scan`, against the float64 oracle's output and gradient of
 * sum(op(x)·dy), within the derived tolerance of the reference's own error.
 */
async function expectScanMatches(op: Op, scan: ScanRun, xs: Float32Array, dys: Float32Array, shape: [number, number, number],
  yOracle: Float64Array, dxOracle: Float64Array): Promise<void> {
  const run = (implementation: 'webgpu' | 'reference') => tf.tidy(() => {
    const g = (t: tf.Tensor) => op(t as tf.Tensor3D, implementation);
    const x = tf.tensor3d(xs, shape);
    return [g(x), tf.grad(g)(x, tf.tensor3d(dys, shape))];
  });
  const [yk, dxk] = withScan(scan, () => run('webgpu'));
  const [yr, dxr] = run('reference');
  expectWithinDerivedTolerance(await values(yk!), await values(yr!), yOracle, 'forward');
  expectWithinDerivedTolerance(await values(dxk!), await values(dxr!), dxOracle, 'gradient');
  tf.dispose([yk, dxk, yr, dxr]);
}

/** {@link expectScanMatches} for `averageContext` with `combine` and `causal`. */
function expectAverageContextMatches(combine: Combine, causal: boolean, scan: ScanRun, xs: Float32Array, dys: Float32Array,
  shape: [number, number, number]): Promise<void> {
  return expectScanMatches((x, implementation) => ops.averageContext(x, { combine, causal, implementation }), scan, xs, dys,
    shape, averageContextOracle(xs, shape, combine, causal), averageContextGradOracle(xs, dys, shape, combine, causal));
}

// The adapter picks one of the scans (kernel.ts scanFor): the levels on a GPU, the walk on
// SwiftShader. The mixer's properties above run the one it picks; these run all, whatever the
// adapter, on random shapes and on a sequence long enough for three levels; the levels scan with
// one chunk an invocation and with runs of four (a long sequence's on a GPU), whose last run of a
// sequence may hold fewer chunks, and its last chunk fewer steps. The one-pass scan ('lookback',
// forward and backward) runs as it would, taking whichever sums its predecessors have published
// when it looks (here, a tile usually finds the one before it done); and, so that each path runs
// whatever the timing, with tiles that publish their aggregates alone (every tile adds all
// before it) and that publish nothing (every tile sums all before it from its input: the fallback).
const SCANS: ScanRun[] = [
  { scan: 'levels', run: 'auto' }, { scan: 'levels', run: 4 }, { scan: 'walk', run: 'auto' },
  { scan: 'lookback', run: 'auto' }, { scan: 'lookback', run: 'auto', lookback: 'aggregates' }, { scan: 'lookback', run: 'auto', lookback: 'recompute' },
];
for (const scan of SCANS) {
  const label = `${scan.scan} scan${scan.run === 4 ? ', four chunks an invocation' : ''}${scan.lookback ? LOOKBACK_LABELS[scan.lookback] : ''}`;
  describeOn('webgpu', `averageContext kernels, ${label}`, () => {
    it('causalMean: kernel matches the oracle at least as well as the reference, forward and gradient', async () => {
      await fc.assert(fc.asyncProperty(shapes, async (c) => {
        const shape: [number, number, number] = [c.B, c.T, c.D];
        const n = c.B * c.T * c.D;
        const xs = seededUniform(c.seed, n);
        const dys = seededUniform(c.seed + 1, n);
        await expectScanMatches((x, implementation) => ops.causalMean(x, { implementation }), scan, xs, dys, shape,
          causalMeanOracle(xs, shape), causalMeanGradOracle(dys, shape));
      }));
    });

    // the one-pass scan is causal: the whole-sequence context runs the levels, tested above
    const runs = (causal: boolean) => causal || scan.scan !== 'lookback';
    for (const v of mixer.variants) {
      const { combine, causal } = { causal: true, ...v.options } as { combine: Combine; causal: boolean };
      if (!runs(causal)) continue;
      it(`${v.label}: kernel matches the oracle at least as well as the reference, forward and gradient`, async () => {
        await fc.assert(fc.asyncProperty(shapes, async (c) => {
          const shape: [number, number, number] = [c.B, c.T, c.D];
          const n = c.B * c.T * c.D;
          // integers make the min/max selections exact, so gradients are comparable across precisions
          const xs = v.selects ? seededIntegers(c.seed, n) : seededUniform(c.seed, n);
          const dys = seededUniform(c.seed + 1, n);
          await expectAverageContextMatches(combine, causal, scan, xs, dys, shape);
        }));
      });
    }

    // T = 16420 makes three levels of chunk sums (kernel.ts scanLevels: 1027, 65 and 5 entries),
    // none of them whole multiples of a chunk, so the levels scan's offsets and later gradients
    // cross boundaries at every level, and the walk runs one invocation 16420 steps; for both
    // lane widths (D = 8: vec4; D = 3: scalar) and the whole-sequence context.
    const T = 16420;
    it('has three levels of chunk sums at T = 16420', () => expect(scanLevels(T)).toHaveLength(3));
    it('cuts the levels scan\'s chunks into runs only where at least 32768 invocations stay', () => {
      // 1027 chunks of one row of 8 vec4 groups: too few to cut; 16384 of 64 groups, runs of 16
      expect([chunksPerRun(1, T, 2), chunksPerRun(1, 262144, 64), chunksPerRun(1, 65536, 64), chunksPerRun(4, 65536, 64)]).toEqual([1, 16, 8, 16]);
    });
    const cases = [['max', true], ['mean', true], ['min', false]] as const;
    for (const [D, [combine, causal]] of [8, 3].flatMap((D) => cases.map((c) => [D, c] as const)).filter(([, [, causal]]) => runs(causal))) {
      it(`T = ${T}, D = ${D}, combine ${combine}, causal ${causal}: kernel matches the oracle, forward and gradient`, async () => {
        const shape: [number, number, number] = [1, T, D];
        const n = T * D;
        const xs = combine === 'mean' ? seededUniform(11, n) : seededIntegers(11, n);
        const dys = seededUniform(12, n);
        await expectAverageContextMatches(combine, causal, scan, xs, dys, shape);
      });
    }

    // 66 scalar channels are more than a tile of the one-pass scan holds (kernel.ts lookbackTile:
    // 64 groups), so its second block has 2 groups live and 62 that write nothing; its 33 tiles of
    // 64 steps take the last up to three rounds of the look-back (16 predecessors a round)
    it('B = 2, T = 2100, D = 66, combine max: kernel matches the oracle, forward and gradient', async () => {
      const shape: [number, number, number] = [2, 2100, 66];
      const n = 2 * 2100 * 66;
      await expectAverageContextMatches('max', true, scan, seededIntegers(13, n), seededUniform(14, n), shape);
    });
  });
}

it('tiles the one-pass scan with the fewest channel groups, 16 to 64, that hold the width', () => {
  expect([1, 2, 16, 17, 33, 64, 66].map((w) => lookbackTile(w))).toEqual([
    { cols: 16, parts: 16 }, { cols: 16, parts: 16 }, { cols: 16, parts: 16 }, { cols: 32, parts: 8 },
    { cols: 64, parts: 4 }, { cols: 64, parts: 4 }, { cols: 64, parts: 4 },
  ]);
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'AverageContext layer', () => {
    itRoundTrips(() => layers.averageContext({ combine: 'min' }), { combine: 'min', causal: true, projection: true });
    itRoundTrips(() => layers.averageContext({ combine: 'mean', causal: false }), { combine: 'mean', causal: false });
    if (backend === 'webgpu') itTrains(() => layers.averageContext());
  });
}

// The decode step at each row's own position (a negative one counting as 0): sum' = sum + x,
// y = C(x, previous, sum' / (position + 1)) with previous := x at position 0, and the layer's next
// position max(position, 0) + 1 from the same launch. D = 8 (vec4 lanes) and 3.
for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'averageContextStep at each row\'s position', () => {
    const positions = [3, 0, -2, 1];
    for (const D of [8, 3]) {
      it(`D = ${D}: every combine against float64, and the next positions`, async () => {
        const [xs, ps, ss] = [1.7, 0.9, 2.3].map((f) => Array.from({ length: 4 * D }, (_, e) => Math.fround(Math.sin(e * f + f) * 3)));
        for (const combine of combines) {
          const want = xs.map((x, e) => {
            const position = Math.max(positions[Math.floor(e / D)]!, 0);
            const p = position > 0 ? ps[e]! : x;
            const mean = (ss[e]! + x) / (position + 1);
            return combine === 'max' ? Math.max(x, p, mean) : combine === 'min' ? Math.min(x, p, mean) : (x + p + mean) / 3;
          });
          const got = await expectNoLeaks(async () => {
            const outs = tf.tidy(() => {
              const [x, previous, sum] = [xs, ps, ss].map((v) => tf.tensor2d(v, [4, D]) as tf.Tensor2D);
              const position = tf.tensor1d(positions, 'int32');
              return [...averageContextAdvance('averageContextStep', x!, previous!, sum!, position, { combine }),
                ...ops.averageContextStep(x!, previous!, sum!, position, { combine })];
            });
            const data = await Promise.all(outs.map((t) => t.data()));
            tf.dispose(outs);
            return data;
          });
          // inputs within ±3: at most five roundings (sum', its division, mean's two sums and
          // division) of values below 6 in magnitude, within 8·ε
          Array.from(got[0]!).forEach((g, e) => expect(Math.abs(g - want[e]!), `${combine} element ${e}`).toBeLessThanOrEqual(8 * EPS32 * Math.max(1, Math.abs(want[e]!))));
          expect(Array.from(got[1]!)).toEqual(xs.map((x, e) => Math.fround(ss[e]! + x)));
          expect(Array.from(got[2]!)).toEqual([4, 1, 1, 2]);
          // the op's outputs are the layer's, less the positions
          expect([Array.from(got[3]!), Array.from(got[4]!)]).toEqual([Array.from(got[0]!), Array.from(got[1]!)]);
        }
      });
    }

    if (backend === 'webgpu') {
      it('a layer decodes a token in two launches: the step, which advances the positions, and the projection', async () => {
        const layer = layers.averageContext();
        expect(await stepLaunches(layer, 2, 8)).toEqual({ ran: ['AverageContextStepVec4', 'DenseVec4'], positions: [1, 1], uploads: 0 });
        layer.dispose();
      });
    }
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
      .toThrow(/averageContext: argument 'x' must be a float32 tensor of rank 3 \[B, T, D\]; received a float32 tensor of shape \[1, 2, 3, 4\]/);
    expect(() => ops.causalMean(tf.zeros([1, 4, 3], 'bool') as tf.Tensor3D)).toThrow(/causalMean: argument 'x' .* received a bool tensor of shape \[1, 4, 3\]/);
    expect(() => ops.averageContext(x, { combine: 'sum' as Combine }))
      .toThrow(/option 'combine' must be one of 'max', 'min', 'mean'; received 'sum'/);
    expect(() => ops.averageContext(x, { causal: 'yes' as unknown as boolean })).toThrow(/option 'causal' must be a boolean; received 'yes'/);
    expect(() => ops.averageContext(tf.zeros([1, 3, 0]) as tf.Tensor3D)).toThrow(/argument 'x' \[B, T, D\] must have D ≥ 1/);
    expect(() => ops.averageContextStep(x.reshape([4, 3]) as tf.Tensor2D, tf.zeros([4, 3]) as tf.Tensor2D, tf.zeros([4, 3]) as tf.Tensor2D, -1))
      .toThrow(/argument 'position' must be a non-negative integer; received -1/);
  });

  it('a non-causal layer refuses to decode', () => {
    const layer = new AverageContext({ causal: false });
    layer.apply(tf.zeros([1, 2, 3]));
    expect(() => layer.initState(1)).toThrow(/causal: false .* cannot decode token by token/);
  });
});
