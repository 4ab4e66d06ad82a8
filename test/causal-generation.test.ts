import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { CausalGeneration, layers, ops, type Implementation, type Reduce } from '../src/index.js';
import { causalGenerationGradOracle, causalGenerationOracle } from './oracle/causal-generation.js';
import { mixerProperties, type MixerUnderTest } from './mixer-properties.js';
import { itRoundTrips, itTrains } from './layer-properties.js';
import { REFERENCE_BACKENDS, describeOn } from './helpers.js';

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
