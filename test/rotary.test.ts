import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Implementation } from '../src/validate.js';
// the op's own module rather than the barrel: this file tests one op, whatever else is being built
import { resolveRotaryConfig, rotary, rotaryQK, segmentPositions, type RotaryOptions } from '../src/rotary/op.js';
import {
  pairOf, positionOf, rotaryOracle, thetaOracle, type RotaryOracleOptions, type RotaryShape,
} from './oracle/rotary.js';
import {
  REFERENCE_BACKENDS, describeOn, expectNoLeaks, maxAbsDiff, seededUniform, uploadsDuring, values, mulberry32,
} from './helpers.js';

/** float32's unit roundoff: a correctly rounded result is within u of the exact one, relatively. */
const U = 2 ** -24;

/*
 * Tolerance (docs/rotary.md, "Accuracy"). For one pair (x_a, x_b) at position p, the float32 op
 * computes ŷ_a = fl(fl(x_a·ĉ) − fl(x_b·ŝ)) (and ŷ_b alike) with
 *  - θ̂_m = fl(θ_m): relative error ≤ u;
 *  - â = fl(p·θ̂_m), p exact (an integer ≤ 2^24): |â − p·θ_m| ≤ |p|·θ_m·(2u + u²);
 *  - ĉ, ŝ = cos â, sin â within e_sc absolute: the backend's sine and cosine;
 *  - two products and a sum, each rounded (or fused): ≤ 2u·(1 + e_sc)·(|x_a| + |x_b|) + O(u²).
 * A rotation by a wrong angle moves the pair by at most ‖x‖·|Δφ|, so against the float64 oracle
 *     |ŷ − y| ≤ ‖(x_a, x_b)‖·2.01u·|p|·θ_m + (|x_a| + |x_b|)·(e_sc + 2.01u),
 * the 2.01 covering the O(u²) terms and the oracle's own float64 error (below 1e-15·|p|).
 * At p = 65536 and θ_0 = 1 the first term allows 7.9e-3·‖x‖: float32's angle, not a loose test.
 * e_sc, checked directly by the "sine and cosine" property below: the kernel (webgpu) and the
 * reference (cpu, wasm) compute both alike, by their own reduction (≤ u/2: Cody–Waite with k·C1
 * and k·C2 exact) and Taylor polynomials on |r| ≤ π/4 (truncation < 2e-9, Horner ≤ 2u): 3u. (The
 * backends' own sin, which tf.sin runs, measured 3,200u on [0, π] and 99,000u on [5000, 70000]
 * on webgpu's SwiftShader, and 2·10⁻⁴ absolute on [0, 1] and 6·10⁻³ past 16,000 on webgl's.)
 * Channels ≥ R are copied: tolerance 0. The gradient is the same rotation, by −p·θ, of dy.
 */
const E_SC = 3 * U;

/** The per-element bound above for rotating `x` (a float32 array), 0 for copied channels. */
function rotaryBound(x: ArrayLike<number>, s: RotaryShape, o: RotaryOracleOptions, eSc: number): Float64Array {
  const R = o.rotaryDim ?? s.K;
  const theta = thetaOracle(o.base ?? 10000, R);
  const tol = new Float64Array(x.length);
  for (let b = 0; b < s.B; b++) {
    for (let t = 0; t < s.T; t++) {
      const p = Math.abs(positionOf(o, s.T, b, t));
      for (let h = 0; h < s.H; h++) {
        const row = ((b * s.T + t) * s.H + h) * s.K;
        for (let m = 0; m < R / 2; m++) {
          const [ia, ib] = pairOf(m, R, o.interleaved ?? false).map((c) => row + c) as [number, number];
          const xa = Math.abs(x[ia]!);
          const xb = Math.abs(x[ib]!);
          tol[ia] = tol[ib] = Math.hypot(xa, xb) * 2.01 * U * p * theta[m]! + (xa + xb) * (eSc + 2.01 * U);
        }
      }
    }
  }
  return tol;
}

/** Asserts |got − want| ≤ tol element by element, naming the worst element (NaN fails). */
function expectWithin(got: ArrayLike<number>, want: ArrayLike<number>, tol: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = -1;
  let excess = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!) - tol[i]!;
    if (Number.isNaN(d)) { worst = i; excess = NaN; break; }
    if (d > excess) { excess = d; worst = i; }
  }
  expect(worst, worst < 0 ? what : `${what}: element ${worst} is ${got[worst]}, the oracle's ${want[worst]}, tolerance ${tol[worst]}`)
    .toBe(-1);
}

