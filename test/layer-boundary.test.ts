// The six layers' boundary: input width and dtype, argument names, 'webgpu' off WebGPU,
// package-qualified class names, empty inputs and the decode arguments.
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SelectiveSSM, layers } from '../src/index.js';
import { mixerClassName } from '../src/layers/mixer-layer.js';
import { describeOn, expectNoLeaks, maxAbsDiff, values } from './helpers.js';

type Decoding = tf.layers.Layer & {
  initState(batch: number): tf.TensorContainer;
  step(x: tf.Tensor2D, state: never): [tf.Tensor2D, tf.TensorContainer];
};

/** Each layer by its plain name, made from extra arguments; D = 16 suits every one (2 heads of 8). */
const LAYERS: Array<[string, (extra?: Record<string, unknown>) => Decoding]> = [
  ['CausalGeneration', (a) => layers.causalGeneration(a) as Decoding],
  ['AverageContext', (a) => layers.averageContext(a) as Decoding],
  ['ExpressiveAttention', (a) => layers.expressiveAttention({ numHeads: 2, ...a }) as unknown as Decoding],
  ['BlockSparse', (a) => layers.blockSparse({ numHeads: 2, layout: { blockSize: 2, localBlocks: 1, globalBlocks: 1 }, ...a }) as unknown as Decoding],
  ['SelectiveSSM', (a) => layers.selectiveSSM({ stateSize: 2, ...a }) as unknown as Decoding],
  ['FlashStyleTiledAttention', (a) => layers.flashStyleTiledAttention({ numHeads: 2, ...a }) as unknown as Decoding],
];

/** The layer built for D = 16. */
function built(make: () => Decoding): Decoding {
  const layer = make();
  tf.tidy(() => layer.apply(tf.zeros([1, 4, 16])) as tf.Tensor);
  return layer;
}

/** ids → embedding [B, 5, 16] → the layer → dense, the layer given `extra`. */
function model(make: (extra?: Record<string, unknown>) => Decoding, extra?: Record<string, unknown>): tf.Sequential {
  return tf.sequential({ layers: [tf.layers.embedding({ inputDim: 11, outputDim: 16, inputLength: 5 }), make(extra), tf.layers.dense({ units: 11 })] });
}

async function save(m: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await m.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  return artifacts!;
}

/** The class names of a saved Sequential's layers. */
function savedClassNames(artifacts: tf.io.ModelArtifacts): string[] {
  const topology = artifacts.modelTopology as { config: { layers: Array<{ class_name: string }> } };
  return topology.config.layers.map((l) => l.class_name);
}

/** Artifacts as models saved before the qualified names: every `tfjs-mixers>X` written as `X`. */
function asSavedBefore(artifacts: tf.io.ModelArtifacts): tf.io.ModelArtifacts {
  return { ...artifacts, modelTopology: JSON.parse(JSON.stringify(artifacts.modelTopology).replaceAll('"tfjs-mixers>', '"')) };
}

const ids = () => tf.tensor2d([[1, 4, 2, 9, 0], [5, 5, 1, 2, 8]]);

async function samePredictions(a: tf.LayersModel, b: tf.LayersModel): Promise<void> {
  const x = ids();
  const [ya, yb] = [a.predict(x) as tf.Tensor, b.predict(x) as tf.Tensor];
  expect(maxAbsDiff(await values(ya), await values(yb))).toBe(0);
  tf.dispose([x, ya, yb]);
}

