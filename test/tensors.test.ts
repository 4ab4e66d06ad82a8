// src/tensors.ts's detached (the same values, off the gradient tape, its own reference to the
// data), the int and gather helpers that stand in for tfjs-wasm's faulty kernels, and matMul,
// which runs wasm's large batched products batch by batch, and expNonPositive, which runs wasm's
// exponentials of non-positive numbers through its Sigmoid, and enteringStates, the doubling
// scan across chunks that the webgl paths of SelectiveSSM and GatedLinearAttention share, and
// reverseCumsum.
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { clampInts, detached, enteringStates, expNonPositive, gatherRows, matMul, reverseCumsum } from '../src/tensors.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, expectNoLeaks, maxAbsDiff, seededUniform, values } from './helpers.js';

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'detached', () => {
  it('holds x\'s values, gives no gradient, and outlives x or dies before it without freeing the other', async () => {
    const x = tf.tensor1d([1, -2, 3]);
    await expectNoLeaks(async () => {
      // d/da (a·a + a·detached(a)) = 2a + detached(a) = 3a, not 4a
      const g = tf.grad((a: tf.Tensor) => tf.sum(tf.add(tf.mul(a, a), tf.mul(a, detached(a)))))(x);
      expect(Array.from(await g.data())).toEqual([3, -6, 9]);
      g.dispose();
      const d = detached(x);
      expect(Array.from(await d.data())).toEqual([1, -2, 3]);
      d.dispose();
      expect(Array.from(await x.data())).toEqual([1, -2, 3]);
    });
    const y = tf.tensor1d([4, 5]);
    const e = detached(y);
    y.dispose();
    expect(Array.from(await e.data())).toEqual([4, 5]);
    e.dispose();
    x.dispose();
  });
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'gatherRows and clampInts', () => {
  it('gatherRows takes each row\'s own tokens, for any count per row (tfjs-wasm\'s batched gather is right only at B)', async () => {
    const cases = fc.record({
      B: fc.integer({ min: 1, max: 4 }), L: fc.integer({ min: 1, max: 6 }), M: fc.integer({ min: 1, max: 5 }),
      rest: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }), seed: fc.integer({ min: 0, max: 1e6 }),
    });
    await fc.assert(fc.asyncProperty(cases, async ({ B, L, M, rest, seed }) => {
      const inner = rest.reduce((a, b) => a * b, 1);
      const xs = Array.from({ length: B * L * inner }, (_, n) => n - 7);
      const picks = Array.from({ length: B * M }, (_, n) => (seed + 5 * n * n) % L);
      const expected = Array.from({ length: B * M * inner }, (_, n) => {
        const [c, m, b] = [n % inner, Math.floor(n / inner) % M, Math.floor(n / (inner * M))];
        return xs[(b * L + picks[b * M + m]!) * inner + c]!;
      });
      const x = tf.tensor(xs, [B, L, ...rest]);
      const indices = tf.tensor2d(picks, [B, M], 'int32');
      await expectNoLeaks(async () => {
        const out = gatherRows(x, indices);
        expect(out.shape).toEqual([B, M, ...rest]);
        expect(Array.from(await out.data())).toEqual(expected);
        out.dispose();
      });
      tf.dispose([x, indices]);
    }), { numRuns: 30 });
  });

  it('clampInts clamps int32 at both ends (tfjs-wasm\'s ClipByValue clamps only the negative ones)', async () => {
    const x = tf.tensor1d([-(2 ** 31), -5, -1, 0, 3, 4, 5, 2 ** 24 + 1, 2 ** 31 - 1], 'int32');
    await expectNoLeaks(async () => {
      const out = clampInts(x, 0, 4);
      expect(out.dtype).toBe('int32');
      expect(Array.from(await out.data())).toEqual([0, 0, 0, 0, 3, 4, 4, 4, 4]);
      out.dispose();
    });
    x.dispose();
  });
});

/**
 * The float64 product of G batches of a `[m, k]` and b `[k, n]` (each read as its transpose's
 * layout where `ta`, `tb`), flat, and for each entry the sum of its products' magnitudes.
 */