type Positions = 'default' | 'scalar' | 'rows' | 'table';

interface Case {
  B: number; T: number; H: number; K: number;
  rotaryDim: number | undefined; interleaved: boolean; base: number;
  positions: Positions; maxPosition: number; seed: number;
}

/**
 * B 1..3, T of 1, odd lengths and past 64 (empty inputs have a test of their own); K from 2 to
 * 128, odd ones too (with an even rotaryDim below); rotaryDim the default K or any even R ≤ K;
 * both layouts; bases of small and long-context models and one barely above 1; positions from
 * the default 0..T−1, an offset, offsets per row or a table, reaching 100, 4096 or 65536.
 */
const cases: fc.Arbitrary<Case> = fc.record({
  B: fc.integer({ min: 1, max: 3 }),
  T: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 20 }).map((v) => 2 * v + 1), fc.integer({ min: 60, max: 90 })),
  H: fc.integer({ min: 1, max: 3 }),
  K: fc.constantFrom(2, 4, 6, 8, 16, 64, 128, 5, 9),
  r: fc.nat(),
  defaultR: fc.boolean(),
  interleaved: fc.boolean(),
  base: fc.constantFrom(10000, 500000, 100, 1.5),
  positions: fc.constantFrom<Positions>('default', 'scalar', 'rows', 'table'),
  maxPosition: fc.constantFrom(100, 4096, 65536),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
}).map(({ r, defaultR, ...c }) => {
  const half = Math.floor(c.K / 2);
  const rotaryDim = defaultR && c.K % 2 === 0 ? undefined : 2 * (1 + (r % half));
  return { ...c, rotaryDim };
});

const shapeOf = (c: Case): RotaryShape => ({ B: c.B, T: c.T, H: c.H, K: c.K });

/** The case's inputs: x, dy, and its positions as the oracle reads them. */
function inputs(c: Case) {
  const s = shapeOf(c);
  const n = s.B * s.T * s.H * s.K;
  const next = mulberry32(c.seed + 7);
  const upTo = (max: number) => Math.floor(next() * (max + 1));
  const o: RotaryOracleOptions = { base: c.base, rotaryDim: c.rotaryDim, interleaved: c.interleaved };
  let offset: number | Int32Array | undefined;
  let positions: Int32Array | undefined;
  if (c.positions === 'scalar') offset = upTo(c.maxPosition - (c.T - 1));
  if (c.positions === 'rows') offset = Int32Array.from({ length: c.B }, () => upTo(c.maxPosition - (c.T - 1)));
  if (c.positions === 'table') positions = Int32Array.from({ length: c.B * c.T }, () => upTo(c.maxPosition));
  if (offset !== undefined) o.offset = offset;
  if (positions) o.positions = positions;
  return { s, o, offset, positions, xs: seededUniform(c.seed, n), dys: seededUniform(c.seed + 1, n) };
}

/** The op's options for a case (tensors the caller disposes). */
function opOptions(c: Case, implementation: Implementation): RotaryOptions {
  const { offset, positions } = inputs(c);
  const opts: RotaryOptions = { base: c.base, interleaved: c.interleaved, implementation };
  if (c.rotaryDim !== undefined) opts.rotaryDim = c.rotaryDim;
  if (typeof offset === 'number') opts.offset = offset;
  if (offset instanceof Int32Array) opts.offset = tf.tensor1d(offset, 'int32');
  if (positions) opts.positions = tf.tensor2d(positions, [c.B, c.T], 'int32');
  return opts;
}

const tensorsOf = (o: RotaryOptions): tf.Tensor[] => [o.offset, o.positions].flatMap((t) => (t instanceof tf.Tensor ? [t] : []));

