import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
// the op's own module rather than the barrel: this file tests one op, whatever else is being built
import { dense } from '../src/dense/op.js';
import { columnSums, denseKernel } from '../src/dense/kernel.js';
import { POISON_OUTPUTS_FLAG } from '../src/webgpu/runtime.js';
import {
  denseOracle, erf64, expectWithinBound, geluGradOracle, geluOracle, geluSecondOracle, swishGradOracle, swishOracle, type Matrix,
} from './oracle/dense.js';
import { REFERENCE_BACKENDS, describeOn, expectNoLeaks, launchedPipelines, seededUniform } from './helpers.js';

/*
 * Tolerance: every element of C = op(A)·op(B) + b is a float32 sum of K products and the bias;
 * in any order, fused or not, it lies within γ_{K+1}·(Σ_k |a_ik·b_kj| + |b_j|) of the exact value
 * (γ_n = n·u/(1 − n·u), Higham §3.1), which denseOracle computes beside it in float64. The
 * kernel, the reference and every gradient (each a product of the same kind) are held to it.
 */

const matrix = (t: tf.Tensor, data: Float32Array): Matrix => ({ rows: t.shape[0]!, cols: t.shape[1]!, data });

/** Sizes that reach every path: vec4 and element layouts, 1, 4 or 8 rows per invocation, partial blocks. */
const sizes = fc.record({
  M: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 4, max: 70 })),
  K: fc.oneof(fc.constantFrom(4, 8, 64), fc.integer({ min: 1, max: 40 })),
  N: fc.oneof(fc.constantFrom(4, 12, 64), fc.integer({ min: 1, max: 40 })),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'dense', () => {
  it('equals the float64 oracle within γ_{K+1}, with and without a bias, at any rank', async () => {
    await fc.assert(fc.asyncProperty(sizes, fc.boolean(), async ({ M, K, N, seed }, withBias) => {
      const xs = seededUniform(seed, M * K);
      const ws = seededUniform(seed + 1, K * N);
      const bs = seededUniform(seed + 2, N);
      const x = tf.tensor3d(xs, [1, M, K]);
      const w = tf.tensor2d(ws, [K, N]);
      const b = tf.tensor1d(bs);
      await expectNoLeaks(async () => {
        const y = dense(x, w, withBias ? { bias: b } : {});
        expect(y.shape).toEqual([1, M, N]);
        expectWithinBound(await y.data(), denseOracle({ rows: M, cols: K, data: xs }, { rows: K, cols: N, data: ws }, false, false,
          withBias ? bs : undefined), `dense [${M}, ${K}]·[${K}, ${N}]`);
        y.dispose();
      });
      tf.dispose([x, w, b]);
    }), { numRuns: backend === 'webgpu' ? 40 : 15 });
  });

  it('has the gradients of x·W + b: dy·Wᵀ, xᵀ·dy and the column sums of dy', async () => {
    await fc.assert(fc.asyncProperty(sizes, async ({ M, K, N, seed }) => {
      const xs = seededUniform(seed, M * K);
      const ws = seededUniform(seed + 1, K * N);
      const dys = seededUniform(seed + 3, M * N);
      const [x, w, b, dy] = [tf.tensor2d(xs, [M, K]), tf.tensor2d(ws, [K, N]), tf.zeros([N]) as tf.Tensor1D, tf.tensor2d(dys, [M, N])];
      await expectNoLeaks(async () => {
        const grads = tf.grads((x1, w1, b1) => dense(x1!, w1 as tf.Tensor2D, { bias: b1 as tf.Tensor1D }));
        const [dx, dw, db] = grads([x, w, b], dy);
        const dyM = { rows: M, cols: N, data: dys };
        expectWithinBound(await dx!.data(), denseOracle(dyM, { rows: K, cols: N, data: ws }, false, true), 'dx');
        expectWithinBound(await dw!.data(), denseOracle({ rows: M, cols: K, data: xs }, dyM, true, false), 'dW');
        expectWithinBound(await db!.data(), denseOracle({ rows: M, cols: 1, data: new Float32Array(M).fill(1) }, dyM, true, false), 'db');
        tf.dispose([dx!, dw!, db!]);
      });
      tf.dispose([x, w, b, dy]);
    }), { numRuns: backend === 'webgpu' ? 30 : 10 });
  });

  for (const [activation, oracle] of [['gelu', geluOracle], ['swish', swishOracle]] as const) {
    it(`with activation '${activation}', equals ${activation} of the float64 oracle's product within its bound`, async () => {
      await fc.assert(fc.asyncProperty(sizes, async ({ M, K, N, seed }) => {
        // products of inputs in [-3, 3) spread the pre-activations over the curved part and tails
        const xs = seededUniform(seed, M * K).map((x) => 3 * x);
        const ws = seededUniform(seed + 1, K * N).map((w) => 3 * w / Math.sqrt(K));
        const bs = seededUniform(seed + 2, N);
        const [x, w, b] = [tf.tensor2d(xs, [M, K]), tf.tensor2d(ws, [K, N]), tf.tensor1d(bs)];
        await expectNoLeaks(async () => {
          const y = dense(x, w, { bias: b, activation });
          expectWithinBound(await y.data(), oracle(denseOracle({ rows: M, cols: K, data: xs }, { rows: K, cols: N, data: ws }, false, false, bs)),
            `${activation}(dense [${M}, ${K}]·[${K}, ${N}])`);
          y.dispose();
        });
        tf.dispose([x, w, b]);
      }), { numRuns: backend === 'webgpu' ? 20 : 8 });
    });
  }

  for (const [activation, oracle] of [['gelu', geluGradOracle], ['swish', swishGradOracle]] as const) {
    it(`with activation '${activation}', has the gradient dy·${activation}′(x·W + b)`, async () => {
      // W the identity: the pre-activations are x exactly, so the bound is the derivative's own
      const n = 512;
      const xs = seededUniform(21, n).map((x) => 12 * x);
      const dys = seededUniform(22, n);
      const [x, eye, dy] = [tf.tensor2d(xs, [n / 8, 8]), tf.eye(8) as tf.Tensor2D, tf.tensor2d(dys, [n / 8, 8])];
      await expectNoLeaks(async () => {
        const dx = tf.grad((x1: tf.Tensor) => dense(x1, eye, { activation }))(x, dy);
        expectWithinBound(await dx.data(), oracle(xs, dys), 'dx');
        dx.dispose();
      });
      tf.dispose([x, eye, dy]);
    });
  }

  it('names the op, the argument, what it expected and what it received', () => {
    const x = tf.zeros([2, 3, 8]);
    const w = tf.zeros([8, 5]) as tf.Tensor2D;
    expect(() => dense(x, tf.zeros([7, 5]) as tf.Tensor2D)).toThrow(
      "dense: argument 'kernel' must be a float32 tensor [K, N] with K = 8, the last dimension of x [2, 3, 8]; received a float32 tensor of shape [7, 5].");
    expect(() => dense(tf.zeros([2, 8], 'int32'), w)).toThrow(
      "dense: argument 'x' must be a float32 tensor [..., K] of rank ≥ 1; received an int32 tensor of shape [2, 8].");
    expect(() => dense(x, w, { bias: tf.zeros([4]) as tf.Tensor1D })).toThrow(
      "dense: option 'bias' must be a float32 tensor [N] = [5]; received a float32 tensor of shape [4].");
    expect(() => dense(x, w, { activation: 'relu' } as never)).toThrow(
      "dense: option 'activation' must be 'linear', 'gelu' or 'swish'; received 'relu' (a string).");
    expect(() => dense(x, w, { act: 'gelu' } as never)).toThrow(/dense: unknown option 'act'/);
  });

  it('gives the bias (or zeros) for an empty product, and an empty output for no rows', async () => {
    const y = dense(tf.zeros([3, 0]), tf.zeros([0, 2]) as tf.Tensor2D, { bias: tf.tensor1d([1, -2]) });
    expect(Array.from(await y.data())).toEqual([1, -2, 1, -2, 1, -2]);
    expect(dense(tf.zeros([0, 4, 3]), tf.zeros([3, 2]) as tf.Tensor2D).shape).toEqual([0, 4, 2]);
  });
});

