import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { CausalGeneration, layers, ops, type Implementation, type Reduce } from '../src/index.js';
import { causalGenerationGradOracle, causalGenerationOracle } from './oracle/causal-generation.js';
import { mixerProperties, type MixerUnderTest } from './mixer-properties.js';
import { itRoundTrips, itTrains } from './layer-properties.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, expectNoLeaks, stepLaunches } from './helpers.js';
import { causalGenerationAdvance } from '../src/mixers/causal-generation/op.js';

const reduces: Reduce[] = ['min', 'max', 'mean'];

const mixer: MixerUnderTest<{ previous: tf.Tensor2D; positions: tf.Tensor1D }> = {
  name: 'causalGeneration',
  variants: reduces.map((reduce) => ({ label: `reduce ${reduce}`, options: { reduce }, causal: true, selects: reduce !== 'mean' })),
  op: (x, options, implementation) => ops.causalGeneration(x, { ...options, implementation }),
  oracle: (x, shape, o) => causalGenerationOracle(x, shape, o.reduce as Reduce),
  gradOracle: (x, dy, shape, o) => causalGenerationGradOracle(x, dy, shape, o.reduce as Reduce),
  // min/max are exact; mean rounds once
  referenceErrorScale: () => 1,
  layer: (args) => layers.causalGeneration(args as ConstructorParameters<typeof CausalGeneration>[0]),
};

for (const backend of REFERENCE_BACKENDS) mixerProperties(mixer, backend);
mixerProperties(mixer, 'webgpu');

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'CausalGeneration layer', () => {
    itRoundTrips(() => layers.causalGeneration({ reduce: 'max' }), { reduce: 'max', projection: true, implementation: 'auto' });
    itRoundTrips(() => layers.causalGeneration({ reduce: 'mean', projection: false }), { reduce: 'mean', projection: false });
    if (backend === 'webgpu') itTrains(() => layers.causalGeneration());

    it('has the documented weights and output shape', () => {
      const layer = new CausalGeneration();
      const y = layer.apply(tf.zeros([2, 5, 6])) as tf.Tensor;
      expect(y.shape).toEqual([2, 5, 6]);
      expect(layer.getWeights().map((w) => w.shape)).toEqual([[6, 6], [6]]);
      expect(layer.computeOutputShape([null, 5, 6])).toEqual([null, 5, 6]);
      expect(new CausalGeneration({ projection: false }).apply(tf.zeros([1, 2, 3])) instanceof tf.Tensor).toBe(true);
      tf.dispose(y);
    });
  });
}