/** y = rotary(x) and dx = ∂⟨y, dy⟩/∂x through tf.grad. */
async function run(c: Case, implementation: Implementation): Promise<{ y: Float64Array; dx: Float64Array }> {
  const { s, xs, dys } = inputs(c);
  const opts = opOptions(c, implementation);
  const shape = [s.B, s.T, s.H, s.K];
  const [y, dx] = tf.tidy(() => {
    const x = tf.tensor4d(xs, shape as [number, number, number, number]);
    const f = (t: tf.Tensor) => rotary(t as tf.Tensor4D, opts);
    return [f(x), tf.grad(f)(x, tf.tensor4d(dys, shape as [number, number, number, number]))];
  });
  const out = { y: await values(y), dx: await values(dx) };
  tf.dispose([y, dx, ...tensorsOf(opts)]);
  return out;
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'rotary', () => {
  const implementation: Implementation = backend === 'webgpu' ? 'webgpu' : 'reference';
  const eSc = E_SC;

  it(`${implementation} matches the float64 oracle within the derived bound, forward and gradient (tf.grad)`, async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const { s, o, xs, dys } = inputs(c);
      const got = await run(c, implementation);
      expectWithin(got.y, rotaryOracle(xs, s, o), rotaryBound(xs, s, o, eSc), 'y');
      // the gradient of a rotation is the inverse rotation of dy
      expectWithin(got.dx, rotaryOracle(dys, s, o, true), rotaryBound(dys, s, o, eSc), 'dx');
    }), { numRuns: backend === 'webgpu' ? 30 : 20 });
  });

  it('sine and cosine of the float32 angle fl(p·fl(θ)) within e_sc, up to p = 65536 and negative p', async () => {
    // x = (1, 0) in every pair makes y = (cos â, sin â) exactly (products by 1 and 0, a sum with
    // 0), so this isolates the backend's sine and cosine, range reduction included, from the
    // angle's own rounding: the oracle forms â in float32 exactly as §8 does
    const T = 257;
    const K = 64;
    const positions = Int32Array.from({ length: 2 * T }, (_, i) => (i < T ? 65536 - i * 255 : -(i - T) * 256 - 1));
    positions[T - 1] = 0;
    const x = new Float32Array(2 * T * K);
    for (let i = 0; i < 2 * T; i++) for (let m = 0; m < K / 2; m++) x[i * K + m] = 1; // pairs (m, m + K/2)
    const [y] = tf.tidy(() => [rotary(tf.tensor4d(x, [2, T, 1, K]), { positions: tf.tensor2d(positions, [2, T], 'int32'), implementation })]);
    const got = await values(y!);
    y!.dispose();
    const theta = thetaOracle(10000, K).map(Math.fround);
    let worst = 0;
    for (let i = 0; i < 2 * T; i++) {
      for (let m = 0; m < K / 2; m++) {
        const angle = Math.fround(positions[i]! * theta[m]!);
        worst = Math.max(worst, Math.abs(got[i * K + m]! - Math.cos(angle)), Math.abs(got[i * K + m + K / 2]! - Math.sin(angle)));
      }
    }
    expect(worst, `worst sine/cosine error ${worst / U} u`).toBeLessThanOrEqual(eSc);
  });

  it('past |p·θ| = 102,943 the reduction adds at most u·|â| (half an ulp of the angle)', async () => {
    // k = round(â·2/π) ≥ 2^16 makes k·C1 inexact: it rounds once, by at most u·|k·C1| ≤ u·|â|,
    // and k·C2 by u·|k·C2| < 4e-4·u·|â|; the float32 angle itself is already off by that much
    const n = 4096;
    const next = mulberry32(11);
    const positions = Int32Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) * Math.floor(102943 + next() * (2 ** 24 - 102943)));
    const x = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) x[2 * i] = 1;
    const [y] = tf.tidy(() => [rotary(tf.tensor4d(x, [1, n, 1, 2]), { positions: tf.tensor2d(positions, [1, n], 'int32'), implementation })]);
    const got = await values(y!);
    y!.dispose();
    for (let i = 0; i < n; i++) {
      const a = positions[i]!; // θ_0 = 1: the angle is the position, exact
      const tol = eSc + 1.001 * U * Math.abs(a);
      expect(Math.abs(got[2 * i]! - Math.cos(a)), `cos(${a})`).toBeLessThanOrEqual(tol);
      expect(Math.abs(got[2 * i + 1]! - Math.sin(a)), `sin(${a})`).toBeLessThanOrEqual(tol);
    }
  });

  it('preserves the norm of every pair and copies the channels past rotaryDim bit for bit', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const { s, xs } = inputs(c);
      const { y } = await run(c, implementation);
      const R = c.rotaryDim ?? c.K;
      // the angle's error rotates the pair without changing its norm; what remains is the
      // sine/cosine and the arithmetic: ‖ŷ − R(â)x‖ ≤ √2·(|x_a| + |x_b|)·(e_sc + 2.01u)
      for (let row = 0; row < s.B * s.T * s.H; row++) {
        const at = row * s.K;
        for (let m = 0; m < R / 2; m++) {
          const [ia, ib] = pairOf(m, R, c.interleaved).map((i) => at + i) as [number, number];
          const before = Math.hypot(xs[ia]!, xs[ib]!);
          const tol = Math.SQRT2 * (Math.abs(xs[ia]!) + Math.abs(xs[ib]!)) * (eSc + 2.01 * U);
          expect(Math.abs(Math.hypot(y[ia]!, y[ib]!) - before), `row ${row}, pair ${m}`).toBeLessThanOrEqual(tol);
        }
        for (let k = R; k < s.K; k++) expect(y[at + k]).toBe(xs[at + k]);
      }
    }), { numRuns: 10 });
  });

  it('q·k after rotation depends on the positions only through their difference, pair by pair as the layout says', async () => {
    // ⟨R(p_q·θ)q, R(p_k·θ)k⟩ = Σ_m (q_a·k_a + q_b·k_b)·cos(d·θ_m) + (q_b·k_a − q_a·k_b)·sin(d·θ_m),
    // d = p_k − p_q, over the layout's pairs (a, b), plus the copied channels' q·k. Shifting both
    // positions by any s gives the same: both are checked against this float64 value, which a
    // wrong pairing or a wrong θ_m misses by O(1).
    await fc.assert(fc.asyncProperty(cases, fc.integer({ min: 0, max: 60000 }), async (c0, shift) => {
      const c = { ...c0, positions: 'table' as const, maxPosition: 4096 };
      const { s, xs: qs, dys: ks } = inputs(c);
      const pq = Int32Array.from({ length: s.B * s.T }, (_, i) => (i * 7919) % 4096);
      const pk = Int32Array.from({ length: s.B * s.T }, (_, i) => (i * 104729 + 13) % 4096);
      const R = c.rotaryDim ?? c.K;
      const theta = thetaOracle(c.base, R);
      const rows = s.B * s.T * s.H;
      const opts = (p: Int32Array) => ({ positions: p, base: c.base, rotaryDim: c.rotaryDim, interleaved: c.interleaved });
      for (const sh of [0, shift]) {
        const [pqs, pks] = [pq, pk].map((p) => p.map((v) => v + sh)) as [Int32Array, Int32Array];
        const boundQ = rotaryBound(qs, s, opts(pqs), eSc);
        const boundK = rotaryBound(ks, s, opts(pks), eSc);
        const [q2, k2] = tf.tidy(() => {
          const common = { base: c.base, rotaryDim: c.rotaryDim, interleaved: c.interleaved, implementation };
          const shape = [s.B, s.T, s.H, s.K] as [number, number, number, number];
          return [rotary(tf.tensor4d(qs, shape), { ...common, positions: tf.tensor2d(pqs, [s.B, s.T], 'int32') }),
            rotary(tf.tensor4d(ks, shape), { ...common, positions: tf.tensor2d(pks, [s.B, s.T], 'int32') })];
        });
        const [qr, kr] = [await values(q2!), await values(k2!)];
        tf.dispose([q2, k2]);
        for (let i = 0; i < rows; i++) {
          const at = i * s.K;
          const d = pk[Math.floor(i / s.H)]! - pq[Math.floor(i / s.H)]!;
          let want = 0;
          let dot = 0;
          let err = 0;
          for (let m = 0; m < R / 2; m++) {
            const [a, b] = pairOf(m, R, c.interleaved).map((j) => at + j) as [number, number];
            want += (qs[a]! * ks[a]! + qs[b]! * ks[b]!) * Math.cos(d * theta[m]!) + (qs[b]! * ks[a]! - qs[a]! * ks[b]!) * Math.sin(d * theta[m]!);
          }
          for (let j = R; j < s.K; j++) want += qs[at + j]! * ks[at + j]!;
          for (let j = 0; j < s.K; j++) {
            dot += qr[at + j]! * kr[at + j]!;
            // |q̂k̂ − qk| ≤ |k|·δq + |q|·δk + δq·δk with |q|, |k| ≤ ‖pair‖ ≤ √2 (inputs in [−1, 1])
            err += Math.SQRT2 * (boundQ[at + j]! + boundK[at + j]!) + boundQ[at + j]! * boundK[at + j]!;
          }
          expect(Math.abs(dot - want), `shift ${sh}, row ${i}: ${dot} vs ${want}`).toBeLessThanOrEqual(err);
        }
      }
    }), { numRuns: 10 });
  });

  it('an offset, offsets per row and the table of the same positions give the same result bit for bit', async () => {
    await fc.assert(fc.asyncProperty(cases, fc.integer({ min: 0, max: 60000 }), async (c, offset) => {
      const { s, xs } = inputs(c);
      const shape = [s.B, s.T, s.H, s.K] as [number, number, number, number];
      const table = Int32Array.from({ length: s.B * s.T }, (_, i) => offset + (i % s.T));
      const outs = tf.tidy(() => {
        const x = tf.tensor4d(xs, shape);
        const common = { base: c.base, rotaryDim: c.rotaryDim, interleaved: c.interleaved, implementation };
        return [
          rotary(x, { ...common, offset }),
          rotary(x, { ...common, offset: tf.fill([s.B], offset, 'int32') as tf.Tensor1D }),
          rotary(x, { ...common, positions: tf.tensor2d(table, [s.B, s.T], 'int32') }),
        ];
      });
      const [a, b, t] = await Promise.all(outs.map(values));
      tf.dispose(outs);
      expect(maxAbsDiff(a!, b!)).toBe(0);
      expect(maxAbsDiff(a!, t!)).toBe(0);
    }), { numRuns: 6 });
  });

  it('the interleaved layout is the default layout with the channels of each pair permuted', async () => {
    // GPT-J's pairs (2m, 2m + 1) are NeoX's (m, m + R/2) after moving channel 2m to m and 2m + 1 to m + R/2
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const { s, xs } = inputs(c);
      const R = c.rotaryDim ?? c.K;
      const perm = Array.from({ length: s.K }, (_, k) => (k >= R ? k : k < R / 2 ? 2 * k : 2 * (k - R / 2) + 1));
      const outs = tf.tidy(() => {
        const x = tf.tensor4d(xs, [s.B, s.T, s.H, s.K]);
        const common = { base: c.base, rotaryDim: c.rotaryDim, implementation, offset: 1234 };
        const idx = tf.tensor1d(perm, 'int32');
        const inv = tf.tensor1d(perm.map((_, k) => perm.indexOf(k)), 'int32');
        const neox = rotary(tf.gather(x, idx, 3) as tf.Tensor4D, { ...common, interleaved: false });
        return [rotary(x, { ...common, interleaved: true }), tf.gather(neox, inv, 3)];
      });
      const [a, b] = await Promise.all(outs.map(values));
      tf.dispose(outs);
      expect(maxAbsDiff(a!, b!)).toBe(0);
    }), { numRuns: 6 });
  });

  it('matches hand-computed values', async () => {
    // K = 4, θ = (1, 10000^(−1/2) = 0.01), x = (1, 2, 3, 4) at p = 0 (unchanged) and p = 1:
    // default pairs (0, 2), (1, 3):  y0 = cos1 − 3 sin1, y2 = sin1 + 3 cos1, y1 = 2 cos.01 − 4 sin.01, y3 = 2 sin.01 + 4 cos.01
    // interleaved pairs (0, 1), (2, 3): y0 = cos1 − 2 sin1, y1 = sin1 + 2 cos1, y2 = 3 cos.01 − 4 sin.01, y3 = 3 sin.01 + 4 cos.01
    const xs = [1, 2, 3, 4, 1, 2, 3, 4];
    const s = { B: 1, T: 2, H: 1, K: 4 };
    const x = tf.tensor4d(xs, [1, 2, 1, 4]);
    const [c1, s1, c2, s2] = [Math.cos(1), Math.sin(1), Math.cos(0.01), Math.sin(0.01)];
    const want = {
      default: [1, 2, 3, 4, c1 - 3 * s1, 2 * c2 - 4 * s2, s1 + 3 * c1, 2 * s2 + 4 * c2],
      interleaved: [1, 2, 3, 4, c1 - 2 * s1, s1 + 2 * c1, 3 * c2 - 4 * s2, 3 * s2 + 4 * c2],
    };
    for (const interleaved of [false, true]) {
      const y = rotary(x, { interleaved, implementation });
      const got = await values(y);
      y.dispose();
      expectWithin(got, want[interleaved ? 'interleaved' : 'default'], rotaryBound(xs, s, { interleaved }, eSc), `interleaved ${interleaved}`);
    }
    // rotaryDim 2 rotates (0, 1) by p·1 and copies channels 2, 3, at p = 1 and 2
    const y = rotary(x, { rotaryDim: 2, offset: 1, implementation });
    const got = await values(y);
    tf.dispose([x, y]);
    const [c, sn] = [Math.cos(2), Math.sin(2)];
    expectWithin(got, [c1 - 2 * s1, s1 + 2 * c1, 3, 4, c - 2 * sn, sn + 2 * c, 3, 4],
      rotaryBound(xs, s, { rotaryDim: 2, offset: 1 }, eSc), 'rotaryDim 2');
  });

  it('second derivatives: the gradient of the gradient is the rotation again', async () => {
    const { s, o, xs, dys } = inputs({ B: 2, T: 5, H: 2, K: 8, rotaryDim: 6, interleaved: true, base: 10000, positions: 'rows', maxPosition: 500, seed: 3 });
    const opts: RotaryOptions = { rotaryDim: 6, interleaved: true, offset: tf.tensor1d(o.offset as Int32Array, 'int32'), implementation };
    const shape = [s.B, s.T, s.H, s.K] as [number, number, number, number];
    // g(dy) = ∂⟨rotary(x), dy⟩/∂x = R(−p·θ)·dy; differentiating ⟨g(dy), v⟩ in dy gives R(p·θ)·v
    const got = tf.tidy(() => {
      const x = tf.tensor4d(xs, shape);
      const g = (d: tf.Tensor) => tf.grad((t: tf.Tensor) => rotary(t as tf.Tensor4D, opts))(x, d);
      return tf.grad(g)(tf.zeros(shape), tf.tensor4d(dys, shape));
    });
    expectWithin(await values(got), rotaryOracle(dys, s, o), rotaryBound(dys, s, o, eSc), 'second derivative');
    tf.dispose([got, ...tensorsOf(opts)]);
  });

  it('empty batches and sequences give empty outputs and gradients', async () => {
    for (const shape of [[0, 3, 2, 4], [2, 0, 2, 4]] as Array<[number, number, number, number]>) {
      const x = tf.zeros(shape) as tf.Tensor4D;
      const opts = { offset: tf.zeros([shape[0]], 'int32') as tf.Tensor1D, implementation };
      const y = rotary(x, opts);
      const dx = tf.grad((t: tf.Tensor) => rotary(t as tf.Tensor4D, opts))(x);
      expect(y.shape).toEqual(shape);
      expect(dx.shape).toEqual(shape);
      tf.dispose([x, y, dx, opts.offset]);
    }
  });

  it('forward, gradients and rotaryQK leak no tensors, with every kind of position', async () => {
    const x = tf.randomNormal([2, 7, 3, 8]) as tf.Tensor4D;
    const k = tf.randomNormal([2, 7, 1, 8]) as tf.Tensor4D;
    const offsets = tf.tensor1d([3, 9], 'int32');
    const table = tf.tensor2d(Array.from({ length: 14 }, (_, i) => i * 3), [2, 7], 'int32');
    await expectNoLeaks(async () => {
      for (const where of [{}, { offset: 5 }, { offset: offsets }, { positions: table }]) {
        const opts = { ...where, rotaryDim: 6, implementation };
        const y = rotary(x, opts);
        const dx = tf.grad((t: tf.Tensor) => rotary(t as tf.Tensor4D, opts))(x);
        const qk = rotaryQK(x, k, opts);
        await y.data();
        tf.dispose([y, dx, qk]);
      }
    });
    tf.dispose([x, k, offsets, table]);
  });

  it('segmentPositions restarts at 0 where the id changes, and rotary with it equals each segment alone', async () => {
    const ids = tf.tensor2d([[0, 0, 0, 1, 1, 2, 7, 7], [5, 5, 5, 5, 5, 5, 5, 5]], [2, 8], 'int32');
    const pos = segmentPositions(ids);
    expect(Array.from(await pos.data())).toEqual([0, 1, 2, 0, 1, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
    // a packed row rotated with its segment positions equals each sequence rotated alone
    const x = tf.randomNormal([1, 8, 2, 8]) as tf.Tensor4D;
    const packed = rotary(x, { positions: pos.slice([0, 0], [1, 8]) as tf.Tensor2D, implementation });
    const alone = tf.concat([[0, 3], [3, 2], [5, 1], [6, 2]].map(([t, n]) => rotary(x.slice([0, t!, 0, 0], [1, n!, 2, 8]), { implementation })), 1);
    expect(maxAbsDiff(await values(packed), await values(alone))).toBe(0);
    const empty = segmentPositions(tf.zeros([2, 0], 'int32') as tf.Tensor2D);
    expect(empty.shape).toEqual([2, 0]);
    expect(() => segmentPositions(tf.zeros([2, 3]) as tf.Tensor2D))
      .toThrow(/segmentPositions: argument 'segmentIds' must be an int32 tensor \[B, T\]; received a float32 tensor of shape \[2, 3\]/);
    tf.dispose([ids, pos, x, packed, alone, empty]);
  });

  it('segmentPositions matches a plain loop on random runs', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 3 }), async (rows0) => {
      const T = rows0[0]!.length;
      const rows = rows0.map((r) => Array.from({ length: T }, (_, t) => r[t % r.length]!));
      const want: number[] = [];
      for (const r of rows) r.forEach((id, t) => want.push(t > 0 && id === r[t - 1] ? want[want.length - 1]! + 1 : 0));
      const ids = tf.tensor2d(rows, [rows.length, T], 'int32');
      const pos = segmentPositions(ids);
      expect(Array.from(await pos.data())).toEqual(want);
      tf.dispose([ids, pos]);
    }), { numRuns: 10 });
  });

  it('rotaryQK rotates q and k at the same positions', async () => {
    const q = tf.randomNormal([2, 5, 4, 8]) as tf.Tensor4D;
    const k = tf.randomNormal([2, 5, 2, 8]) as tf.Tensor4D;
    const offset = tf.tensor1d([40000, 12], 'int32');
    const opts = { offset, interleaved: true, base: 500000, implementation };
    const [q2, k2] = rotaryQK(q, k, opts);
    const [q3, k3] = [rotary(q, opts), rotary(k, opts)];
    expect(maxAbsDiff(await values(q2), await values(q3))).toBe(0);
    expect(maxAbsDiff(await values(k2), await values(k3))).toBe(0);
    expect(() => rotaryQK(q, tf.zeros([2, 4, 2, 8]) as tf.Tensor4D, opts))
      .toThrow(/rotaryQK: arguments 'q' \[B, T, H, K\] and 'k' \[B, T, Hkv, K\] must agree in B, T and K; received \[2, 5, 4, 8\] and \[2, 4, 2, 8\]/);
    expect(() => rotaryQK(q, tf.zeros([2, 5, 2]) as unknown as tf.Tensor4D, opts))
      .toThrow(/rotaryQK: argument 'k' must be a float32 tensor of rank 4 \[B, T, H, K\]/);
    tf.dispose([q, k, offset, q2, k2, q3, k3]);
  });
});

