// The attention layers' visibility (MIXERS.md §7, "Layers"): causal or not, cross-attention,
// sliding windows, packed segments and tfjs's padding masks, checked against a float64 model of
// the layer (the projections by hand, then the attention oracle with the visibility written
// out here from §7), and against running each packed or unpadded sequence alone.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { layers } from '../src/index.js';
import type { AttentionLayer } from '../src/attention/attention-layer.js';
import { itRoundTrips } from './layer-properties.js';
import { expressiveAttentionOracle, softmaxAttentionOracle } from './oracle/attention.js';
import {
  EPS32, decodeSteps, describeOn, expectNoLeaks, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, seededUniform, values,
} from './helpers.js';

type Kind = 'softmax' | 'expressive';
type Visible = (b: number, i: number, j: number) => boolean;

const D = 16;
const H = 2;
const HKV = 1;
const K = D / H;

/** Sets every weight of a built layer to seeded values in [-0.5, 0.5), biases included. */
function seedWeights(layer: tf.layers.Layer, seed: number): void {
  const ws = layer.weights.map((w, n) => {
    const shape = w.shape as number[];
    return tf.tensor(seededUniform(seed + n, shape.reduce((a, d) => a * d, 1), -0.5, 0.5), shape);
  });
  layer.setWeights(ws);
  tf.dispose(ws);
}

function seeded(shape: number[], seed: number): tf.Tensor3D {
  return tf.tensor3d(seededUniform(seed, shape.reduce((a, d) => a * d, 1)), shape as [number, number, number]);
}

/** The layer's weights by name (`query`, `keyBias`, …), in float64. */
async function weightsOf(layer: tf.layers.Layer): Promise<Map<string, Float64Array>> {
  const out = new Map<string, Float64Array>();
  for (const w of layer.weights) out.set(w.originalName.split('/').pop()!, await values(w.read()));
  return out;
}

/** `x [N, n]·W [n, m] + b` in float64. */
function dense(x: ArrayLike<number>, N: number, n: number, W: Float64Array, m: number, b: Float64Array | undefined): Float64Array {
  const y = new Float64Array(N * m);
  for (let r = 0; r < N; r++) {
    for (let c = 0; c < m; c++) {
      let acc = b ? b[c]! : 0;
      for (let d = 0; d < n; d++) acc += x[r * n + d]! * W[d * m + c]!;
      y[r * m + c] = acc;
    }
  }
  return y;
}

/**
 * The layer in float64: q from x `[B, Tq, D]`, k and v from the context `[B, Tk, Dc]` (or x),
 * the attention oracle of `kind` row by row with key j visible to query i of row b iff
 * `visible(b, i, j)`, and the output projection: `[B, Tq, D]`.
 */
async function layerOracle(layer: tf.layers.Layer, kind: Kind, x: tf.Tensor3D, context: tf.Tensor3D | null, visible: Visible): Promise<Float64Array> {
  const w = await weightsOf(layer);
  const [B, Tq] = x.shape;
  const source = context ?? x;
  const [, Tk, Dc] = source.shape;
  const xs = await values(x);
  const cs = await values(source);
  const q = dense(xs, B * Tq, D, w.get('query')!, H * K, w.get('queryBias'));
  const k = dense(cs, B * Tk, Dc, w.get('key')!, HKV * K, w.get('keyBias'));
  const v = dense(cs, B * Tk, Dc, w.get('value')!, HKV * K, w.get('valueBias'));
  const o = new Float64Array(B * Tq * H * K);
  for (let b = 0; b < B; b++) {
    const shape = { B: 1, Tq, Tk, H, Hkv: HKV, K };
    const rowQ = q.subarray(b * Tq * H * K, (b + 1) * Tq * H * K);
    const rowK = k.subarray(b * Tk * HKV * K, (b + 1) * Tk * HKV * K);
    const rowV = v.subarray(b * Tk * HKV * K, (b + 1) * Tk * HKV * K);
    // every condition is in the mask, so the oracle's own causal flag stays off
    const opts = { causal: false, mask: (i: number, j: number) => visible(b, i, j) };
    const rowO = kind === 'softmax'
      ? softmaxAttentionOracle(rowQ, rowK, rowV, shape, opts).o
      : expressiveAttentionOracle(rowQ, rowK, rowV, shape, { ...opts, epsilon: 1e-6 }).o;
    o.set(rowO, b * Tq * H * K);
  }
  return dense(o, B * Tq, H * K, w.get('output')!, D, w.get('outputBias'));
}