describe('layer boundary (cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  describe.each(LAYERS)('%s', (name, make) => {
    it('refuses input of another width than it was built for, concrete or symbolic, naming both', () => {
      const layer = built(() => make());
      const x = tf.zeros([1, 4, 8]);
      expect(() => layer.apply(x)).toThrow(new RegExp(`^${name}: argument 'inputs' must have shape \\[B, T, D\\] = \\[1, 4, 16\\]; received \\[1, 4, 8\\]`));
      expect(() => layer.apply(tf.input({ shape: [null, 8] })))
        .toThrow(new RegExp(`^${name}: argument 'inputs' must have shape \\[B, T, D\\] = \\[null, null, 16\\]; received \\[null, null, 8\\]`));
      tf.dispose(x);
      layer.dispose();
    });

    it('refuses int32 input, naming the layer', () => {
      const layer = built(() => make());
      const x = tf.zeros([1, 4, 16], 'int32');
      expect(() => layer.apply(x)).toThrow(new RegExp(`^${name}: argument 'inputs' must be a float32 tensor of rank 3 \\[B, T, D\\]; received an int32 tensor`));
      tf.dispose(x);
      layer.dispose();
    });

    it('refuses an unknown argument, listing the valid ones, and takes the base layer arguments', () => {
      expect(() => make({ dropoutRate: 0.1 })).toThrow(new RegExp(`^${name}: unknown option 'dropoutRate'; the options are 'name', .*'implementation'`));
      const layer = make({ name: 'mixer', trainable: false, inputShape: [4, 16], batchSize: 2, dtype: 'float32', inputDType: 'float32' });
      expect([layer.name, layer.trainable, layer.batchInputShape]).toEqual(['mixer', false, [2, 4, 16]]);
    });

    it(`saves under '${mixerClassName(name)}' and reloads, as it also reloads a model saved under '${name}'`, async () => {
      const m = model(make);
      const artifacts = await save(m);
      expect(savedClassNames(artifacts)[1]).toBe(`tfjs-mixers>${name}`);
      for (const a of [artifacts, asSavedBefore(artifacts)]) {
        const loaded = await tf.loadLayersModel(tf.io.fromMemory(a));
        expect(loaded.layers[1]!.getClassName()).toBe(`tfjs-mixers>${name}`);
        await samePredictions(m, loaded);
        loaded.dispose();
      }
      expect(savedClassNames(asSavedBefore(artifacts))[1]).toBe(name);
      m.dispose();
    });

    it(`with implementation 'webgpu', runs the reference on cpu, warning once, also after a reload`, async () => {
      const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
      const onWebGPU = model(make, { implementation: 'webgpu' });
      const reference = model(make, { implementation: 'reference' });
      reference.setWeights(onWebGPU.getWeights());
      await samePredictions(onWebGPU, reference);
      await samePredictions(onWebGPU, reference);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0]![0])).toMatch(new RegExp(`^${name} '.+': implementation 'webgpu' needs the 'webgpu' backend, but the active backend is 'cpu'; .*reference`));
      const loaded = await tf.loadLayersModel(tf.io.fromMemory(await save(onWebGPU)));
      expect(loaded.layers[1]!.getConfig().implementation).toBe('webgpu');
      await samePredictions(loaded, reference);
      expect(warn).toHaveBeenCalledTimes(2);
      [onWebGPU, reference, loaded].forEach((m) => m.dispose());
    });

    it('returns an empty output for an empty batch or sequence, built or not, without leaks', async () => {
      const layer = make();
      const apply = (shape: number[]) => {
        const x = tf.zeros(shape);
        const y = layer.apply(x) as tf.Tensor;
        expect(y.shape).toEqual(shape);
        tf.dispose([x, y]);
      };
      // the first builds the layer (its weights are new tensors), the others leave nothing behind
      apply([2, 0, 16]);
      await expectNoLeaks(() => [[2, 0, 16], [0, 3, 16]].forEach(apply));
      // the layer was built by an empty input: a full one of that width runs
      const x = tf.ones([1, 3, 16]);
      const y = layer.apply(x) as tf.Tensor;
      expect(y.shape).toEqual([1, 3, 16]);
      tf.dispose([x, y]);
      layer.dispose();
    });

    it('decoding: initState takes a non-negative integer batch, and step a token of the state\'s batch', () => {
      const layer = built(() => make());
      expect(() => layer.initState(-1)).toThrow(new RegExp(`^${name}.initState: argument 'batch' must be a non-negative integer; received -1`));
      expect(() => layer.initState(1.5)).toThrow(/argument 'batch' must be a non-negative integer; received 1.5/);
      const empty = layer.initState(0);
      for (const t of Object.values(empty as Record<string, unknown>)) if (t instanceof tf.Tensor) expect(t.shape[0]).toBe(0);
      const state = layer.initState(2);
      const x = tf.zeros([3, 16]) as tf.Tensor2D;
      // SelectiveSSM names both batches in the shape its state must have
      const message = name === 'SelectiveSSM'
        ? /SelectiveSSM.step: argument 'state.conv' must have shape \[B, dConv − 1, E\] = \[3, 3, 32\]; received \[2, 3, 32\]/
        : new RegExp(`^${name}.step: argument 'x' holds a batch of 3 but argument 'state' one of 2`);
      expect(() => layer.step(x, state as never)).toThrow(message);
      tf.dispose([empty, state, x]);
      layer.dispose();
    });
  });

  it('names a missing numHeads, and prints a wrong one with its type', () => {
    expect(() => layers.blockSparse(undefined as never)).toThrow(/^BlockSparse: argument 'numHeads', the number of query heads \(a positive integer\), is required; received none/);
    expect(() => layers.expressiveAttention({} as never)).toThrow(/^ExpressiveAttention: argument 'numHeads'.* is required/);
    expect(() => layers.flashStyleTiledAttention({ numHeads: '4' as never })).toThrow(/^FlashStyleTiledAttention: argument 'numHeads' must be a positive integer; received '4' \(a string\)/);
  });

  it('keeps a Mamba name out: selectiveSSM({ d_state }) throws, listing stateSize', () => {
    expect(() => layers.selectiveSSM({ d_state: 4 } as never)).toThrow(/^SelectiveSSM: unknown option 'd_state'; the options are .*'stateSize'/);
  });

  it('prints an input shape with unknown dimensions as null', () => {
    expect(() => layers.causalGeneration().apply(tf.input({ shape: [16] })))
      .toThrow(/^CausalGeneration expects input of shape \[B, T, D\] with a known D. Received: \[null, 16\]/);
  });

  it('the expressive recurrent step checks the batch of its sums', () => {
    const layer = built(() => layers.expressiveAttention({ numHeads: 2, decode: 'recurrent' }) as unknown as Decoding);
    const state = layer.initState(2);
    const x = tf.zeros([3, 16]) as tf.Tensor2D;
    expect(() => layer.step(x, state as never)).toThrow(/^ExpressiveAttention.step: argument 'x' holds a batch of 3 but argument 'state' one of 2 \(state.M of shape \[2, 2, 36, 8\]\)/);
    tf.dispose([state, x]);
    layer.dispose();
  });

  describe('a user class registered as plain SelectiveSSM', () => {
    const map = tf.serialization.SerializationMap.getMap().classNameMap;

    it('does not shadow ours: a model saved now still loads our layer', async () => {
      const ours = map['SelectiveSSM']!;
      class UserSSM extends tf.layers.Layer {
        static className = 'SelectiveSSM';
      }
      tf.serialization.registerClass(UserSSM);
      try {
        const m = model(LAYERS[4]![1]);
        const loaded = await tf.loadLayersModel(tf.io.fromMemory(await save(m)));
        expect(loaded.layers[1]).toBeInstanceOf(SelectiveSSM);
        await samePredictions(m, loaded);
        m.dispose();
        loaded.dispose();
      } finally {
        map['SelectiveSSM'] = ours;
      }
    });

    it('registered before tfjs-mixers loads, keeps the plain name; ours takes the qualified one', async () => {
      const saved = [map['SelectiveSSM']!, map['tfjs-mixers>SelectiveSSM']!] as const;
      class UserSSM extends tf.layers.Layer {
        static className = 'SelectiveSSM';
      }
      tf.serialization.registerClass(UserSSM);
      try {
        vi.resetModules();
        const fresh = await import('../src/mixers/selective-ssm/layer.js');
        expect(map['SelectiveSSM']![0]).toBe(UserSSM);
        expect(map['tfjs-mixers>SelectiveSSM']![0]).toBe(fresh.SelectiveSSM);
      } finally {
        [map['SelectiveSSM'], map['tfjs-mixers>SelectiveSSM']] = saved;
      }
    });
  });
});

describeOn('webgpu', 'layer boundary', () => {
  it.each(LAYERS)('%s with implementation webgpu: an empty batch or sequence gives an empty output, a full one runs the kernels unwarned', async (_name, make) => {
    const warn = vi.spyOn(console, 'warn');
    const layer = make({ implementation: 'webgpu' });
    for (const shape of [[2, 0, 16], [0, 3, 16], [1, 3, 16]]) {
      const x = tf.ones(shape);
      const y = layer.apply(x) as tf.Tensor;
      expect(y.shape).toEqual(shape);
      expect((await values(y)).every(Number.isFinite)).toBe(true);
      tf.dispose([x, y]);
    }
    expect(warn).not.toHaveBeenCalled();
    warn.mockRestore();
    layer.dispose();
  });
});