describeOn('webgpu', 'rotary kernel uploads', () => {
  it('uploads nothing made on the CPU, forward or gradient, with every kind of position', async () => {
    const x = tf.randomNormal([2, 7, 3, 8]) as tf.Tensor4D;
    const dy = tf.randomNormal([2, 7, 3, 8]) as tf.Tensor4D;
    const offsets = tf.tensor1d([3, 9], 'int32');
    const table = tf.tensor2d(Array.from({ length: 14 }, (_, i) => i * 3), [2, 7], 'int32');
    const given = [x, dy, offsets, table];
    for (const where of [{}, { offset: 5 }, { offset: offsets }, { positions: table }]) {
      // a given output gradient: tfjs's own seed of ones would be an upload of its own
      const run = async () => {
        const opts = { ...where, rotaryDim: 6, base: 500 };
        const y = rotary(x, opts);
        const dx = tf.grad((t: tf.Tensor) => rotary(t as tf.Tensor4D, opts))(x, dy);
        await Promise.all([y.data(), dx.data()]);
        tf.dispose([y, dx]);
      };
      // the first call makes the θ table of (base, R) on the GPU, once; a later offset is a param
      await run();
      expect(await uploadsDuring(run, given), JSON.stringify(where)).toBe(0);
    }
    tf.dispose(given);
  });
});