describeOn('webgpu', 'dense kernel', () => {
  it('computes op(A)·op(B) for every transpose within γ_K, writing every element', async () => {
    tf.env().set(POISON_OUTPUTS_FLAG, true);
    try {
      await fc.assert(fc.asyncProperty(sizes, fc.boolean(), fc.boolean(), async ({ M, K, N, seed }, tA, tB) => {
        const as = seededUniform(seed, M * K);
        const bs = seededUniform(seed + 1, K * N);
        const a = tf.tensor2d(as, tA ? [K, M] : [M, K]);
        const b = tf.tensor2d(bs, tB ? [N, K] : [K, N]);
        const c = denseKernel(a, b, tA, tB);
        expect(c.shape).toEqual([M, N]);
        expectWithinBound(await c.data(), denseOracle(matrix(a, as), matrix(b, bs), tA, tB), `op(A)·op(B), transposes ${tA}, ${tB}`);
        tf.dispose([a, b, c]);
      }), { numRuns: 60 });
    } finally {
      tf.env().set(POISON_OUTPUTS_FLAG, false);
    }
  });

  it('K not a multiple of 4: the steps past K add nothing, even beside infinite entries of A and B', async () => {
    // the element layout reads its last step of four past K as zeros; a product by a clamped read
    // of row (or column) K − 1 instead would add 0·∞ = NaN where the true sum is ±∞
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      for (const K of [1, 5, 7]) {
        const [M, N] = [3, 5];
        // A's last column: +∞ in row 0; B's last row: +∞ in column 1; every other entry 1
        const as = Float32Array.from({ length: M * K }, (_, i) => tA ? (i === (K - 1) * M ? Infinity : 1) : (i === K - 1 ? Infinity : 1));
        const bs = Float32Array.from({ length: K * N }, (_, i) => tB ? (i === K + K - 1 ? Infinity : 1) : (i === (K - 1) * N + 1 ? Infinity : 1));
        const a = tf.tensor2d(as, tA ? [K, M] : [M, K]);
        const b = tf.tensor2d(bs, tB ? [N, K] : [K, N]);
        const c = denseKernel(a, b, tA, tB);
        // row 0 and column 1 meet the infinities; every other element is K
        const want = Array.from({ length: M * N }, (_, i) => Math.floor(i / N) === 0 || i % N === 1 ? Infinity : K);
        expect(Array.from(await c.data()), `K = ${K}, transposes ${tA}, ${tB}`).toEqual(want);
        tf.dispose([a, b, c]);
      }
    }
  });

  it('sums columns in one launch without a ones tensor, any M and N, and its gradient broadcasts dy', async () => {
    for (const [M, N] of [[1, 4], [7, 12], [5, 3], [64, 9], [8, 12], [64, 64]] as const) {
      const ts = seededUniform(M + N, M * N);
      const t = tf.tensor2d(ts, [M, N]);
      let sums: tf.Tensor | null = null;
      const ran = await launchedPipelines(async () => {
        sums = columnSums(t);
        await sums.data();
      });
      // the vec4 kernel where t's rows and columns are whole quads, else the scalar one
      expect(ran).toEqual([M % 4 === 0 && N % 4 === 0 ? 'DenseVec4' : 'Dense']);
      // 1·t, a product of the kind bounded at the top of the file
      expectWithinBound(await sums!.data(), denseOracle({ rows: 1, cols: M, data: new Float32Array(M).fill(1) }, matrix(t, ts), false, false),
        'column sums');
      const dys = seededUniform(M + N + 1, N);
      const dt = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(columnSums(x as tf.Tensor2D), tf.tensor1d(dys))))(t);
      expect(Array.from(await dt.data())).toEqual(Array.from({ length: M * N }, (_, i) => dys[i % N]));
      tf.dispose([t, sums!, dt]);
    }
  });

  it('forms a bias\'s and the kernel\'s gradients in one launch where the shapes fit, writing every element within γ_{M+1}', async () => {
    tf.env().set(POISON_OUTPUTS_FLAG, true);
    // [M, K, N]: whole quads fit the fused launch; M, K or N not a multiple of 4 takes two
    try {
      for (const [M, K, N] of [[8, 12, 4], [64, 64, 64], [4, 4, 8], [7, 12, 4], [8, 6, 4], [8, 12, 5]] as const) {
        const fits = M % 4 === 0 && K % 4 === 0 && N % 4 === 0;
        const [xs, ws, bs, dys] = [seededUniform(M, M * K), seededUniform(K, K * N), seededUniform(N, N), seededUniform(M + K + N, M * N)];
        const [x, w, b, dy] = [tf.tensor2d(xs, [M, K]), tf.tensor2d(ws, [K, N]), tf.tensor1d(bs), tf.tensor2d(dys, [M, N])];
        let grads: tf.Tensor[] = [];
        const ran = await launchedPipelines(async () => {
          grads = tf.grads((w1, b1) => dense(x, w1 as tf.Tensor2D, { bias: b1 as tf.Tensor1D }))([w, b], dy);
          await Promise.all(grads.map((g) => g.data()));
        });
        const layout = K % 4 === 0 && N % 4 === 0 ? 'DenseVec4' : 'Dense';
        // the forward, then dW with db; else dW (vec4 only where it would have fitted) and db, whose
        // layout is that of dy [M, N]
        expect(ran, `[${M}, ${K}, ${N}]`).toEqual(fits ? [layout, 'DenseWithSums'] : [layout, 'Dense', M % 4 === 0 && N % 4 === 0 ? 'DenseVec4' : 'Dense']);
        const dyM = { rows: M, cols: N, data: dys };
        expectWithinBound(await grads[0]!.data(), denseOracle(matrix(x, xs), dyM, true, false), 'dW');
        expectWithinBound(await grads[1]!.data(), denseOracle({ rows: M, cols: 1, data: new Float32Array(M).fill(1) }, dyM, true, false), 'db');
        tf.dispose([x, w, b, dy, ...grads]);
      }
    } finally {
      tf.env().set(POISON_OUTPUTS_FLAG, false);
    }
  });

  it('is differentiable twice through the fused kernel and bias gradients', async () => {
    // L = Σ (x·W + b)²/2 has dW = xᵀ·y and db = 1ᵀ·y (y = x·W + b, one fused launch); g = ⟨dW, V⟩ + ⟨db, u⟩
    // has dg/dx = y·Vᵀ + (x·V + 1·uᵀ)·Wᵀ. Each of its two terms is a chain of K + 1 then N roundings
    // (y's then the product by Vᵀ; x·V + 1·uᵀ's then the product by Wᵀ; the square's gradient 2·y·½
    // is exact), and the tape adds the two: within γ_{K+N+2} of the chains over absolute values
    // (Higham §3.5).
    const [M, K, N] = [4, 8, 4];
    const [xs, ws, bs, vs, us] = [seededUniform(11, M * K), seededUniform(12, K * N), seededUniform(13, N), seededUniform(14, K * N), seededUniform(15, N)];
    const [x, w, b, v, u] = [tf.tensor2d(xs, [M, K]), tf.tensor2d(ws, [K, N]), tf.tensor1d(bs), tf.tensor2d(vs, [K, N]), tf.tensor1d(us)];
    const dgdx = tf.grad((x1: tf.Tensor) => {
      const [dW, db] = tf.grads((w1, b1) => tf.mul(tf.sum(tf.square(dense(x1, w1 as tf.Tensor2D, { bias: b1 as tf.Tensor1D }))), 0.5))([w, b]);
      return tf.add(tf.sum(tf.mul(dW!, v)), tf.sum(tf.mul(db!, u)));
    })(x);
    const mat = (data: ArrayLike<number>, rows: number, cols: number): Matrix => ({ rows, cols, data });
    const abs = (m: Matrix): Matrix => ({ ...m, data: Array.from(m.data, Math.abs) });
    const ones = mat(new Float32Array(M).fill(1), M, 1);
    const [X, W, V, U] = [mat(xs, M, K), mat(ws, K, N), mat(vs, K, N), mat(us, 1, N)];
    // dg/dx, and the same chains over absolute values: y, y·Vᵀ, x·V + 1·uᵀ, then ·Wᵀ
    const chains = (f: (m: Matrix) => Matrix) => {
      const y = mat(denseOracle(f(X), f(W), false, false, f(mat(bs, 1, N)).data).value, M, N);
      const first = denseOracle(y, f(V), false, true).value;
      const inner = mat(denseOracle(f(X), f(V), false, false).value.map((e, i) => e + denseOracle(ones, f(U), false, false).value[i]!), M, N);
      const second = denseOracle(inner, f(W), false, true).value;
      return first.map((e, i) => e + second[i]!);
    };
    const n = K + N + 2;
    const bound = chains(abs).map((e) => e * n * 2 ** -24 / (1 - n * 2 ** -24));
    expectWithinBound(await dgdx.data(), { value: chains((m) => m), bound }, 'dg/dx');
    tf.dispose([x, w, b, v, u, dgdx]);
  });

  it('is differentiable twice: the gradient of a gradient is the same kernel', async () => {
    // f(x) = Σ (x·W)²/2: df/dx = (x·W)·Wᵀ, whose own derivative along v is v·W·Wᵀ
    const x = tf.tensor2d(seededUniform(5, 3 * 8), [3, 8]);
    const w = tf.tensor2d(seededUniform(6, 8 * 4), [8, 4]);
    const v = tf.tensor2d(seededUniform(7, 3 * 8), [3, 8]);
    const hv = tf.grad((x1: tf.Tensor) => tf.sum(tf.mul(tf.grad((x2: tf.Tensor) => tf.mul(tf.sum(tf.square(dense(x2, w))), 0.5))(x1), v)))(x);
    const want = tf.matMul(tf.matMul(v, w), w, false, true);
    const [got, exp] = [await hv.data(), await want.data()];
    got.forEach((g, i) => expect(Math.abs(g - exp[i]!)).toBeLessThan(1e-5));
    tf.dispose([x, w, v, hv, want]);
  });
});