/**
 * §7 for the layers (p_i = Tk − Tq + i): causal j ≤ p_i; window w: j > p_i − w, and j < p_i + w
 * when not causal; segments equal; the key padding mask non-zero.
 */
function visibility(Tq: number, Tk: number, o: {
  causal: boolean; window?: number; segments?: number[][]; keyMask?: number[][];
}): Visible {
  return (b, i, j) => {
    const p = Tk - Tq + i;
    if (o.causal && j > p) return false;
    if (o.window !== undefined && (j <= p - o.window || (!o.causal && j >= p + o.window))) return false;
    if (o.segments && o.segments[b]![i] !== o.segments[b]![j]) return false;
    if (o.keyMask && o.keyMask[b]![j] === 0) return false;
    return true;
  };
}

/**
 * float32 against float64: each output is a chain of sums (a projection over D or Dc inputs, the
 * attention over Tk keys, the output projection over H·K), each adding at most n·ε of the
 * magnitudes involved (recursive summation), with n the total number of terms along the chain.
 */
function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, terms: number, what: string): void {
  const tol = 4 * terms * EPS32 * Math.max(1, maxAbs(want));
  expect(maxAbsDiff(got, want), what).toBeLessThanOrEqual(tol);
}

/** The layer built for D (and Dc for cross-attention) and seeded. */
function built<L extends AttentionLayer>(layer: L, seed: number, context?: number[]): L {
  tf.tidy(() => {
    const x = tf.zeros([1, 3, D]);
    layer.apply(context ? [x, tf.zeros(context)] : x);
  });
  seedWeights(layer, seed);
  return layer;
}

const makers: Array<[string, Kind, (a: Record<string, unknown>) => AttentionLayer]> = [
  ['FlashStyleTiledAttention', 'softmax', (a) => layers.flashStyleTiledAttention({ numHeads: H, numKvHeads: HKV, ...a })],
  ['ExpressiveAttention', 'expressive', (a) => layers.expressiveAttention({ numHeads: H, numKvHeads: HKV, ...a })],
];