describe('rotary input checks', () => {
  let x: tf.Tensor4D;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    x = tf.zeros([2, 3, 1, 8]);
  });

  it('names the op, the option, the expectation and what it received', () => {
    const r = (o: unknown) => () => rotary(x, o as RotaryOptions);
    expect(r({ theta: 1 })).toThrow(/rotary: unknown option 'theta'; the options are 'base', 'rotaryDim', 'interleaved', 'positions', 'offset', 'implementation'/);
    expect(r(5)).toThrow(/rotary: argument 'options' must be an object/);
    expect(() => rotary(tf.zeros([2, 3, 8]) as unknown as tf.Tensor4D))
      .toThrow(/rotary: argument 'x' must be a float32 tensor of rank 4 \[B, T, H, K\]; received a float32 tensor of shape \[2, 3, 8\]/);
    expect(() => rotary(tf.zeros([2, 3, 1, 8], 'int32') as tf.Tensor4D)).toThrow(/rotary: argument 'x' must be a float32 tensor.*Cast it/);
    expect(() => rotary(tf.zeros([2, 3, 1, 7]) as tf.Tensor4D))
      .toThrow(/rotary: option 'rotaryDim' defaults to the head dimension K = 7, which is odd; give an even rotaryDim < K/);
    expect(rotary(tf.zeros([2, 3, 1, 7]) as tf.Tensor4D, { rotaryDim: 6 }).shape).toEqual([2, 3, 1, 7]);
    for (const bad of [3, 0, -2, 10, 2.5, '4']) {
      expect(r({ rotaryDim: bad })).toThrow(/rotary: option 'rotaryDim' must be an even integer ≥ 2 and at most the head dimension K = 8; received/);
    }
    for (const bad of [0, -1, NaN, Infinity, '10000']) {
      expect(r({ base: bad })).toThrow(/rotary: option 'base' must be a positive finite number; received/);
    }
    expect(r({ interleaved: 'yes' })).toThrow(/rotary: option 'interleaved' must be a boolean; received 'yes' \(a string\)/);
    expect(r({ implementation: 'wasm' })).toThrow(/rotary: option 'implementation' must be one of 'auto', 'webgpu', 'reference'; received 'wasm'/);
    expect(r({ implementation: 'webgpu' })).toThrow(/rotary: implementation 'webgpu' needs the 'webgpu' backend/);
  });

  it('resolveRotaryConfig, for layers: defaults, and errors naming the layer and the option', () => {
    const where = 'FlashStyleTiledAttention: rotary';
    expect(resolveRotaryConfig(where, undefined)).toEqual({ base: 10000, rotaryDim: undefined, interleaved: false });
    expect(resolveRotaryConfig(where, {}, 64)).toEqual({ base: 10000, rotaryDim: 64, interleaved: false });
    expect(resolveRotaryConfig(where, { base: 500000, rotaryDim: 32, interleaved: true }, 64))
      .toEqual({ base: 500000, rotaryDim: 32, interleaved: true });
    expect(() => resolveRotaryConfig(where, true))
      .toThrow(/FlashStyleTiledAttention: rotary: the rotary configuration must be an object with some of the options 'base', 'rotaryDim', 'interleaved'; received true \(a boolean\)/);
    expect(() => resolveRotaryConfig(where, { dim: 4 }))
      .toThrow(/FlashStyleTiledAttention: rotary: unknown option 'dim'; the options are 'base', 'rotaryDim', 'interleaved'/);
    expect(() => resolveRotaryConfig(where, { rotaryDim: 3 })).toThrow(/FlashStyleTiledAttention: rotary: option 'rotaryDim' must be an even integer ≥ 2; received 3/);
    expect(() => resolveRotaryConfig(where, { rotaryDim: 32 }, 16))
      .toThrow(/option 'rotaryDim' must be an even integer ≥ 2 and at most the head dimension K = 16; received 32/);
  });

  it('checks positions and offsets: dtype, shape, range, and not both', () => {
    const r = (o: unknown) => () => rotary(x, o as RotaryOptions);
    const table = tf.zeros([2, 3], 'int32');
    expect(r({ positions: tf.zeros([2, 3]) }))
      .toThrow(/rotary: option 'positions' must be an int32 tensor \[B, T\] = \[2, 3\]; received a float32 tensor of shape \[2, 3\]/);
    expect(r({ positions: tf.zeros([2, 4], 'int32') })).toThrow(/option 'positions' must be an int32 tensor \[B, T\] = \[2, 3\]; received an int32 tensor of shape \[2, 4\]/);
    expect(r({ positions: [[0, 1, 2], [0, 1, 2]] })).toThrow(/option 'positions' must be an int32 tensor \[B, T\] = \[2, 3\]; received \[\[/);
    expect(r({ positions: table, offset: 2 })).toThrow(/rotary: give option 'positions' or option 'offset', not both; received both/);
    expect(r({ offset: tf.zeros([3], 'int32') })).toThrow(/rotary: option 'offset' must be an integer or an int32 tensor \[B\] = \[2\]; received an int32 tensor of shape \[3\]/);
    expect(r({ offset: tf.zeros([2]) })).toThrow(/option 'offset' must be an integer or an int32 tensor \[B\] = \[2\]; received a float32 tensor of shape \[2\]/);
    for (const bad of [1.5, NaN, '3', 2 ** 24, -(2 ** 24) - 1]) {
      expect(r({ offset: bad })).toThrow(/rotary: option 'offset' must be an integer or an int32 tensor \[B\] = \[2\], with positions offset..offset \+ T − 1 within ±2\^24 \(T = 3\); received/);
    }
    expect(rotary(x, { offset: 2 ** 24 - 2 }).shape).toEqual([2, 3, 1, 8]);
    expect(rotary(x, { offset: -5 }).shape).toEqual([2, 3, 1, 8]);
    tf.dispose(table);
  });
});
