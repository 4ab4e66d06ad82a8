// src/cpu-host.ts: swapMiddleAxes, broadcastBinary, sumAlong and copy give tfjs's own results bit for
// bit, their gradients too, on every backend (on tfjs-cpu computed on the host, elsewhere tfjs's
// ops), and on tfjs-cpu launch none of the kernels whose index arithmetic they avoid.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { broadcast, broadcastBinary, copy, sumAlong, swapMiddleAxes, type BinaryOp } from '../src/cpu-host.js';
import { REFERENCE_BACKENDS, describeOn, expectNoLeaks, seededUniform } from './helpers.js';

/** seededUniform values with a NaN, +∞ or −∞ at every 11th entry from the 4th. */
function withNonFinite(seed: number, n: number): Float32Array {
  return seededUniform(seed, n).map((v, i) => (i % 11 === 3 ? [NaN, Infinity, -Infinity][i % 3]! : v));
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'swapMiddleAxes', () => {
  it('equals the transpose [0, 2, 1, 3] bit for bit, NaN and ±∞ included, and so does its gradient, leaving nothing behind', async () => {
    const shapes: [number, number, number, number][] = [[2, 3, 5, 4], [1, 7, 1, 1], [3, 1, 2, 6], [1, 33, 4, 16]];
    for (const shape of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const xs = withNonFinite(n + 1, n);
      const x = tf.tensor4d(xs, shape);
      // a weight per output entry: the gradient of Σ w ∘ swap(x) is w swapped back
      const w = tf.tensor4d(seededUniform(n + 2, n), [shape[0], shape[2], shape[1], shape[3]]);
      const transposed = [x.transpose([0, 2, 1, 3]), w.transpose([0, 2, 1, 3])];
      const [want, wantGrad] = await Promise.all(transposed.map(async (t) => Array.from(await t.data())));
      await expectNoLeaks(async () => {
        const got = swapMiddleAxes(x);
        expect(got.shape).toEqual([shape[0], shape[2], shape[1], shape[3]]);
        expect(Array.from(await got.data())).toEqual(want);
        const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(swapMiddleAxes(a as tf.Tensor4D), w)))(x);
        expect(Array.from(await g.data())).toEqual(wantGrad);
        tf.dispose([got, g]);
      });
      tf.dispose([x, w, ...transposed]);
    }
    // ints go through tfjs's transpose (whose int32 build tfjs-webgpu 4.22 fails to compile)
    if (backend !== 'webgpu') {
      const ints = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1], 'int32');
      const swapped = swapMiddleAxes(ints);
      expect(swapped.dtype).toBe('int32');
      expect(Array.from(await swapped.data())).toEqual([1, 3, 2, 4]);
      tf.dispose([ints, swapped]);
    }
  });

  it('launches no Transpose on cpu, and only a Transpose elsewhere', async () => {
    const x = tf.ones([1, 4, 2, 3]) as tf.Tensor4D;
    const { kernels } = await tf.profile(() => swapMiddleAxes(x));
    const names = kernels.map((k) => k.name);
    if (backend === 'cpu') expect(names).not.toContain('Transpose');
    else expect(names).toEqual(['Transpose']);
    x.dispose();
  });
});

