import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import { denseGroups, groupsFit } from '../src/dense/groups.js';
import { POISON_OUTPUTS_FLAG } from '../src/webgpu/runtime.js';
import { expandCopies } from '../src/webgpu/copies.js';
import { FlashStyleTiledAttention } from '../src/index.js';
import { denseOracle, expectWithinBound, type Matrix } from './oracle/dense.js';
import { describeOn, expectNoLeaks, launchedPipelines, seededUniform } from './helpers.js';

/*
 * Tolerance, as in dense.test.ts: every element is a float32 sum of n products (and a bias); in
 * any order it lies within γ_{n+1}·(Σ|products| + |bias|) of the exact value, which denseOracle
 * computes beside it in float64. The input's gradient Σ_g dY_g·W_gᵀ is one such sum over
 * n = Σ_g N_g products, so its oracle is the product of the concatenations [dY_0 | dY_1 | …] and
 * [W_0 | W_1 | …]ᵀ.
 */

/** The rows of `[rows × cols_g]` matrices side by side. */
function sideBySide(ms: Matrix[]): Matrix {
  const rows = ms[0]!.rows;
  const cols = ms.reduce((s, m) => s + m.cols, 0);
  const data = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let at = r * cols;
    for (const m of ms) for (let c = 0; c < m.cols; c++) data[at++] = m.data[r * m.cols + c]!;
  }
  return { rows, cols, data };
}

/**
 * Sizes that reach the fused kernels and the products one by one. Half are drawn fused (K and
 * every N multiples of 4, and M too, which the gradients' products over M rows need), since
 * independent draws would make all four multiples of 4 in a few runs of a hundred.
 */
const seed = fc.integer({ min: 1, max: 1 << 30 });
const sizes = fc.oneof(
  fc.record({
    M: fc.integer({ min: 1, max: 16 }).map((m) => 4 * m),
    K: fc.constantFrom(4, 8, 64),
    Ns: fc.array(fc.constantFrom(4, 8, 12, 64), { minLength: 2, maxLength: 3 }),
    seed,
  }),
  fc.record({
    M: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 4, max: 70 })),
    K: fc.oneof(fc.constantFrom(4, 8, 64), fc.integer({ min: 1, max: 20 })),
    Ns: fc.array(fc.oneof(fc.constantFrom(4, 8, 12, 64), fc.integer({ min: 1, max: 20 })), { minLength: 2, maxLength: 3 }),
    seed,
  }),
);