function product64(a: Float32Array, b: Float32Array, G: number, m: number, k: number, n: number, ta: boolean, tb: boolean) {
  const at = (g: number, i: number, p: number) => a[g * m * k + (ta ? p * m + i : i * k + p)]!;
  const bt = (g: number, p: number, j: number) => b[g * k * n + (tb ? j * k + p : p * n + j)]!;
  const c = new Float64Array(G * m * n);
  const mags = new Float64Array(G * m * n);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        let mag = 0;
        for (let p = 0; p < k; p++) {
          sum += at(g, i, p) * bt(g, p, j);
          mag += Math.abs(at(g, i, p) * bt(g, p, j));
        }
        c[(g * m + i) * n + j] = sum;
        mags[(g * m + i) * n + j] = mag;
      }
    }
  }
  return { c, mags };
}

// [2, 3] batches; 72 × 64 × 72 multiply-adds a batch take wasm's batch-by-batch path, 8 × 5 × 6 tfjs's
// m of 7: the host product's rows, four at a time, end in a part of four
const SIZES = [{ m: 72, k: 64, n: 72 }, { m: 8, k: 5, n: 6 }, { m: 7, k: 3, n: 5 }];
const TRANSPOSES = [[false, false], [false, true], [true, false], [true, true]] as const;

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'matMul', () => {
  it('equals the float64 product, and its gradients the float64 ones, for every transpose', async () => {
    // rank 2 too: a product without transposes is tfjs's on wasm, its gradient's products matMul's
    for (const [batch, G] of [[[2, 3], 6], [[], 1]] as const) for (const { m, k, n } of SIZES) {
      for (const [ta, tb] of TRANSPOSES) {
        const av = seededUniform(m * 7 + k, G * m * k);
        const bv = seededUniform(n * 11 + k, G * k * n);
        const wv = seededUniform(5, G * m * n);
        const a = tf.tensor(av, [...batch, ...(ta ? [k, m] : [m, k])]);
        const b = tf.tensor(bv, [...batch, ...(tb ? [n, k] : [k, n])]);
        const w = tf.tensor(wv, [...batch, m, n]);
        await expectNoLeaks(async () => {
          const [c, da, db] = tf.tidy(() => [
            matMul(a, b, ta, tb),
            ...tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(matMul(x, y, ta, tb), w)))([a, b]),
          ]);
          const what = `${m}×${k}×${n} transposes ${ta} ${tb}`;
          expect(c!.shape, what).toEqual([...batch, m, n]);
          // each sum of k products is within γ_k = k·ε of the sum of their magnitudes, in any order
          const want = product64(av, bv, G, m, k, n, ta, tb);
          const got = await values(c!);
          want.c.forEach((x, i) => expect(Math.abs(got[i]! - x), `${what} c[${i}]`).toBeLessThanOrEqual(k * EPS32 * want.mags[i]! + 1e-30));
          // dA = W·Bᵀ (as A is laid out), dB = Aᵀ·W: sums of n and of m products
          const dA = ta ? product64(bv, wv, G, k, n, m, tb, true) : product64(wv, bv, G, m, n, k, false, !tb);
          const dB = tb ? product64(wv, av, G, n, m, k, true, ta) : product64(av, wv, G, k, m, n, !ta, false);
          const gotA = await values(da!);
          const gotB = await values(db!);
          expect([gotA.length, gotB.length]).toEqual([av.length, bv.length]);
          dA.c.forEach((x, i) => expect(Math.abs(gotA[i]! - x), `${what} dA[${i}]`).toBeLessThanOrEqual(Math.max(m, n) * EPS32 * dA.mags[i]! + 1e-30));
          dB.c.forEach((x, i) => expect(Math.abs(gotB[i]! - x), `${what} dB[${i}]`).toBeLessThanOrEqual(Math.max(m, n) * EPS32 * dB.mags[i]! + 1e-30));
          if (backend === 'cpu') {
            // productOnHost's sums are float64 in the shared axis's order, rounded once: the oracle's, to the bit
            for (const [label, g, w64] of [['c', got, want], ['dA', gotA, dA], ['dB', gotB, dB]] as const) {
              expect(Array.from(g), `${what} ${label} bit for bit`).toEqual(Array.from(Float32Array.from(w64.c)));
            }
          }
          tf.dispose([c!, da!, db!]);
        });
        tf.dispose([a, b, w]);
      }
    }
  });

  it("has second derivatives: the gradient of a gradient equals tf.matMul's", async () => {
    const [m, k, n] = [72, 64, 72];
    const a = tf.tensor(seededUniform(1, 2 * m * k), [2, m, k]);
    const b = tf.tensor(seededUniform(2, 2 * n * k), [2, n, k]);
    // d/da of sum((a·bᵀ)²)'s gradient in a, summed: second order in a
    const second = (mm: typeof matMul) => tf.tidy(() => tf.grad((x: tf.Tensor) =>
      tf.sum(tf.grad((y: tf.Tensor) => tf.sum(tf.square(mm(y, b, false, true))))(x)))(a));
    const [got, want] = [second(matMul), second((x, y, ta, tb) => tf.matMul(x, y, ta, tb))];
    const scale = Math.max(...Array.from(await values(want)).map(Math.abs));
    expect(maxAbsDiff(await values(got), await values(want))).toBeLessThanOrEqual(4 * (k + n) * EPS32 * scale);
    tf.dispose([a, b, got, want]);
  });

  it('on wasm launches only batch-1 products past its threshold, and batched ones below it; on cpu none (its products run on the host)', async () => {
    const shapesOf = async (m: number, k: number, n: number) => {
      const a = tf.ones([3, m, k]);
      const b = tf.ones([3, n, k]);
      const { kernels } = await tf.profile(() => matMul(a, b, false, true));
      tf.dispose([a, b]);
      // a 2-D product is one batch
      return kernels.filter((x) => x.name === 'BatchMatMul').map(({ inputShapes: [s] }) => (s!.length === 2 ? 1 : s![0]));
    };
    const [large, small] = [await shapesOf(72, 64, 72), await shapesOf(8, 5, 6)];
    expect(large).toEqual(backend === 'wasm' ? [1, 1, 1] : backend === 'cpu' ? [] : [3]);
    expect(small).toEqual(backend === 'cpu' ? [] : [3]);
  });
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'expNonPositive', () => {
  it('is e^x within 4 float32 ulps for x ≤ 0 (tf.exp\'s own bound on webgpu), exactly 1 at 0, 0 at −10³⁰ and −∞; its gradient e^x too', async () => {
    // x ≤ 0 down to −87 (e^x still normal), with 0, tiny and integer values among them
    const xs = Float32Array.from([0, -0, -1e-30, -1e-7, -1, -0.5, -87, ...seededUniform(3, 2000, -87, 0), ...seededUniform(4, 2000, -1, 0)]);
    const x = tf.tensor1d(xs);
    const got = await values(expNonPositive(x));
    // relative to e^x in float64, in ulps of 2⁻²³: on wasm the quotient's roundings and σ's own
    // error (4); on cpu Math.exp rounded to float32 (1); on webgpu WGSL's exp, 3 + 2·|x| ulps
    const ulps = (xi: number) => (backend === 'webgpu' ? 3 + 2 * Math.abs(xi) : 4);
    let worst = 0;
    xs.forEach((xi, i) => { worst = Math.max(worst, Math.abs(got[i]! - Math.exp(xi)) / Math.exp(xi) / (ulps(xi) * EPS32)); });
    expect(worst).toBeLessThanOrEqual(1);
    expect(got[0]).toBe(1);
    const special = tf.tensor1d([-1e30, -Infinity, Number.NaN]);
    // NaN as tfjs's own exp has it: NaN on cpu and wasm, ∞ on webgpu (tfjs 4.22)
    expect(Array.from(await values(expNonPositive(special)))).toEqual([0, 0, (await values(tf.exp(special)))[2]]);
    special.dispose();
    const grad = await values(tf.grad((y: tf.Tensor) => tf.sum(expNonPositive(y)))(x));
    let worstGrad = 0;
    xs.forEach((xi, i) => { worstGrad = Math.max(worstGrad, Math.abs(grad[i]! - Math.exp(xi)) / Math.exp(xi) / (ulps(xi) * EPS32)); });
    // the gradient of σ/(1 − σ) in tfjs's own ops (σ′ = σ(1 − σ), the quotient rule): a few roundings more
    expect(worstGrad).toBeLessThanOrEqual(4);
    x.dispose();
  });

  it('launches no Exp on wasm, and only Exp elsewhere', async () => {
    const x = tf.tensor1d([-1, -2]);
    const { kernels } = await tf.profile(() => expNonPositive(x));
    const names = kernels.map((k) => k.name);
    if (backend === 'wasm') expect(names).not.toContain('Exp');
    else expect(names).toEqual(['Exp']);
    x.dispose();
  });
});