describeOn('webgpu', 'gelu kernel', () => {
  it('is differentiable twice: v·gelu″ along v', async () => {
    const n = 256;
    const xs = seededUniform(31, n).map((x) => 8 * x);
    const vs = seededUniform(32, n);
    const [x, eye, v] = [tf.tensor2d(xs, [n / 4, 4]), tf.eye(4) as tf.Tensor2D, tf.tensor2d(vs, [n / 4, 4])];
    await expectNoLeaks(async () => {
      const hv = tf.grad((x1: tf.Tensor) => tf.sum(tf.mul(tf.grad((x2: tf.Tensor) => tf.sum(dense(x2, eye, { activation: 'gelu' })))(x1), v)))(x);
      expectWithinBound(await hv.data(), geluSecondOracle(xs, vs), 'v·gelu″');
      hv.dispose();
    });
    tf.dispose([x, eye, v]);
  });

  // the epilogue in the product's kernel (no gradient recorded) and the separate GELU kernel
  // (a tape running) apply the same float32 formula to the same sums: both within the bound of
  // the test above, each checked here against the float64 oracle, in one launch and in two
  it('GELU and swish are the product kernel\'s epilogue where no gradient is recorded, and their own launches where one is', async () => {
    // the recorded path: GELU's kernel, or tfjs's sigmoid and a product
    const recordedBy = { gelu: 'Gelu', swish: 'UnaryOpProgram' };
    for (const [activation, oracle] of [['gelu', geluOracle], ['swish', swishOracle]] as const) {
      for (const [M, K, N] of [[1, 64, 256], [6, 12, 10]] as const) {
        const xs = seededUniform(41, M * K).map((v) => 6 * v - 3);
        const ws = seededUniform(42, K * N).map((v) => 6 * v - 3);
        const bs = seededUniform(43, N);
        const [x, w, b] = [tf.tensor2d(xs, [M, K]), tf.tensor2d(ws, [K, N]), tf.tensor1d(bs)];
        const want = oracle(denseOracle({ rows: M, cols: K, data: xs }, { rows: K, cols: N, data: ws }, false, false, bs));
        const what = `${activation}(dense [${M}, ${K}]·[${K}, ${N}])`;
        let fused: tf.Tensor | null = null;
        const alone = await launchedPipelines(async () => {
          fused = dense(x, w, { bias: b, activation });
          await fused.data();
        });
        expect(alone).toEqual([N % 4 === 0 && K % 4 === 0 ? 'DenseVec4' : 'Dense']);
        expectWithinBound(await fused!.data(), want, `fused ${what}`);
        let recorded: tf.Tensor | null = null;
        const taped = await launchedPipelines(async () => {
          // the forward of a gradient: the tape records the product, then the activation
          const { value, grad } = tf.valueAndGrad((x1: tf.Tensor) => {
            recorded = tf.keep(dense(x1, w, { bias: b, activation }));
            return tf.sum(recorded);
          })(x);
          tf.dispose([value, grad]);
          await recorded!.data();
        });
        expect(taped).toContain(recordedBy[activation]);
        expectWithinBound(await recorded!.data(), want, `recorded ${what}`);
        tf.dispose([x, w, b, fused!, recorded!]);
      }
    }
  });
});