const OPS: BinaryOp[] = ['add', 'sub', 'mul', 'div'];
const TF_OPS: Record<BinaryOp, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor> = { add: tf.add, sub: tf.sub, mul: tf.mul, div: tf.div };

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'broadcastBinary', () => {
  // what the references broadcast (a row's statistic against its scores, a chunk's pairwise
  // terms, a mask against channels), an axis of 1 on both sides, a scalar, and equal shapes
  const pairs: [number[], number[]][] = [
    [[2, 3, 5, 4], [2, 3, 5, 1]], [[1, 2, 4, 1, 3], [1, 2, 1, 4, 3]], [[1, 2, 4, 4, 3], [4, 4, 1]], [[2, 1, 5], [1, 4, 1]],
    [[3, 1], [3, 6]], [[2, 3], [1]], [[1, 1, 1, 1], [2, 3, 1, 4]], [[2, 3], [2, 3]], [[1, 7], [5, 1]],
    // a suffix of the other's shape (a bias against its rows): summed down the leading axes
    [[4, 6], [6]], [[3], [2, 4, 3]], [[2, 5, 3], [5, 3]],
    // from 4096 entries an op that broadcasts nothing runs on the host too: equal shapes, a suffix, a scalar
    [[4, 33, 32], [4, 33, 32]], [[64, 65], [65]], [[], [4, 1100]],
  ];

  it('equals tfjs\'s op and its gradients bit for bit, NaN and ±∞ included, leaving nothing behind', async () => {
    for (const [sa, sb] of pairs) for (const op of OPS) {
      const n = (s: number[]) => s.reduce((x, y) => x * y, 1);
      const a = tf.tensor(withNonFinite(n(sa), n(sa)), sa);
      // b's entries kept away from 0, so that a quotient's gradient stays finite where a's is
      const b = tf.tensor(seededUniform(n(sb) + 7, n(sb), 0.5, 2), sb);
      const f = (x: tf.Tensor, y: tf.Tensor) => TF_OPS[op](x, y);
      const want = f(a, b);
      const w = tf.tensor(seededUniform(3, want.size), want.shape);
      // a weight per output entry: the gradients of Σ w ∘ op(a, b)
      const wantGrads = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(f(x, y), w)))([a, b]);
      const expected = await Promise.all([want, ...wantGrads].map(async (t) => Array.from(await t.data())));
      await expectNoLeaks(async () => {
        const got = broadcastBinary(op, a, b);
        expect(got.shape, `${op} ${sa} ${sb}`).toEqual(want.shape);
        expect(Array.from(await got.data()), `${op} ${sa} ${sb}`).toEqual(expected[0]);
        const grads = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(broadcastBinary(op, x, y), w)))([a, b]);
        for (const [i, g] of grads.entries()) expect(Array.from(await g.data()), `d${'ab'[i]} of ${op} ${sa} ${sb}`).toEqual(expected[i + 1]);
        tf.dispose([got, ...grads]);
      });
      tf.dispose([a, b, want, w, ...wantGrads]);
    }
  });

  it('is broadcast.<op>, and launches no tfjs op on cpu where it broadcasts an axis of 1', async () => {
    const [a, b] = [tf.tensor4d(seededUniform(1, 24), [2, 3, 1, 4]), tf.tensor3d(seededUniform(2, 15), [3, 5, 1])];
    for (const op of OPS) {
      const [x, y] = [broadcast[op](a, b), broadcastBinary(op, a, b)];
      expect(Array.from(await x.data())).toEqual(Array.from(await y.data()));
      tf.dispose([x, y]);
    }
    const { kernels } = await tf.profile(() => broadcast.mul(a, b));
    if (backend === 'cpu') expect(kernels.map((k) => k.name)).not.toContain('Multiply');
    else expect(kernels.map((k) => k.name)).toEqual(['Multiply']);
    tf.dispose([a, b]);
  });

  it('multiplies equal shapes on the host on cpu from 4096 entries, with tfjs\'s Multiply below and elsewhere', async () => {
    for (const n of [4095, 4096]) {
      const [a, b] = [tf.ones([n, 1]), tf.ones([n, 1])];
      const { kernels } = await tf.profile(() => broadcast.mul(a, b));
      const onHost = backend === 'cpu' && n >= 4096;
      if (onHost) expect(kernels.map((k) => k.name), `${n} entries`).not.toContain('Multiply');
      else expect(kernels.map((k) => k.name), `${n} entries`).toEqual(['Multiply']);
      tf.dispose([a, b]);
    }
  });

  it('sums the gradient of a bias down the rows on the host on cpu, with tfjs\'s Sum elsewhere', async () => {
    // (tfjs-cpu's Sum transposes inside itself, which the profile does not list: its absence is the check)
    const [y, bias, dy] = [tf.ones([4, 6]), tf.ones([6]), tf.ones([4, 6])];
    const { kernels } = await tf.profile(() => tf.grad((b: tf.Tensor) => broadcast.add(y, b))(bias, dy));
    const names = kernels.map((k) => k.name);
    if (backend === 'cpu') expect(names).not.toContain('Sum');
    else expect(names).toContain('Sum');
    tf.dispose([y, bias, dy]);
  });
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'sumAlong', () => {
  it('equals tf.sum along any one axis bit for bit, NaN and ±∞ included, and so does its gradient, leaving nothing behind', async () => {
    const shapes: number[][] = [[2, 3, 5, 4], [1, 2, 4, 4, 3], [7], [3, 1, 2]];
    for (const shape of shapes) for (let axis = -1; axis < shape.length; axis++) {
      const n = shape.reduce((x, y) => x * y, 1);
      const x = tf.tensor(withNonFinite(n + axis, n), shape);
      const want = tf.sum(x, axis);
      const w = tf.tensor(seededUniform(5, want.size), want.shape);
      const wantGrad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.sum(t, axis), w)))(x);
      const [wantValues, wantGradValues] = [Array.from(await want.data()), Array.from(await wantGrad.data())];
      await expectNoLeaks(async () => {
        const got = sumAlong(x, axis);
        expect(got.shape, `${shape} along ${axis}`).toEqual(want.shape);
        expect(Array.from(await got.data()), `${shape} along ${axis}`).toEqual(wantValues);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(sumAlong(t, axis), w)))(x);
        expect(Array.from(await g.data()), `gradient, ${shape} along ${axis}`).toEqual(wantGradValues);
        tf.dispose([got, g]);
      });
      tf.dispose([x, want, w, wantGrad]);
    }
  });

  it('sums on the host on cpu (no Sum, which transposes inside itself), with tfjs\'s Sum elsewhere', async () => {
    const x = tf.ones([2, 3, 4]);
    const { kernels } = await tf.profile(() => sumAlong(x, 1));
    const names = kernels.map((k) => k.name);
    if (backend === 'cpu') expect(names).not.toContain('Sum');
    else expect(names).toContain('Sum');
    x.dispose();
  });
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'copy', () => {
  const sized = (shape: number[], seed: number) => tf.tensor(withNonFinite(seed, shape.reduce((a, b) => a * b, 1)), shape);
  /**
   * `ours` equals `theirs` on `inputs` bit for bit, and so do the gradients of Σ w ∘ output with
   * a weight per output entry, with no tensor left behind.
   */
  async function expectSame(what: string, inputs: tf.Tensor[], ours: (...xs: tf.Tensor[]) => tf.Tensor[], theirs: (...xs: tf.Tensor[]) => tf.Tensor[]) {
    const want = theirs(...inputs);
    const ws = want.map((t, i) => tf.tensor(seededUniform(i + 9, t.size), t.shape));
    const loss = (f: typeof ours) => (...xs: tf.Tensor[]) => tf.addN(f(...xs).map((t, i) => tf.sum(tf.mul(t, ws[i]!))));
    const wantGrads = tf.grads(loss(theirs))(inputs);
    const expected = await Promise.all([...want, ...wantGrads].map(async (t) => Array.from(await t.data())));
    await expectNoLeaks(async () => {
      const got = ours(...inputs);
      expect(got.map((t) => t.shape), what).toEqual(want.map((t) => t.shape));
      for (const [i, t] of got.entries()) expect(Array.from(await t.data()), `${what}: output ${i}`).toEqual(expected[i]);
      const grads = tf.grads(loss(ours))(inputs);
      for (const [i, g] of grads.entries()) expect(Array.from(await g.data()), `${what}: gradient ${i}`).toEqual(expected[want.length + i]);
      tf.dispose([...got, ...grads]);
    });
    tf.dispose([...inputs, ...want, ...ws, ...wantGrads]);
  }

  it('slices as tf.slice, off the contiguous case and on it, its gradient too', async () => {
    const cases: [number[], number[], number[]][] = [
      [[2, 3, 5, 4], [0, 1, 0, 0], [-1, 2, -1, -1]], [[2, 3, 5, 4], [1, 0, 2, 1], [1, 3, 2, 2]], [[2, 3, 5, 4], [0, 0, 0, 3], [2, 3, 5, 1]],
      [[2, 3, 5, 4], [1, 0, 0, 0], [1, -1, -1, -1]], [[7], [2], [3]], [[3, 40], [0, 5], [3, 30]],
    ];
    for (const [i, [shape, begin, size]] of cases.entries()) {
      await expectSame(`slice ${shape} at ${begin} of ${size}`, [sized(shape, i)], (x) => [copy.slice(x!, begin, size)], (x) => [tf.slice(x!, begin, size)]);
    }
  });

  it('pads with zeros as tf.pad, its gradient too', async () => {
    const cases: [number[], [number, number][]][] = [
      [[2, 3, 4], [[0, 0], [1, 2], [0, 0]]], [[2, 3, 4], [[1, 0], [0, 0], [0, 3]]], [[5], [[2, 1]]], [[2, 3], [[0, 0], [0, 0]]],
    ];
    for (const [i, [shape, paddings]] of cases.entries()) {
      await expectSame(`pad ${shape} by ${JSON.stringify(paddings)}`, [sized(shape, i)], (x) => [copy.pad(x!, paddings)], (x) => [tf.pad(x!, paddings)]);
    }
  });

  it('joins as tf.concat and cuts as tf.split along any axis, their gradients too', async () => {
    const joins: [number[][], number][] = [[[[2, 3, 4], [2, 1, 4]], 1], [[[2, 3, 4], [2, 3, 2], [2, 3, 1]], -1], [[[1, 3], [2, 3]], 0]];
    for (const [i, [shapes, axis]] of joins.entries()) {
      await expectSame(`concat ${JSON.stringify(shapes)} along ${axis}`, shapes.map((s, j) => sized(s, 10 * i + j)),
        (...xs) => [copy.concat(xs, axis)], (...xs) => [tf.concat(xs, axis)]);
    }
    const cuts: [number[], number | number[], number][] = [[[2, 6, 4], [1, 2, 3], 1], [[2, 3, 4], 2, -1], [[4, 3], [3, 1], 0]];
    for (const [i, [shape, sizes, axis]] of cuts.entries()) {
      await expectSame(`split ${shape} into ${sizes} along ${axis}`, [sized(shape, 20 + i)], (x) => copy.split(x!, sizes, axis), (x) => tf.split(x!, sizes, axis));
    }
  });

  it('launches no Slice, PadV2 or SplitV on cpu, forward or backward, and tfjs\'s ops elsewhere', async () => {
    const x = tf.ones([2, 3, 4]);
    const f = (t: tf.Tensor) => tf.add(tf.sum(copy.concat([copy.slice(t, [0, 1, 0], [2, 2, 4]), copy.pad(t, [[0, 0], [1, 0], [0, 0]])], 1)),
      tf.sum(copy.split(t, [1, 2], 1)[1]!));
    const { kernels } = await tf.profile(() => tf.grad(f)(x));
    const names = kernels.map((k) => k.name);
    if (backend === 'cpu') for (const name of ['Slice', 'PadV2', 'SplitV']) expect(names).not.toContain(name);
    else expect(names).toEqual(expect.arrayContaining(['Slice', 'PadV2']));
    x.dispose();
  });
});