describeOn('webgpu', 'denseGroups', () => {
  it('projects x by each kernel within γ_{K+1}, in one launch where K and every N are multiples of 4', async () => {
    tf.env().set(POISON_OUTPUTS_FLAG, true);
    try {
      await fc.assert(fc.asyncProperty(sizes, fc.boolean(), async ({ M, K, Ns, seed }, withBias) => {
        const xs = seededUniform(seed, M * K);
        const ws = Ns.map((N, g) => seededUniform(seed + 1 + g, K * N));
        const bs = Ns.map((N, g) => seededUniform(seed + 5 + g, N));
        const x = tf.tensor3d(xs, [1, M, K]);
        const w = ws.map((d, g) => tf.tensor2d(d, [K, Ns[g]!]));
        const b = bs.map((d) => tf.tensor1d(d));
        const ran = await launchedPipelines(() => expectNoLeaks(async () => {
          const ys = denseGroups(x, w, withBias ? b : undefined, 'auto');
          for (const [g, y] of ys.entries()) {
            expect(y.shape).toEqual([1, M, Ns[g]]);
            expectWithinBound(await y.data(), denseOracle({ rows: M, cols: K, data: xs }, { rows: K, cols: Ns[g]!, data: ws[g]! },
              false, false, withBias ? bs[g] : undefined), `x [${M}, ${K}]·W_${g} [${K}, ${Ns[g]}]`);
          }
          tf.dispose(ys);
        }));
        const fused = K % 4 === 0 && Ns.every((N) => N % 4 === 0);
        expect(ran.filter((l) => l === 'DenseGroups').length).toBe(fused ? 1 : 0);
        expect(ran.filter((l) => l === 'DensePackBias').length).toBe(fused && withBias ? 1 : 0);
        tf.dispose([x, ...w, ...b]);
      }), { numRuns: 40 });
    } finally {
      tf.env().set(POISON_OUTPUTS_FLAG, false);
    }
  });

  it('has the gradients dY_g·W_gᵀ summed, xᵀ·dY_g and the column sums of dY_g, a launch each where they fit', async () => {
    tf.env().set(POISON_OUTPUTS_FLAG, true);
    try {
      await fc.assert(fc.asyncProperty(sizes, async ({ M, K, Ns, seed }) => {
        const xs = seededUniform(seed, M * K);
        const ws = Ns.map((N, g) => seededUniform(seed + 1 + g, K * N));
        const dys = Ns.map((N, g) => seededUniform(seed + 9 + g, M * N));
        const x = tf.tensor2d(xs, [M, K]);
        const w = ws.map((d, g) => tf.tensor2d(d, [K, Ns[g]!]));
        const b = Ns.map((N) => tf.zeros([N]) as tf.Tensor1D);
        const dy = dys.map((d, g) => tf.tensor2d(d, [M, Ns[g]!]));
        const G = Ns.length;
        const ran = await launchedPipelines(() => expectNoLeaks(async () => {
          // Σ_g ⟨y_g, dY_g⟩ has the gradients of the products with output gradients dY_g
          const f = (...args: tf.Tensor[]) => tf.addN(denseGroups(args[0]!, args.slice(1, 1 + G) as tf.Tensor2D[],
            args.slice(1 + G) as tf.Tensor1D[], 'auto').map((y, g) => tf.sum(tf.mul(y, dy[g]!))));
          const grads = tf.grads(f)([x, ...w, ...b]);
          const dyM = dys.map((data, g): Matrix => ({ rows: M, cols: Ns[g]!, data }));
          const wM = ws.map((data, g): Matrix => ({ rows: K, cols: Ns[g]!, data }));
          expectWithinBound(await grads[0]!.data(), denseOracle(sideBySide(dyM), sideBySide(wM), false, true), 'dx');
          for (let g = 0; g < G; g++) {
            expectWithinBound(await grads[1 + g]!.data(), denseOracle({ rows: M, cols: K, data: xs }, dyM[g]!, true, false), `dW_${g}`);
            expectWithinBound(await grads[1 + G + g]!.data(),
              denseOracle({ rows: M, cols: 1, data: new Float32Array(M).fill(1) }, dyM[g]!, true, false), `db_${g}`);
          }
          tf.dispose(grads);
        }));
        if (K % 4 === 0 && Ns.every((N) => N % 4 === 0)) {
          // the forward, and the kernels' and biases' gradients (sums over M rows: fused when M is a multiple of 4); the input's
          expect(ran.filter((l) => l === 'DenseGroups').length).toBe(M % 4 === 0 ? 3 : 1);
          expect(ran.filter((l) => l === 'DenseSum').length).toBe(1);
        } else {
          expect(ran.some((l) => l.startsWith('DenseGroups') || l === 'DenseSum')).toBe(false);
        }
        tf.dispose([x, ...w, ...b, ...dy]);
      }), { numRuns: 30 });
    } finally {
      tf.env().set(POISON_OUTPUTS_FLAG, false);
    }
  });

  it('is differentiable twice, through the fused kernels', async () => {
    // f(x) = Σ_g |x·W_g|²/2: df/dx = Σ_g (x·W_g)·W_gᵀ, whose own derivative along v is Σ_g v·W_g·W_gᵀ
    const [M, K, Ns] = [8, 8, [4, 12, 8]];
    const xs = seededUniform(5, M * K);
    const vs = seededUniform(7, M * K);
    const ws = Ns.map((N, g) => seededUniform(20 + g, K * N));
    const x = tf.tensor2d(xs, [M, K]);
    const v = tf.tensor2d(vs, [M, K]);
    const w = ws.map((d, g) => tf.tensor2d(d, [K, Ns[g]!]));
    const f = (x2: tf.Tensor) => tf.mul(tf.addN(denseGroups(x2, w, undefined, 'auto').map((y) => tf.sum(tf.square(y)))), 0.5);
    const ran = await launchedPipelines(async () => {
      const hv = tf.grad((x1: tf.Tensor) => tf.sum(tf.mul(tf.grad(f)(x1), v)))(x);
      // in float32 each v·W_g is within γ_{K+1}·|v|·|W_g| (dense.test.ts), and that error reaches the
      // result through W_gᵀ: the bound adds γ_{K+1}·Σ_g (|v|·|W_g|)·|W_g|ᵀ to the second product's own
      const abs = (d: ArrayLike<number>) => Float64Array.from(d, Math.abs);
      const product = (data: ArrayLike<number>) => ws.map((d, g) =>
        denseOracle({ rows: M, cols: K, data }, { rows: K, cols: Ns[g]!, data: d }, false, false).value);
      const wT = (f: (d: ArrayLike<number>) => ArrayLike<number>) => sideBySide(ws.map((d, g) => ({ rows: K, cols: Ns[g]!, data: f(d) })));
      const byRows = (ds: Float64Array[]) => sideBySide(ds.map((data, g) => ({ rows: M, cols: Ns[g]!, data })));
      const want = denseOracle(byRows(product(vs)), wT((d) => d), false, true);
      const carried = denseOracle(byRows(ws.map((d, g) => denseOracle({ rows: M, cols: K, data: abs(vs) },
        { rows: K, cols: Ns[g]!, data: abs(d) }, false, false).value)), wT(abs), false, true).value;
      const gammaK = ((K + 1) * 2 ** -24) / (1 - (K + 1) * 2 ** -24);
      expectWithinBound(await hv.data(), { value: want.value, bound: want.bound.map((b, i) => b + gammaK * carried[i]!) }, 'hv');
      hv.dispose();
    });
    expect(ran).toContain('DenseSum');
    expect(ran).toContain('DenseGroups');
    tf.dispose([x, v, ...w]);
  });

  it('leaves no tensor behind when only the input\'s gradient is asked for', async () => {
    const x = tf.tensor2d(seededUniform(3, 8 * 8), [8, 8]);
    const w = [4, 8].map((N, g) => tf.tensor2d(seededUniform(30 + g, 8 * N), [8, N]));
    const b = [4, 8].map((N) => tf.ones([N]) as tf.Tensor1D);
    await expectNoLeaks(async () => {
      const [dx] = tf.grads((x1: tf.Tensor) => tf.addN(denseGroups(x1, w, b, 'auto').map((y) => tf.sum(y))))([x]);
      expect(dx!.shape).toEqual([8, 8]);
      dx!.dispose();
    });
    tf.dispose([x, ...w, ...b]);
  });

  it('runs an attention layer\'s query, key and value projections as one launch', async () => {
    const layer = new FlashStyleTiledAttention({ numHeads: 2 });
    // 16 tokens: the tiled forward (8 or fewer queries take the split-K decode)
    const x = tf.randomNormal([2, 16, 16]) as tf.Tensor3D;
    layer.apply(x);
    const ran = await launchedPipelines(async () => {
      const y = layer.apply(x) as tf.Tensor;
      await y.data();
      y.dispose();
    });
    // the fused q, k, v (their biases packed once, with the weights: no pack launch where no
    // gradient is recorded), the attention, the output projection
    expect(ran).toEqual(['DenseGroups', expect.stringMatching(/^FlashAttentionForward/), 'DenseVec4']);
    layer.dispose();
    x.dispose();
  });
});