describe('dense oracle', () => {
  it('erf64 agrees with tabulated values, and gelu with x·Φ(x) at known points', () => {
    // Abramowitz and Stegun, Table 7.1
    for (const [x, want] of [[0.5, 0.5204998778], [1, 0.8427007929], [2, 0.9953222650], [3, 0.9999779095]] as const) {
      expect(Math.abs(erf64(x) - want)).toBeLessThan(1e-10);
      expect(Math.abs(erf64(-x) + want)).toBeLessThan(1e-10);
    }
    expect(Math.abs(erf64(4.5) - 0.9999999998033839)).toBeLessThan(1e-12);
    const g = geluOracle({ value: Float64Array.from([0, 1, -1]), bound: new Float64Array(3) }).value;
    expect(Array.from(g).map((y) => Math.round(y * 1e9) / 1e9)).toEqual([0, 0.841344746, -0.158655254]);
  });


  it('agrees with a hand-computed product, transposed or not', () => {
    const a = { rows: 2, cols: 2, data: [1, 2, 3, 4] };
    const b = { rows: 2, cols: 2, data: [5, 6, 7, 8] };
    expect(Array.from(denseOracle(a, b, false, false, [1, 1]).value)).toEqual([20, 23, 44, 51]);
    expect(Array.from(denseOracle(a, b, true, false).value)).toEqual([26, 30, 38, 44]);
    expect(Array.from(denseOracle(a, b, false, true).value)).toEqual([17, 23, 39, 53]);
  });
});