for (const backend of REFERENCE_BACKENDS) describeOn(backend, 'enteringStates', () => {
  /**
   * s[i] = decay[i−1]·s[i−1] + own[i−1] in float64, one chunk after another. Against it, each state
   * is a sum of ≤ n terms, each a product of ≤ n decays: the doubling forms it in ≤ 2n + 2·log₂ n
   * float32 roundings, bounded as (3n + 2)·ε times the sum of the terms' magnitudes.
   */
  it('equals the chunk-by-chunk recurrence for every n, either way, with a decay that broadcasts, and leaves nothing behind', async () => {
    const props = [fc.integer({ min: 1, max: 20 }), fc.boolean(), fc.boolean(), fc.integer({ min: 0, max: 1e6 })] as const;
    await fc.assert(fc.asyncProperty(...props, async (n, broadcast, fromEnd, seed) => {
      const [B, E, N] = [2, 3, 2];
      const own = seededUniform(seed, B * n * E * N, -1, 1);
      const decay = seededUniform(seed + 1, B * n * E * (broadcast ? 1 : N), 0, 1.2);
      const h0 = seededUniform(seed + 2, B * E * N, -1, 1);
      const decayAt = (b: number, i: number, e: number, j: number) => decay[((b * n + i) * E + e) * (broadcast ? 1 : N) + (broadcast ? 0 : j)]!;
      const want = new Float64Array(B * n * E * N);
      const mag = new Float64Array(B * n * E * N);
      for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) for (let j = 0; j < N; j++) {
        let s = h0[(b * E + e) * N + j]!;
        let m = Math.abs(s);
        for (let step = 0; step < n; step++) {
          const i = fromEnd ? n - 1 - step : step;
          const at = ((b * n + i) * E + e) * N + j;
          want[at] = s;
          mag[at] = m;
          s = decayAt(b, i, e, j) * s + own[at]!;
          m = decayAt(b, i, e, j) * m + Math.abs(own[at]!);
        }
      }
      const held = tf.memory().numTensors;
      const got = tf.tidy(() => enteringStates(tf.tensor4d(own, [B, n, E, N]), tf.tensor4d(decay, [B, n, E, broadcast ? 1 : N]),
        tf.tensor3d(h0, [B, E, N]), fromEnd));
      expect(tf.memory().numTensors).toBe(held + 1);
      expect(got.shape).toEqual([B, n, E, N]);
      const v = await values(got);
      got.dispose();
      for (let i = 0; i < v.length; i++) expect(Math.abs(v[i]! - want[i]!), `entry ${i}`).toBeLessThanOrEqual((3 * n + 2) * EPS32 * mag[i]!);
    }), { numRuns: 30 });
  });
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'reverseCumsum', () => {
  it('equals reverse · cumsum · reverse bit for bit along any axis, across a change of shape, leaving nothing behind', async () => {
    // the second shape of each axis follows the first: tfjs-webgpu's own reverse cumsum keeps the
    // first one's axis length (a chunk of 32, then the remainder)
    const shapes: [number[], number][] = [[[2, 32, 3], 1], [[2, 5, 3], 1], [[3, 4, 32], 2], [[3, 4, 7], 2], [[6], 0]];
    for (const [shape, axis] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = tf.tensor(seededUniform(n + axis, n), shape);
      const want = tf.reverse(tf.cumsum(tf.reverse(x, axis), axis), axis);
      await expectNoLeaks(async () => {
        const got = reverseCumsum(x, axis);
        expect(got.shape).toEqual(shape);
        expect(Array.from(await got.data())).toEqual(Array.from(await want.data()));
        got.dispose();
      });
      tf.dispose([x, want]);
    }
  });
});