it('groupsFit takes 2 or 3 products read as vec4 rows', () => {
  expect(groupsFit([5, 8], [[8, 4], [8, 12]], false)).toBe(true);
  expect(groupsFit([5, 8], [[8, 4]], false)).toBe(false);
  expect(groupsFit([5, 8], [[8, 4], [8, 4], [8, 4], [8, 4]], false)).toBe(false);
  expect(groupsFit([5, 6], [[6, 4], [6, 4]], false)).toBe(false);
  expect(groupsFit([5, 8], [[8, 4], [8, 6]], false)).toBe(false);
  // transposed A [K, M]: M must be a multiple of 4 too
  expect(groupsFit([8, 5], [[8, 4], [8, 4]], true)).toBe(false);
  expect(groupsFit([8, 12], [[8, 4], [8, 4]], true)).toBe(true);
});

it('expandCopies writes a marked line once per copy and a marked block whole, once per copy, and refuses a broken block', () => {
  expect(expandCopies('var w$: f32;\nlet x = 1;', 2)).toBe('var w0: f32;\nvar w1: f32;\nlet x = 1;');
  expect(expandCopies('a;\n  // $ {\n  let b$ = c$;\n  d;\n  // $ }\ne$;', 3))
    .toBe('a;\n  let b0 = c0;\n  d;\n  let b1 = c1;\n  d;\n  let b2 = c2;\n  d;\ne0;\ne1;\ne2;');
  expect(expandCopies('x$;', 1)).toBe('x0;');
  // a comment outside a block is kept once, `$` and all
  expect(expandCopies('// reads w$\nw$;', 2)).toBe('// reads w$\nw0;\nw1;');
  expect(() => expandCopies('// $ {\na$;', 2)).toThrow("expandCopies: a block opened with '// $ {' is never closed.");
  expect(() => expandCopies('a$;\n// $ }', 2)).toThrow("expandCopies: '// $ }' where no block is open.");
  expect(() => expandCopies('// $ {\n// $ {\n// $ }', 2)).toThrow("expandCopies: '// $ {' where a block is open.");
});