describe('attention layer options (cpu, reference)', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('cpu')).toBe(true);
  });

  describe.each(makers)('%s', (name, kind, make) => {
    it('causal: false is an encoder: token 0 sees the future, and the layer equals the float64 attention without a mask', async () => {
      const layer = built(make({ causal: false }), 1);
      const x = seeded([2, 7, D], 2);
      const y = layer.apply(x) as tf.Tensor;
      const want = await layerOracle(layer, kind, x, null, visibility(7, 7, { causal: false }));
      expectClose(await values(y), want, D + 7 + H * K, `${name} causal: false`);
      // a change at the last token reaches token 0's output
      const later = tf.concat([x.slice([0, 0, 0], [2, 6, D]), tf.fill([2, 1, D], 3)], 1);
      const y2 = layer.apply(later) as tf.Tensor;
      expect(maxAbsDiff((await values(y)).subarray(0, D), (await values(y2)).subarray(0, D))).toBeGreaterThan(0);
      expect(layer.getConfig().causal).toBe(false);
      tf.dispose([x, y, later, y2]);
      layer.dispose();
    });

    it('cross-attention [x, context] with Dc ≠ D: queries from x, keys and values from the context, not causal by default', async () => {
      const layer = built(make({}), 3, [1, 4, 12]);
      const shapes = layer.weights.map((w) => [w.originalName.split('/').pop(), w.shape]);
      expect(shapes).toEqual([
        ['query', [D, H * K]], ['key', [12, HKV * K]], ['value', [12, HKV * K]], ['output', [H * K, D]],
        ['queryBias', [H * K]], ['keyBias', [HKV * K]], ['valueBias', [HKV * K]], ['outputBias', [D]],
      ]);
      const x = seeded([2, 5, D], 4);
      const context = seeded([2, 7, 12], 5);
      const y = layer.apply([x, context]) as tf.Tensor;
      expect(y.shape).toEqual([2, 5, D]);
      const want = await layerOracle(layer, kind, x, context, visibility(5, 7, { causal: false }));
      expectClose(await values(y), want, 12 + 7 + H * K, `${name} cross-attention`);
      tf.dispose([x, context, y]);
      layer.dispose();
    });

    it('cross-attention with causal: true is bottom-right aligned (query i sees keys j ≤ i + Tk − Tq)', async () => {
      const layer = built(make({ causal: true }), 6, [1, 4, 12]);
      const x = seeded([2, 3, D], 7);
      const context = seeded([2, 6, 12], 8);
      const y = layer.apply([x, context]) as tf.Tensor;
      const want = await layerOracle(layer, kind, x, context, visibility(3, 6, { causal: true }));
      expectClose(await values(y), want, 12 + 6 + H * K, `${name} causal cross-attention`);
      tf.dispose([x, context, y]);
      layer.dispose();
    });

    it('builds for cross-attention symbolically: output [B, Tq, D], weights for Dc, and a model that round-trips through save', async () => {
      const target = tf.input({ shape: [null, D] });
      const source = tf.input({ shape: [null, 12] });
      const layer = make({ name: 'cross' });
      const out = layer.apply([target, source]) as tf.SymbolicTensor;
      expect(out.shape).toEqual([null, null, D]);
      expect(layer.computeOutputShape([[2, 5, D], [2, 7, 12]])).toEqual([2, 5, D]);
      const model = tf.model({ inputs: [target, source], outputs: out });
      let artifacts: tf.io.ModelArtifacts | undefined;
      await model.save(tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }));
      const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));
      expect(loaded.getLayer('cross').getConfig().causal).toBeNull();
      const inputs = [seeded([2, 5, D], 9), seeded([2, 7, 12], 10)];
      const [a, b] = [model.predict(inputs) as tf.Tensor, loaded.predict(inputs) as tf.Tensor];
      expect(a.shape).toEqual([2, 5, D]);
      expect(maxAbsDiff(await values(a), await values(b))).toBe(0);
      tf.dispose([inputs, a, b]);
      model.dispose();
      loaded.dispose();
    });

    it.each([{ causal: true, window: 3 }, { causal: false, window: 2 }])('window (%o) equals the float64 attention over the window', async (opts) => {
      const layer = built(make(opts), 11);
      const x = seeded([2, 9, D], 12);
      const y = layer.apply(x) as tf.Tensor;
      const want = await layerOracle(layer, kind, x, null, visibility(9, 9, opts));
      expectClose(await values(y), want, D + 9 + H * K, `${name} window`);
      expect(layer.getConfig().window).toBe(opts.window);
      tf.dispose([x, y]);
      layer.dispose();
    });

    it('decoding with a window attends to the last w keys of the cache: stepping reproduces the forward', async () => {
      const layer = built(make({ window: 3 }), 13);
      const x = seeded([2, 8, D], 14);
      const parallel = layer.apply(x) as tf.Tensor;
      const stepped = decodeSteps(layer as never, x);
      expectClose(await values(stepped), await values(parallel), D + 8 + H * K, `${name} windowed decode`);
      tf.dispose([x, parallel, stepped]);
      layer.dispose();
    });

    it('segmentIds: packed sequences give what each sequence gives alone, forward and weight gradients', async () => {
      const layer = built(make({}), 15);
      const T = 7;
      const ids = [[0, 0, 0, 1, 1, 2, 2], [4, 4, 4, 4, 4, 9, 9]];
      const x = seeded([2, T, D], 16);
      const dy = seeded([2, T, D], 17);
      const segmentIds = tf.tensor2d(ids, undefined, 'int32');
      const vars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
      const packedLoss = () => tf.sum(tf.mul(layer.apply(x, { segmentIds }) as tf.Tensor, dy)) as tf.Scalar;
      const packed = tf.variableGrads(packedLoss, vars);
      const y = layer.apply(x, { segmentIds }) as tf.Tensor;
      // each run of equal ids alone, its outputs and its share of the loss
      const alone = new Float64Array(2 * T * D);
      const grads = vars.map((v) => new Float64Array(v.size));
      for (let b = 0; b < 2; b++) {
        for (let start = 0; start < T;) {
          let end = start;
          while (end < T && ids[b]![end] === ids[b]![start]) end++;
          const xs = x.slice([b, start, 0], [1, end - start, D]);
          const dys = dy.slice([b, start, 0], [1, end - start, D]);
          const ys = layer.apply(xs) as tf.Tensor;
          alone.set(await values(ys), (b * T + start) * D);
          const g = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(xs) as tf.Tensor, dys)) as tf.Scalar, vars);
          for (let n = 0; n < vars.length; n++) {
            const gn = await values(g.grads[vars[n]!.name]!);
            for (let e = 0; e < gn.length; e++) grads[n]![e] += gn[e]!;
          }
          tf.dispose([xs, dys, ys, g.value, g.grads]);
          start = end;
        }
      }
      expectClose(await values(y), alone, D + T + H * K, `${name} packed forward`);
      for (let n = 0; n < vars.length; n++) {
        // a weight's gradient sums B·T terms of such chains
        expectClose(await values(packed.grads[vars[n]!.name]!), grads[n]!, 2 * T * (D + T + H * K), `${name} packed gradient of ${vars[n]!.name}`);
      }
      tf.dispose([x, dy, segmentIds, y, packed.value, packed.grads]);
      layer.dispose();
    });

    it('honours a maskZero embedding\'s padding mask and passes it on: real tokens do not see the padding', async () => {
      const vocab = 9;
      const T = 6;
      const model = tf.sequential({ layers: [
        tf.layers.embedding({ inputDim: vocab, outputDim: D, maskZero: true }),
        make({ causal: false }),
        make({ causal: false }),
      ] });
      // right padding in row 0, left padding in row 1
      const rows = [[3, 1, 4, 1, 0, 0], [0, 0, 5, 8, 2, 6]];
      const real = [[0, 1, 2, 3], [2, 3, 4, 5]];
      const ids = tf.tensor2d(rows);
      const predict = async (input: tf.Tensor) => {
        const y = model.predict(input) as tf.Tensor;
        const out = await values(y);
        y.dispose();
        return out;
      };
      const before = await predict(ids);
      // the padding token's embedding changes: no real token's output may move
      const [table] = model.layers[0]!.getWeights();
      const changed = tf.tidy(() => tf.concat([tf.fill([1, D], 7), table!.slice([1, 0], [vocab - 1, D])]));
      model.layers[0]!.setWeights([changed]);
      const after = await predict(ids);
      for (let b = 0; b < 2; b++) {
        for (const t of real[b]!) {
          const at = (b * T + t) * D;
          expect(maxAbsDiff(after.subarray(at, at + D), before.subarray(at, at + D)), `row ${b}, token ${t}`).toBe(0);
        }
      }
      // and each row equals its real tokens alone, unpadded
      for (let b = 0; b < 2; b++) {
        const alone = tf.tensor2d([real[b]!.map((t) => rows[b]![t]!)]);
        const y = await predict(alone);
        const padded = after.subarray((b * T + real[b]![0]!) * D, (b * T + real[b]![3]! + 1) * D);
        expectClose(padded, y, 2 * (D + T + H * K), `${name} row ${b} against its unpadded tokens`);
        tf.dispose(alone);
      }
      // getWeights gives the layer's own variable, which the model disposes
      tf.dispose([ids, changed]);
      model.dispose();
    });

    it('trains with model.fit behind a maskZero embedding (fit passes training and the mask to call)', async () => {
      const vocab = 7;
      const model = tf.sequential({ layers: [
        tf.layers.embedding({ inputDim: vocab, outputDim: D, maskZero: true }),
        make({ causal: false }),
        tf.layers.dense({ units: vocab, activation: 'softmax' }),
      ] });
      // the label of each real token is its own id; the padding's label is id 0
      const rows = [[1, 2, 3, 0, 0], [4, 5, 6, 1, 0], [0, 2, 4, 6, 3], [5, 3, 1, 0, 0]];
      const xs = tf.tensor2d(rows);
      const ys = tf.oneHot(tf.tensor2d(rows, undefined, 'int32'), vocab);
      model.compile({ optimizer: tf.train.adam(0.05), loss: 'categoricalCrossentropy' });
      const history = await model.fit(xs, ys, { epochs: 6, batchSize: 4, verbose: 0, shuffle: false });
      const losses = history.history.loss as number[];
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[losses.length - 1]!).toBeLessThan(losses[0]!);
      tf.dispose([xs, ys]);
      model.dispose();
    });

    it('in cross-attention, the context\'s padding mask hides its padded keys (model.predict, which passes on the first input\'s mask alone)', async () => {
      const target = tf.input({ shape: [5, D] });
      const sourceIds = tf.input({ shape: [6] });
      const embedding = tf.layers.embedding({ inputDim: 9, outputDim: 12, maskZero: true });
      const layer = make({});
      const model = tf.model({ inputs: [target, sourceIds], outputs: layer.apply([target, embedding.apply(sourceIds) as tf.SymbolicTensor]) as tf.SymbolicTensor });
      seedWeights(layer, 18);
      const keyMask = [[1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1]];
      const rows = [[3, 1, 4, 0, 0, 0], [0, 5, 8, 2, 6, 7]];
      const x = seeded([2, 5, D], 19);
      const ids = tf.tensor2d(rows);
      const y = model.predict([x, ids]) as tf.Tensor;
      const context = embedding.apply(ids) as tf.Tensor3D;
      const want = await layerOracle(layer, kind, x, context, visibility(5, 6, { causal: false, keyMask }));
      expectClose(await values(y), want, 12 + 6 + H * K, `${name} cross-attention with a context mask`);
      tf.dispose([x, ids, y, context]);
      model.dispose();
    });

    it('a mask given to apply, and segmentIds, as the keys\' visibility; cross-attention takes [maskOfX, maskOfContext]', async () => {
      const layer = built(make({}), 20, [1, 4, 12]);
      const x = seeded([2, 3, D], 21);
      const context = seeded([2, 5, 12], 22);
      const keyMask = [[1, 0, 1, 1, 0], [0, 0, 0, 0, 1]];
      const masks = [tf.ones([2, 3], 'bool'), tf.tensor2d(keyMask, undefined, 'bool')];
      const y = layer.apply([x, context], { mask: masks }) as tf.Tensor;
      const want = await layerOracle(layer, kind, x, context, visibility(3, 5, { causal: false, keyMask }));
      expectClose(await values(y), want, 12 + 5 + H * K, `${name} cross-attention with mask`);
      expect(layer.computeMask([x, context], masks)).toBe(masks[0]);
      tf.dispose([x, context, masks, y]);
      layer.dispose();
    });

    it('leaks no tensors: cross-attention, segmentIds, masks and windowed decoding', async () => {
      const cross = built(make({}), 23, [1, 4, 12]);
      const self = built(make({ window: 2 }), 24);
      const x = seeded([2, 4, D], 25);
      const context = seeded([2, 3, 12], 26);
      const segmentIds = tf.tensor2d([[0, 0, 1, 1], [2, 2, 2, 3]], undefined, 'int32');
      const mask = tf.tensor2d([[1, 1, 1, 0], [0, 1, 1, 1]], undefined, 'bool');
      await expectNoLeaks(() => {
        tf.dispose([
          cross.apply([x, context]) as tf.Tensor,
          self.apply(x, { segmentIds, mask }) as tf.Tensor,
          decodeSteps(self as never, x),
        ]);
      });
      tf.dispose([x, context, segmentIds, mask]);
      cross.dispose();
      self.dispose();
    });

    it('refuses what cannot work, naming the layer, the argument, the expectation and what it received', () => {
      expect(() => make({ window: 0 })).toThrow(new RegExp(`^${name}: argument 'window' must be a positive integer; received 0`));
      expect(() => make({ causal: 'yes' })).toThrow(new RegExp(`^${name}: option 'causal' must be a boolean; received 'yes' \\(a string\\)`));
      const encoder = built(make({ causal: false }), 27);
      expect(() => encoder.initState(1)).toThrow(new RegExp(`^${name}.initState: decoding needs causal self-attention; it has causal: false`));
      const cross = built(make({}), 28, [1, 4, 12]);
      expect(() => cross.initState(1))
        .toThrow(new RegExp(`^${name}.initState: decoding needs causal self-attention; it was built for cross-attention`));
      const x = tf.zeros([2, 3, D]);
      expect(() => cross.apply(x)).toThrow(new RegExp(`^${name}: the layer was built for cross-attention, \\[x, context\\]; received a single input`));
      expect(() => encoder.apply([x, tf.zeros([2, 4, D])])).toThrow(new RegExp(`^${name}: the layer was built for self-attention, a single x; received \\[x, context\\]`));
      expect(() => cross.apply([x, tf.zeros([2, 4, 8])]))
        .toThrow(new RegExp(`^${name}: argument 'context' must have shape \\[B, Tk, Dc\\] = \\[2, 4, 12\\]; received \\[2, 4, 8\\]`));
      expect(() => cross.apply([x, tf.zeros([3, 4, 12])])).toThrow(new RegExp(`^${name}: arguments 'inputs' and 'context' must hold the same batch B`));
      expect(() => cross.apply([x, x, x])).toThrow(new RegExp(`^${name} expects x, or \\[x, context\\] for cross-attention; received 3 inputs`));
      expect(() => encoder.apply(x, { mask: tf.ones([2, 4]) }))
        .toThrow(new RegExp(`^${name}: argument 'mask', the padding mask of x, must be a tensor \\[B, T\\] = \\[2, 3\\]; received a float32 tensor of shape \\[2, 4\\]`));
      expect(() => encoder.apply(x, { segmentIds: tf.zeros([2, 3]) })).toThrow(new RegExp(`^${name}: option 'segmentIds' must be an int32 tensor \\[B, T\\] = \\[2, 3\\]; received a float32`));
      expect(() => encoder.apply(x, { segmentIDs: tf.zeros([2, 3], 'int32') })).toThrow(new RegExp(`^${name}.apply: unknown option 'segmentIDs'; the options are 'segmentIds', 'mask', 'training'`));
      encoder.dispose();
      cross.dispose();
    });
  });

  describe('BlockSparse', () => {
    const make = (a: Record<string, unknown> = {}) => layers.blockSparse({ numHeads: H, numKvHeads: HKV, layout: { blockSize: 2, localBlocks: 4, globalBlocks: 0 }, ...a });

    it('stays causal self-attention: refuses causal: false, a window and a context, with reasons', () => {
      expect(() => make({ causal: false })).toThrow(/^BlockSparse: option 'causal' must be true \(or omitted\): its attention is causal by definition; received false/);
      expect(() => make({ window: 4 })).toThrow(/^BlockSparse: unknown option 'window'/);
      expect(make({ causal: true }).getConfig().causal).toBe(true);
      const x = tf.zeros([1, 3, D]);
      expect(() => make().apply([x, x])).toThrow(/^BlockSparse: takes a single input x \[B, T, D\]: it has no cross-attention; received 2 inputs/);
      tf.dispose(x);
    });

    it('segmentIds (a layout dense over T) and a padding mask reach its attention', async () => {
      const layer = built(make(), 29);
      const T = 7;
      const ids = [[0, 0, 0, 1, 1, 2, 2], [5, 5, 5, 5, 6, 6, 6]];
      const keyMask = [[1, 1, 1, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1, 1]];
      const x = seeded([2, T, D], 30);
      const segmentIds = tf.tensor2d(ids, undefined, 'int32');
      const mask = tf.tensor2d(keyMask, undefined, 'bool');
      const y = layer.apply(x, { segmentIds, mask }) as tf.Tensor;
      const want = await layerOracle(layer, 'softmax', x, null, visibility(T, T, { causal: true, segments: ids, keyMask }));
      expectClose(await values(y), want, D + T + H * K, 'BlockSparse segments and mask');
      tf.dispose([x, segmentIds, mask, y]);
      layer.dispose();
    });
  });

  it('ExpressiveAttention refuses a window with recurrent decoding, whose sums cannot forget', () => {
    expect(() => layers.expressiveAttention({ numHeads: 2, window: 4, decode: 'recurrent' }))
      .toThrow(/^ExpressiveAttention: option 'window' needs decode: 'cache'.*received window = 4 with decode: 'recurrent'/);
  });

  describe('round-trips causal and window through model.save', () => {
    itRoundTrips(() => layers.flashStyleTiledAttention({ numHeads: 2, causal: false, window: 3 }), { causal: false, window: 3 });
    itRoundTrips(() => layers.expressiveAttention({ numHeads: 2, causal: true, window: 2 }), { causal: true, window: 2 });
  });
});

