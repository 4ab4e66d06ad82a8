import * as tf from '@tensorflow/tfjs';
// the port of Keras's MultiHeadAttention shipped (unexported) in tfjs-layers 4.22: an independent
// reference for Keras's semantics, imported in beforeAll (see there)
import type { MultiHeadAttention as KerasPortClass } from '@tensorflow/tfjs-layers/dist/layers/nlp/multihead_attention.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { MultiHeadAttention, layers, type MultiHeadAttentionArgs } from '../src/index.js';
import { EPS32, describeOn, expectNoLeaks, maxAbs, maxAbsDiff, seededUniform, values } from './helpers.js';

let KerasPort: typeof KerasPortClass;
type Registry = Record<string, [tf.serialization.SerializableConstructor<tf.serialization.Serializable>, unknown]>;
let portRegistry: Registry;

function install(registry: Registry): void {
  const map = tf.serialization.SerializationMap.getMap().classNameMap as Registry;
  for (const name of Object.keys(map)) delete map[name];
  Object.assign(map, registry);
}

/** Runs `fn` (which builds the port) with the port's own tfjs-layers classes registered. */
function withPortRegistry<T>(fn: () => T): T {
  const ours = { ...(tf.serialization.SerializationMap.getMap().classNameMap as Registry) };
  install(portRegistry);
  try {
    return fn();
  } finally {
    install(ours);
  }
}

/**
 * Imports the port. It comes with a second instance of tfjs-layers (its ESM files, beside the
 * bundle that @tensorflow/tfjs loads) that registers every layers class again (initialisers,
 * Dense, and the port itself under 'MultiHeadAttention') in tfjs-core's one registry. The
 * registry is put back afterwards, so that everything else in these tests sees tfjs's classes
 * and ours; the port is built with its own (withPortRegistry). It runs eagerly, on the same
 * tfjs-core engine.
 */
beforeAll(async () => {
  const ours = { ...(tf.serialization.SerializationMap.getMap().classNameMap as Registry) };
  ({ MultiHeadAttention: KerasPort } = await import('@tensorflow/tfjs-layers/dist/layers/nlp/multihead_attention.js'));
  portRegistry = { ...(tf.serialization.SerializationMap.getMap().classNameMap as Registry) };
  install(ours);
  expect(tf.serialization.SerializationMap.getMap().classNameMap.MultiHeadAttention?.[0]).toBe(MultiHeadAttention);
});

type PortLayer = KerasPortClass & {
  _queryDense: tf.layers.Layer; _keyDense: tf.layers.Layer; _valueDense: tf.layers.Layer; _outputDense: tf.layers.Layer;
};

interface Sizes { B: number; Tq: number; Tk: number; Dq: number; Dv: number; Dk?: number }

const tensor3 = (seed: number, shape: [number, number, number]) =>
  tf.tensor3d(seededUniform(seed, shape[0] * shape[1] * shape[2]), shape);

/**
 * Our layer and the port, both built for `s`, with the same random weights (biases included,
 * so that a misplaced bias shows): ours drawn, then copied into the port's four sublayers.
 */
function twins(args: MultiHeadAttentionArgs, s: Sizes, seed = 7) {
  const ours = new MultiHeadAttention(args);
  const q = tf.zeros([s.B, s.Tq, s.Dq]);
  const v = tf.zeros([s.B, s.Tk, s.Dv]);
  const k = s.Dk === undefined ? undefined : tf.zeros([s.B, s.Tk, s.Dk]);
  const port = withPortRegistry(() => {
    const layer = new KerasPort({ numHeads: args.numHeads, keyDim: args.keyDim, valueDim: args.valueDim ?? undefined,
      outputShape: typeof args.outputShape === 'number' ? [args.outputShape] : args.outputShape ?? undefined,
      useBias: args.useBias }) as PortLayer;
    tf.dispose(layer.call(q, { value: v, key: k }));
    return layer;
  });
  tf.dispose(ours.apply(q, { value: v, key: k }) as tf.Tensor);
  tf.dispose([q, v, k!]);
  const drawn = ours.getWeights().map((w, n) => tf.tensor(seededUniform(seed + n, w.size, -0.8, 0.8), w.shape));
  ours.setWeights(drawn);
  const perDense = args.useBias === false ? 1 : 2;
  [port._queryDense, port._keyDense, port._valueDense, port._outputDense].forEach((d, n) =>
    d.setWeights(drawn.slice(n * perDense, (n + 1) * perDense)));
  tf.dispose(drawn);
  return { ours, port };
}