// The decode step at each row's own position: a row at position 0 (or a negative one, which
// counts as 0) passes its token through, every other compares it with previous; the layer's
// state advances to max(position, 0) + 1 from the same launch. D = 8 (vec4 lanes) and 3.
for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'causalGenerationStep at each row\'s position', () => {
    const positions = [3, 0, -2, 1];
    for (const D of [8, 3]) {
      it(`D = ${D}: min, max and mean of x and previous, x itself at position ≤ 0`, async () => {
        const xs = Array.from({ length: 4 * D }, (_, e) => Math.fround(Math.sin(e * 1.7) * 3));
        const ps = Array.from({ length: 4 * D }, (_, e) => Math.fround(Math.cos(e * 0.9) * 3));
        for (const reduce of reduces) {
          const R = (a: number, b: number) => (reduce === 'min' ? Math.min(a, b) : reduce === 'max' ? Math.max(a, b) : (a + b) / 2);
          const want = xs.map((x, e) => (positions[Math.floor(e / D)]! > 0 ? R(x, ps[e]!) : x));
          const got = await expectNoLeaks(async () => {
            const outs = tf.tidy(() => {
              const x = tf.tensor2d(xs, [4, D]);
              const previous = tf.tensor2d(ps, [4, D]);
              const position = tf.tensor1d(positions, 'int32');
              // without a position the op compares every row with previous
              const plain = ops.causalGenerationStep(x, previous, { reduce });
              return [...causalGenerationAdvance('causalGenerationStep', x, previous, { position, reduce }), plain,
                ops.causalGenerationStep(x, previous, { reduce, position: 1 })];
            });
            const data = await Promise.all(outs.map((t) => t.data()));
            tf.dispose(outs);
            return data;
          });
          expect(Array.from(got[2]!)).toEqual(Array.from(got[3]!));
          // min and max pick an input (of float32 values here); mean rounds once, where float64 does not
          const tol = reduce === 'mean' ? 4 * EPS32 : 0;
          Array.from(got[0]).forEach((g, e) => expect(Math.abs(g - want[e]!), `${reduce} element ${e}`).toBeLessThanOrEqual(tol * Math.abs(want[e]!)));
          expect(Array.from(got[1])).toEqual([4, 1, 1, 2]);
        }
      });
    }

    it('refuses a position that is not a non-negative integer or an int32 [B] tensor', () => {
      const x = tf.zeros([2, 3]) as tf.Tensor2D;
      expect(() => ops.causalGenerationStep(x, x, { position: -1 }))
        .toThrow("causalGenerationStep: option 'position' must be a non-negative integer; received -1 (a number).");
      expect(() => ops.causalGenerationStep(x, x, { position: tf.zeros([3], 'int32') as tf.Tensor1D }))
        .toThrow(/^causalGenerationStep: option 'position' must be a non-negative integer or an int32 tensor of shape \[2\]; received an int32 tensor of shape \[3\]\.$/);
      tf.dispose(x);
    });

    if (backend === 'webgpu') {
      it('a layer decodes a token in two launches: the step, which advances the positions, and the projection', async () => {
        const layer = layers.causalGeneration();
        expect(await stepLaunches(layer, 2, 8)).toEqual({ ran: ['CausalGenerationStepVec4', 'DenseVec4'], positions: [1, 1], uploads: 0 });
        layer.dispose();
      });
    }
  });
}

describe('causalGeneration input checks', () => {
  let x: tf.Tensor3D;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    x = tf.zeros([1, 4, 3]);
  });

  it('names the argument, the expectation and what it received', () => {
    expect(() => ops.causalGeneration(tf.zeros([4, 3]) as unknown as tf.Tensor3D))
      .toThrow(/causalGeneration: argument 'x' must be a float32 tensor of rank 3 \[B, T, D\]; received a float32 tensor of shape \[4, 3\]\./);
    expect(() => ops.causalGeneration(tf.zeros([1, 4, 3], 'int32') as tf.Tensor3D))
      .toThrow(/argument 'x' must be a float32 tensor .* received an int32 tensor of shape \[1, 4, 3\]/);
    expect(() => ops.causalGeneration([[[1]]] as unknown as tf.Tensor3D)).toThrow(/argument 'x' must be a float32 tensor/);
    expect(() => ops.causalGeneration(x, { reduce: 'median' as Reduce }))
      .toThrow(/option 'reduce' must be one of 'min', 'max', 'mean'; received 'median'/);
    expect(() => ops.causalGeneration(x, { implementation: 'wasm' as Implementation }))
      .toThrow(/option 'implementation' must be one of 'auto', 'webgpu', 'reference'; received 'wasm'/);
    expect(() => new CausalGeneration({ reduce: 'sum' as Reduce })).toThrow(/option 'reduce' must be one of/);
    expect(() => new CausalGeneration().apply(tf.zeros([2, 3]))).toThrow(/expects input of shape \[B, T, D\].*Received: \[2, 3\]/);
    expect(() => ops.causalGenerationStep(tf.zeros([2, 3]) as tf.Tensor2D, tf.zeros([2, 4]) as tf.Tensor2D))
      .toThrow(/argument 'previous' must have shape \[B, D\] = \[2, 3\]; received \[2, 4\]/);
  });

  it('refuses implementation webgpu on the cpu backend, saying what to do', () => {
    expect(() => ops.causalGeneration(x, { implementation: 'webgpu' }))
      .toThrow(/implementation 'webgpu' needs the 'webgpu' backend; the active backend is 'cpu'/);
  });

  it('decoding needs a built layer', () => {
    expect(() => new CausalGeneration().initState(1)).toThrow(/not built yet/);
  });
});