describeOn('webgpu', 'attention layer options, kernels against the reference', () => {
  it.each(makers)('%s: cross-attention with a context mask, and packed windowed self-attention with a padding mask', async (name, kind, make) => {
    const cases = [
      { args: {}, context: [2, 7, 12], T: 5, keyMask: [[1, 1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 1, 1, 1]], segments: undefined },
      {
        args: { window: 3 }, context: null, T: 9,
        keyMask: [[1, 1, 0, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1, 1, 1]],
        segments: [[0, 0, 0, 0, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 3, 3, 3]],
      },
    ];
    for (const [n, c] of cases.entries()) {
      const contextShape = c.context ? [1, 4, c.context[2]!] : undefined;
      const kernelLayer = built(make({ ...c.args, implementation: 'webgpu' }), 40 + n, contextShape);
      const referenceLayer = built(make({ ...c.args, implementation: 'reference' }), 40 + n, contextShape);
      const x = seeded([2, c.T, D], 50 + n);
      const context = c.context ? seeded(c.context, 60 + n) : null;
      const keyMask = tf.tensor2d(c.keyMask, undefined, 'bool');
      const segmentIds = c.segments ? tf.tensor2d(c.segments, undefined, 'int32') : undefined;
      const [kernel, reference] = [kernelLayer, referenceLayer].map((l) => (context
        ? l.apply([x, context], { mask: [null, keyMask] })
        : l.apply(x, { mask: keyMask, segmentIds })) as tf.Tensor);
      const Tk = c.context ? c.context[1]! : c.T;
      const visible = visibility(c.T, Tk, { causal: !context, ...c.args, segments: c.segments, keyMask: c.keyMask });
      const oracle = await layerOracle(referenceLayer, kind, x, context, visible);
      expectWithinDerivedTolerance(await values(kernel!), await values(reference!), oracle, `${name} case ${n}`);
      tf.dispose([x, keyMask, kernel!, reference!, ...(context ? [context] : []), ...(segmentIds ? [segmentIds] : [])]);
      kernelLayer.dispose();
      referenceLayer.dispose();
    }
  });
});