/** A float32 bound for two evaluations of the same sums of n terms in different orders. */
function bound(expected: ArrayLike<number>, n: number): number {
  return 4 * n * EPS32 * Math.max(1, maxAbs(expected));
}

async function rows(t: tf.Tensor): Promise<number[][][]> {
  return (await t.array()) as number[][][];
}

describeOn('cpu', 'MultiHeadAttention', () => {
  it('has Keras\'s weights: names, shapes and order, as the port builds them', () => {
    const s = { B: 1, Tq: 3, Tk: 4, Dq: 5, Dv: 7, Dk: 6 };
    const { ours, port } = twins({ numHeads: 2, keyDim: 3, valueDim: 4, outputShape: 8, name: 'mha' }, s);
    expect(ours.weights.map((w) => w.originalName)).toEqual([
      'mha/query/kernel', 'mha/query/bias', 'mha/key/kernel', 'mha/key/bias',
      'mha/value/kernel', 'mha/value/bias', 'mha/attention_output/kernel', 'mha/attention_output/bias',
    ]);
    const portShapes = [port._queryDense, port._keyDense, port._valueDense, port._outputDense]
      .flatMap((d) => d.weights.map((w) => w.shape));
    expect(ours.weights.map((w) => w.shape)).toEqual(portShapes);
    expect(ours.weights.map((w) => w.shape)).toEqual([[5, 2, 3], [2, 3], [6, 2, 3], [2, 3], [7, 2, 4], [2, 4], [2, 4, 8], [8]]);
  });

  it('matches the port on self-attention, with keyDim ≠ valueDim', async () => {
    const s = { B: 2, Tq: 5, Tk: 5, Dq: 6, Dv: 6 };
    for (const [keyDim, valueDim] of [[3, 4], [5, 2], [4, 4]] as const) {
      const { ours, port } = twins({ numHeads: 2, keyDim, valueDim }, s);
      const x = tensor3(1, [2, 5, 6]);
      const a = await values(ours.apply(x, { value: x }) as tf.Tensor);
      const b = await values(port.call(x, { value: x }));
      expect(maxAbsDiff(a, b), `keyDim ${keyDim}, valueDim ${valueDim}`).toBeLessThanOrEqual(bound(b, 6 + 5 + 2 * valueDim));
    }
  });

  it('matches the port on cross-attention: Tq ≠ Tk, a separate key, every width different', async () => {
    const s = { B: 2, Tq: 3, Tk: 6, Dq: 5, Dv: 7, Dk: 4 };
    const { ours, port } = twins({ numHeads: 3, keyDim: 4, valueDim: 2, outputShape: 3 }, s);
    const [q, v, k] = [tensor3(2, [2, 3, 5]), tensor3(3, [2, 6, 7]), tensor3(4, [2, 6, 4])];
    const ya = ours.apply(q, { value: v, key: k }) as tf.Tensor;
    expect(ya.shape).toEqual([2, 3, 3]);
    expect(ours.computeOutputShape([[null, 3, 5], [null, 6, 7], [null, 6, 4]])).toEqual([null, 3, 3]);
    const b = await values(port.call(q, { value: v, key: k }));
    expect(maxAbsDiff(await values(ya), b)).toBeLessThanOrEqual(bound(b, 7 + 6 + 6));
    // and the list form apply([query, value, key])
    expect(maxAbsDiff(await values(ours.apply([q, v, k]) as tf.Tensor), b)).toBeLessThanOrEqual(bound(b, 7 + 6 + 6));
  });

  it('matches the port with an attentionMask; a row with no visible key outputs attention_output/bias', async () => {
    const s = { B: 2, Tq: 4, Tk: 5, Dq: 6, Dv: 6 };
    const { ours, port } = twins({ numHeads: 2, keyDim: 3 }, s);
    const [q, v] = [tensor3(5, [2, 4, 6]), tensor3(6, [2, 5, 6])];
    // row (b=1, i=2) sees no key; the others see a scattered subset
    const m = [
      [[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]],
      [[1, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 1, 1]],
    ];
    for (const mask of [tf.tensor3d(m, [2, 4, 5], 'bool'), tf.tensor3d(m, [2, 4, 5], 'int32')]) {
      const a = await rows(ours.apply(q, { value: v, attentionMask: mask }) as tf.Tensor);
      const b = await rows(port.call(q, { value: v, attentionMask: mask }));
      const bias = await (ours.weights[7]!.read()).array() as number[];
      for (let bi = 0; bi < 2; bi++) {
        for (let i = 0; i < 4; i++) {
          if (m[bi]![i]!.some((x) => x === 1)) {
            expect(maxAbsDiff(a[bi]![i]!, b[bi]![i]!), `row ${bi},${i}`).toBeLessThanOrEqual(bound(b[bi]![i]!, 6 + 5 + 6));
          } else {
            expect(a[bi]![i]).toEqual(bias);
            // Keras averages every value there instead
            expect(maxAbsDiff(a[bi]![i]!, b[bi]![i]!)).toBeGreaterThan(1e-3);
          }
        }
      }
    }
  });

  it('matches the port with useCausalMask, top-left aligned also when Tq ≠ Tk', async () => {
    for (const [Tq, Tk] of [[5, 5], [3, 6], [6, 4]] as const) {
      const s = { B: 2, Tq, Tk, Dq: 4, Dv: 5 };
      const { ours, port } = twins({ numHeads: 2, keyDim: 3, valueDim: 2 }, s);
      const [q, v] = [tensor3(8, [2, Tq, 4]), tensor3(9, [2, Tk, 5])];
      const a = await values(ours.apply(q, { value: v, useCausalMask: true }) as tf.Tensor);
      const b = await values(port.call(q, { value: v, useCausalMask: true }));
      expect(maxAbsDiff(a, b), `Tq ${Tq}, Tk ${Tk}`).toBeLessThanOrEqual(bound(b, 5 + Tk + 4));
      // bottom-right alignment would differ: the causal mask really is top-left
      if (Tq !== Tk) {
        const plain = await values(ours.apply(q, { value: v }) as tf.Tensor);
        expect(maxAbsDiff(a, plain)).toBeGreaterThan(1e-3);
      }
    }
  });

  it('honours padding masks from an embedding with maskZero, as the port, and passes the query\'s mask on', async () => {
    const embed = tf.layers.embedding({ inputDim: 9, outputDim: 6, maskZero: true });
    const ids = tf.tensor2d([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]]);
    const context = tf.tensor2d([[5, 0, 6, 0], [0, 0, 0, 0]]);
    const x = embed.apply(ids) as tf.Tensor;
    const c = embed.apply(context) as tf.Tensor;
    expect(x.kerasMask).toBeDefined();
    const s = { B: 2, Tq: 5, Tk: 5, Dq: 6, Dv: 6 };
    const { ours, port } = twins({ numHeads: 2, keyDim: 4 }, s);
    const bias = await (ours.weights[7]!.read()).array() as number[];
    // self-attention: padded queries see no key (the query mask hides their row)
    const self = ours.apply(x, { value: x }) as tf.Tensor;
    expect(await self.kerasMask!.array()).toEqual(await x.kerasMask!.array());
    const a = await rows(self);
    const b = await rows(port.call(x, { value: x }));
    const idRows = (await ids.array()) as number[][];
    for (let bi = 0; bi < 2; bi++) {
      for (let i = 0; i < 5; i++) {
        if (idRows[bi]![i] !== 0) {
          expect(maxAbsDiff(a[bi]![i]!, b[bi]![i]!), `row ${bi},${i}`).toBeLessThanOrEqual(bound(b[bi]![i]!, 6 + 5 + 8));
        } else {
          expect(a[bi]![i]).toEqual(bias);
        }
      }
    }
    // a padded key changes nothing: self-attention over [3, 1, 4] equals the unpadded sequence's
    const short = embed.apply(tf.tensor2d([[3, 1, 4]])) as tf.Tensor;
    const alone = await rows(ours.apply(short, { value: short }) as tf.Tensor);
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(alone[0]![i]!, a[0]![i]!)).toBeLessThanOrEqual(bound(alone[0]![i]!, 6 + 5 + 8));
    // cross-attention to a context whose second row is all padding
    const ours2 = twins({ numHeads: 2, keyDim: 4 }, { B: 2, Tq: 5, Tk: 4, Dq: 6, Dv: 6 });
    const ca = await rows(ours2.ours.apply(x, { value: c }) as tf.Tensor);
    const cb = await rows(ours2.port.call(x, { value: c }));
    const bias2 = await (ours2.ours.weights[7]!.read()).array() as number[];
    for (let i = 0; i < 5; i++) {
      if (idRows[0]![i] !== 0) expect(maxAbsDiff(ca[0]![i]!, cb[0]![i]!)).toBeLessThanOrEqual(bound(cb[0]![i]!, 6 + 4 + 8));
      expect(ca[1]![i]).toEqual(bias2);
    }
  });

  it('takes an empty batch, and an empty context, whose every query sees no key', async () => {
    const layer = new MultiHeadAttention({ numHeads: 2, keyDim: 3, biasInitializer: 'ones' });
    const empty = layer.apply(tf.zeros([0, 4, 6]), { value: tf.zeros([0, 2, 5]) }) as tf.Tensor;
    expect(empty.shape).toEqual([0, 4, 6]);
    const y = layer.apply(tf.ones([2, 4, 6]), { value: tf.zeros([2, 0, 5]) }) as tf.Tensor;
    expect(y.shape).toEqual([2, 4, 6]);
    expect(Array.from(await y.data())).toEqual(new Array(48).fill(1));
  });

  it('round-trips through model.save and tf.loadLayersModel under Keras\'s class and weight names', async () => {
    const ids = tf.input({ shape: [6], dtype: 'int32' });
    const x = tf.layers.embedding({ inputDim: 10, outputDim: 8, maskZero: true }).apply(ids) as tf.SymbolicTensor;
    const mha = layers.multiHeadAttention({ numHeads: 2, keyDim: 4, valueDim: 3, name: 'mha' });
    const y = mha.apply(x, { value: x, useCausalMask: true }) as tf.SymbolicTensor;
    expect(y.shape).toEqual([null, 6, 8]);
    const model = tf.model({ inputs: ids, outputs: tf.layers.dense({ units: 10 }).apply(y) as tf.SymbolicTensor });
    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const specs = artifacts!.weightSpecs!.filter((w) => w.name.startsWith('mha/'));
    expect(specs.map((w) => [w.name, w.shape])).toEqual([
      ['mha/query/kernel', [8, 2, 4]], ['mha/query/bias', [2, 4]], ['mha/key/kernel', [8, 2, 4]], ['mha/key/bias', [2, 4]],
      ['mha/value/kernel', [8, 2, 3]], ['mha/value/bias', [2, 3]],
      ['mha/attention_output/kernel', [2, 3, 8]], ['mha/attention_output/bias', [8]],
    ]);
    expect(JSON.stringify(artifacts!.modelTopology)).toContain('"class_name":"MultiHeadAttention"');
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));
    const back = loaded.getLayer('mha');
    expect(back).toBeInstanceOf(MultiHeadAttention);
    expect(back.getConfig()).toMatchObject({ numHeads: 2, keyDim: 4, valueDim: 3, dropout: 0, useBias: true, outputShape: null,
      attentionAxes: null, biasInitializer: { className: 'Zeros' },
      // tfjs writes Keras's GlorotUniform as the VarianceScaling it is
      kernelInitializer: { className: 'VarianceScaling', config: { scale: 1, mode: 'fanAvg', distribution: 'uniform' } } });
    const batch = tf.tensor2d([[1, 4, 2, 9, 0, 3], [5, 5, 1, 2, 8, 7]], undefined, 'int32');
    const [a, b] = [model.predict(batch) as tf.Tensor, loaded.predict(batch) as tf.Tensor];
    expect(maxAbsDiff(await values(a), await values(b))).toBe(0);
    // the causal mask survives predict and the reload: changing the last token leaves the others
    const changed = loaded.predict(tf.tensor2d([[1, 4, 2, 9, 0, 6], [5, 5, 1, 2, 8, 1]], undefined, 'int32')) as tf.Tensor;
    const [ra, rc] = [await rows(b), await rows(changed)];
    for (let bi = 0; bi < 2; bi++) {
      for (let i = 0; i < 5; i++) expect(maxAbsDiff(ra[bi]![i]!, rc[bi]![i]!)).toBe(0);
      expect(maxAbsDiff(ra[bi]![5]!, rc[bi]![5]!)).toBeGreaterThan(0);
    }
  });

  it('a short model.fit lowers the loss, learning a teacher with other weights', async () => {
    const q = tf.input({ shape: [5, 6] });
    const c = tf.input({ shape: [7, 4] });
    const y = layers.multiHeadAttention({ numHeads: 2, keyDim: 4 }).apply(q, { value: c }) as tf.SymbolicTensor;
    const model = tf.model({ inputs: [q, c], outputs: y });
    model.compile({ optimizer: tf.train.adam(0.02), loss: 'meanSquaredError' });
    const xs = [tensor3(11, [16, 5, 6]), tensor3(12, [16, 7, 4])];
    const teacher = twins({ numHeads: 2, keyDim: 4 }, { B: 1, Tq: 5, Tk: 7, Dq: 6, Dv: 4 }, 40).ours;
    const target = teacher.apply(xs[0]!, { value: xs[1]! }) as tf.Tensor;
    const history = await model.fit(xs, target, { epochs: 30, batchSize: 16, verbose: 0 });
    const loss = history.history.loss as number[];
    expect(loss[loss.length - 1]!).toBeLessThan(0.5 * loss[0]!);
  });

  it('does not leak memory, forward and gradients, with masks', async () => {
    const layer = new MultiHeadAttention({ numHeads: 2, keyDim: 3, valueDim: 5 });
    const q = tensor3(14, [2, 4, 6]);
    const v = tensor3(15, [2, 3, 6]);
    const mask = tf.tensor3d(seededUniform(16, 24).map((r) => (r > -0.3 ? 1 : 0)), [2, 4, 3], 'bool');
    tf.dispose(layer.apply(q, { value: v }) as tf.Tensor);
    await expectNoLeaks(() => {
      tf.dispose(layer.apply(q, { value: v, attentionMask: mask, useCausalMask: true }) as tf.Tensor);
      const { value, grads } = tf.variableGrads(() =>
        tf.sum(layer.apply(q, { value: v, attentionMask: mask }) as tf.Tensor) as tf.Scalar, layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val));
      tf.dispose([value, ...Object.values(grads)]);
    });
  });

  it('ignores dropout at inference, as Keras, and drops attention weights in training', async () => {
    const s = { B: 1, Tq: 3, Tk: 3, Dq: 4, Dv: 4 };
    const withDropout = twins({ numHeads: 1, keyDim: 4, dropout: 0.2, seed: 5 }, s).ours;
    const without = twins({ numHeads: 1, keyDim: 4 }, s).ours;
    const x = tensor3(17, [1, 3, 4]);
    expect(maxAbsDiff(await values(withDropout.apply(x, { value: x }) as tf.Tensor),
      await values(without.apply(x, { value: x }) as tf.Tensor))).toBe(0);
    const trained = withDropout.apply(x, { value: x, training: true }) as tf.Tensor;
    expect(maxAbsDiff(await values(trained), await values(without.apply(x, { value: x }) as tf.Tensor))).toBeGreaterThan(0);
  });

  describe('rejects bad arguments, naming them', () => {
    const make = (args: Record<string, unknown>) => () => new MultiHeadAttention(args as unknown as MultiHeadAttentionArgs);
    it.each([
      [{ numHeads: 2, keyDim: 4, heads: 2 }, /MultiHeadAttention: unknown option 'heads'/],
      [{ keyDim: 4 }, /MultiHeadAttention: argument 'numHeads', a positive integer, is required/],
      [{ numHeads: 2 }, /argument 'keyDim', a positive integer, is required/],
      [{ numHeads: 0, keyDim: 4 }, /argument 'numHeads' must be a positive integer; received 0/],
      [{ numHeads: 2, keyDim: 300 }, /argument 'keyDim' must be at most 256; received 300/],
      [{ numHeads: 2, keyDim: 4, dropout: 1.5 }, /argument 'dropout' must be a number in \[0, 1\); received 1.5/],
      [{ numHeads: 2, keyDim: 4, attentionAxes: [2] }, /argument 'attentionAxes' must be null, 1 or \[1\].*received \[2 \(a number\)\]/],
      [{ numHeads: 2, keyDim: 4, outputShape: [2, 3] }, /argument 'outputShape' must be a positive integer or \[n\]/],
      [{ numHeads: 2, keyDim: 4, kernelInitializer: 'noSuchThing' }, /argument 'kernelInitializer' must be a tfjs initializer.*'noSuchThing'/],
      [{ numHeads: 2, keyDim: 4, kernelInitializer: 'dense' }, /argument 'kernelInitializer' must be a tfjs initializer/],
      [{ numHeads: 2, keyDim: 4, activityRegularizer: 'l1l2' }, /argument 'activityRegularizer' is not supported/],
      [{ numHeads: 2, keyDim: 4, implementation: 'gpu' }, /option 'implementation' must be one of 'auto', 'webgpu', 'reference'/],
    ])('%o', (args, message) => {
      expect(make(args)).toThrow(message);
    });

    it('in the call', () => {
      const layer = new MultiHeadAttention({ numHeads: 2, keyDim: 4 });
      const x = tf.zeros([2, 3, 4]);
      expect(() => layer.apply(x)).toThrow(/MultiHeadAttention: option 'value' is required/);
      expect(() => layer.apply(x, { value: x, causal: true } as never)).toThrow(/unknown option 'causal'/);
      expect(() => layer.apply(x, { value: ['input_1', 0, 0] } as never))
        .toThrow(/MultiHeadAttention: 'value' must be a tensor or a symbolic tensor; received \['input_1' \(a string\)/);
      expect(() => layer.apply(x, { value: x, attentionMask: tf.ones([2, 3, 4]) }))
        .toThrow(/option 'attentionMask' must be a tensor \[B, Tq, Tk\] = \[2, 3, 3\].*received a float32 tensor of shape \[2, 3, 4\]/);
      expect(() => layer.apply(x, { value: tf.zeros([2, 5, 4]), key: tf.zeros([2, 4, 4]) }))
        .toThrow(/'value' and 'key' of the same length Tk/);
      expect(() => layer.apply(x, { value: tf.zeros([3, 3, 4]) })).toThrow(/must agree on B and Tk/);
      const sym = tf.input({ shape: [3, 4] });
      expect(() => layer.apply(sym, { value: sym, attentionMask: tf.ones([1, 3, 3]) })).toThrow(/'attentionMask' works in eager calls only/);
    });

    it('accepts Keras\'s initialisers, regularisers and constraints in every form, and writes them back', () => {
      const layer = new MultiHeadAttention({
        numHeads: 1, keyDim: 2, kernelInitializer: 'heNormal', biasInitializer: { className: 'Constant', config: { value: 0.5 } },
        kernelRegularizer: tf.regularizers.l2({ l2: 0.1 }), biasConstraint: 'nonNeg',
      });
      const x = tf.ones([1, 2, 3]);
      tf.dispose(layer.apply(x, { value: x }) as tf.Tensor);
      expect(layer.getWeights()[1]!.arraySync()).toEqual([[0.5, 0.5]]);
      expect(layer.losses.length).toBeGreaterThan(0);
      expect(layer.getConfig()).toMatchObject({
        kernelInitializer: { className: 'VarianceScaling', config: { scale: 2, mode: 'fanIn', distribution: 'normal' } },
        biasInitializer: { className: 'Constant', config: { value: 0.5 } },
        kernelRegularizer: { className: 'L1L2', config: { l2: 0.1 } }, biasConstraint: { className: 'NonNeg' },
      });
    });
  });
});

describeOn('webgpu', 'MultiHeadAttention', () => {
  it('the kernel path matches the reference, with a causal mask and an attention mask', async () => {
    const run = async (implementation: 'webgpu' | 'reference') => {
      const layer = new MultiHeadAttention({ numHeads: 2, keyDim: 4, valueDim: 3, implementation });
      const [q, v] = [tensor3(21, [2, 5, 6]), tensor3(22, [2, 7, 6])];
      tf.dispose(layer.apply(q, { value: v }) as tf.Tensor);
      const w = layer.getWeights().map((t, n) => tf.tensor(seededUniform(30 + n, t.size), t.shape));
      layer.setWeights(w);
      const mask = tf.tensor3d(seededUniform(23, 70).map((r) => (r > -0.5 ? 1 : 0)), [2, 5, 7], 'int32');
      const out = await values(layer.apply(q, { value: v, attentionMask: mask, useCausalMask: true }) as tf.Tensor);
      tf.dispose([q, v, mask, ...w]);
      return out;
    };
    const [kernel, reference] = [await run('webgpu'), await run('reference')];
    expect(maxAbsDiff(kernel, reference)).toBeLessThanOrEqual(bound(reference, 6 + 7 + 6));
  });
});
