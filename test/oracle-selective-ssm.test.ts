// Tests of the float64 selective-scan oracle itself (test/oracle/selective-ssm.ts), no tfjs:
// two examples worked by hand, gradients against central finite differences with and without
// every optional input, chunking over T, linearity, underflow of exp(Δ·A), and the exact
// contribution of the initial state.

import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  selectiveScanGradOracle, selectiveScanOracle, type ScanDims, type ScanGrads, type ScanInputs,
} from './oracle/selective-ssm.js';
import { allFinite, concatT, finiteDiff, maxAbs, maxAbsDiff, mulberry32, relErr, sliceT, uniform64 } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// helpers

const softplus = (x: number) => Math.log(1 + Math.exp(x)); // moderate x only: the test's own, naive
const silu = (x: number) => x / (1 + Math.exp(-x));

/** Which optional inputs a case has; `dState` is the cotangent of the final state. */
type Flags = { D: boolean; z: boolean; deltaBias: boolean; initialState: boolean; dState: boolean; softplus: boolean };

type Case = { dims: ScanDims; x: ScanInputs; dOut: Float64Array; dState?: Float64Array };

/**
 * Random inputs of moderate size: A in [−1.5, 0.5) so that some a = exp(Δ·A) exceed 1, and
 * delta in [−1, 1) so that Δ is negative sometimes when softplus is off (valid maths either way).
 */
function makeCase(dims: ScanDims, f: Flags, seed: number): Case {
  const { B, T, E, N } = dims;
  const x: ScanInputs = {
    u: uniform64(seed, B * T * E), delta: uniform64(seed + 1, B * T * E), A: uniform64(seed + 2, E * N, -1.5, 0.5),
    Bm: uniform64(seed + 3, B * T * N), Cm: uniform64(seed + 4, B * T * N), deltaSoftplus: f.softplus,
  };
  if (f.D) x.D = uniform64(seed + 5, E);
  if (f.z) x.z = uniform64(seed + 6, B * T * E, -2, 2);
  if (f.deltaBias) x.deltaBias = uniform64(seed + 7, E, -0.5, 0.5);
  if (f.initialState) x.initialState = uniform64(seed + 8, B * E * N);
  return {
    dims, x, dOut: uniform64(seed + 9, B * T * E),
    ...(f.dState ? { dState: uniform64(seed + 10, B * E * N) } : {}),
  };
}

/** L = Σ dOut·out + Σ dState·state, the scalar whose gradient the grad oracle returns. */
function loss(c: Case): number {
  const { out, state } = selectiveScanOracle(c.x, c.dims);
  let L = 0;
  for (let n = 0; n < out.length; n++) L += c.dOut[n]! * out[n]!;
  if (c.dState) for (let n = 0; n < state.length; n++) L += c.dState[n]! * state[n]!;
  return L;
}

const INPUTS = ['u', 'delta', 'A', 'Bm', 'Cm', 'D', 'z', 'deltaBias', 'initialState'] as const;

/**
 * Every given input's analytic gradient against central differences (h = 1e-6), and every
 * absent one absent. Tolerance, derived: rounding in (L(x+h) − L(x−h))/2h is about
 * ε64·|L|/h ≈ 2.2e-16 · 100 / 1e-6 ≈ 2e-8 (|L| ≲ 100 for these sizes and ranges), and the
 * truncation error is h²·|L'''|/6 ≈ 1e-12·O(100) ≈ 1e-10; so 1e-6 · max(1, max|g|) leaves a
 * 50× margin (the worst seen over 300 random cases was 4e-9), while a dropped or mis-signed
 * term of the chain rule changes some entry by O(0.1).
 */
function expectGradsMatchFiniteDiff(c: Case): void {
  const g = selectiveScanGradOracle(c.x, c.dims, c.dOut, c.dState);
  for (const name of INPUTS) {
    const xs = c.x[name] as Float64Array | undefined;
    if (xs === undefined) {
      expect(g[name], `${name} absent`).toBeUndefined();
      continue;
    }
    const analytic = g[name]!;
    const numeric = finiteDiff(() => loss(c), xs);
    expect(allFinite(analytic), name).toBe(true);
    expect(maxAbsDiff(analytic, numeric), name).toBeLessThanOrEqual(1e-6 * Math.max(1, maxAbs(analytic)));
  }
  expect(Object.keys(g).sort()).toEqual(INPUTS.filter((k) => c.x[k] !== undefined).sort());
}

const add = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(a, (v, n) => v + b[n]!);

const flagNames = ['D', 'z', 'deltaBias', 'initialState', 'dState', 'softplus'] as const;
const describeFlags = (f: Flags) => flagNames.map((k) => (f[k] ? k : `no ${k}`)).join(', ');

const smallCases = fc.record({
  B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 5 }),
  E: fc.integer({ min: 1, max: 3 }), N: fc.integer({ min: 1, max: 4 }),
  D: fc.boolean(), z: fc.boolean(), deltaBias: fc.boolean(), initialState: fc.boolean(),
  dState: fc.boolean(), softplus: fc.boolean(),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

// ---------------------------------------------------------------------------------------------
// worked by hand

describe('worked by hand', () => {
  it('B = T·E·N = 1·2·1·1, softplus off, D and initialState, no z', () => {
    // A = −ln 2, delta = Δ = (1, 2) → a = (e^{−ln 2}, e^{−2 ln 2}) = (1/2, 1/4); h[−1] = 4
    //   h0 = 1/2·4 + Δ0·u0·B0 = 2 + 1·1·2 = 4        y0 = h0·C0 + D·u0 = 4·3 + 0.5·1  = 12.5
    //   h1 = 1/4·4 + Δ1·u1·B1 = 1 + 2·3·1 = 7        y1 = h1·C1 + D·u1 = 7·(−1) + 0.5·3 = −5.5
    // with dOut = (1, 1), no dState, backward in time:
    //   g1 = dy1·C1 = −1                              g0 = dy0·C0 + a1·g1 = 3 − 1/4 = 2.75
    //   dCm = (dy0·h0, dy1·h1) = (4, 7)              dD = u0 + u1 = 4
    //   du_t = dy_t·D + g_t·Δ_t·B_t: du0 = 0.5 + 2.75·1·2 = 6, du1 = 0.5 − 1·2·1 = −1.5
    //   dBm_t = g_t·Δ_t·u_t: (2.75·1·1, −1·2·3) = (2.75, −6)
    //   dΔ_t = g_t·(u_t·B_t + h_{t−1}·a_t·A):
    //     dΔ0 = 2.75·(2 + 4·1/2·(−ln 2)) = 5.5 − 5.5 ln 2,   dΔ1 = −1·(3 + 4·1/4·(−ln 2)) = −3 + ln 2
    //   dA = Σ_t g_t·h_{t−1}·a_t·Δ_t = 2.75·4·1/2·1 + (−1)·4·1/4·2 = 5.5 − 2 = 3.5
    //   d initialState = a0·g0 = 1/2·2.75 = 1.375
    const dims: ScanDims = { B: 1, T: 2, E: 1, N: 1 };
    const x: ScanInputs = {
      u: [1, 3], delta: [1, 2], A: [-Math.LN2], Bm: [2, 1], Cm: [3, -1], D: [0.5], initialState: [4],
      deltaSoftplus: false,
    };
    const { out, state } = selectiveScanOracle(x, dims);
    expect(out[0]).toBeCloseTo(12.5, 13);
    expect(out[1]).toBeCloseTo(-5.5, 13);
    expect(state[0]).toBeCloseTo(7, 13);

    const g = selectiveScanGradOracle(x, dims, [1, 1]);
    const close = (a: Float64Array | undefined, want: number[]) => want.forEach((w, n) => expect(a![n]).toBeCloseTo(w, 13));
    close(g.Cm, [4, 7]);
    close(g.D, [4]);
    close(g.u, [6, -1.5]);
    close(g.Bm, [2.75, -6]);
    close(g.delta, [5.5 - 5.5 * Math.LN2, -3 + Math.LN2]);
    close(g.A, [3.5]);
    close(g.initialState, [1.375]);
    expect(g.z).toBeUndefined();
    expect(g.deltaBias).toBeUndefined();
  });

  it('T = 1 with softplus, deltaBias and z', () => {
    // delta + bias = −0.5 + 0.5 = 0 → Δ = softplus(0) = ln 2, σ(0) = 1/2; A = −1 → a = 1/2
    //   h = 1/2·4 + ln 2·1·1 = 2 + ln 2 = y;  z = ln 3: σ(z) = 3/4, silu(z) = (3/4)·ln 3
    //   out = (2 + ln 2)·(3/4)·ln 3, state = 2 + ln 2
    // with dOut = 1, no dState: dy = silu(z) = (3/4) ln 3, g = dy·C = (3/4) ln 3
    //   dz = y·σ(z)·(1 + z·(1 − σ(z))) = (2 + ln 2)·(3/4)·(1 + (ln 3)/4)
    //   dCm = dy·h = (3/4) ln 3·(2 + ln 2);  dBm = g·Δ·u = (3/4) ln 3·ln 2 = du
    //   dΔ = g·(u·B + h₋₁·a·A) = (3/4) ln 3·(1 − 2) → ddelta = dBias = dΔ·σ(0) = −(3/8) ln 3
    //   dA = g·h₋₁·a·Δ = (3/4) ln 3·2·ln 2 = (3/2) ln 3 ln 2;  d initialState = a·g = (3/8) ln 3
    const dims: ScanDims = { B: 1, T: 1, E: 1, N: 1 };
    const x: ScanInputs = {
      u: [1], delta: [-0.5], deltaBias: [0.5], A: [-1], Bm: [1], Cm: [1], initialState: [4], z: [Math.log(3)],
    };
    const [l2, l3] = [Math.LN2, Math.log(3)];
    const { out, state } = selectiveScanOracle(x, dims);
    expect(out[0]).toBeCloseTo((2 + l2) * 0.75 * l3, 13);
    expect(state[0]).toBeCloseTo(2 + l2, 13);

    const g = selectiveScanGradOracle(x, dims, [1]);
    expect(g.z![0]).toBeCloseTo((2 + l2) * 0.75 * (1 + l3 / 4), 13);
    expect(g.Cm[0]).toBeCloseTo(0.75 * l3 * (2 + l2), 13);
    expect(g.Bm[0]).toBeCloseTo(0.75 * l3 * l2, 13);
    expect(g.u[0]).toBeCloseTo(0.75 * l3 * l2, 13);
    expect(g.delta[0]).toBeCloseTo(-0.375 * l3, 13);
    expect(g.deltaBias![0]).toBeCloseTo(-0.375 * l3, 13);
    expect(g.A[0]).toBeCloseTo(1.5 * l3 * l2, 13);
    expect(g.initialState![0]).toBeCloseTo(0.375 * l3, 13);
    expect(g.D).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// gradients against finite differences

describe('gradients vs central finite differences', () => {
  // every subset of the optional inputs, each on its own seeded shape
  for (let mask = 0; mask < 64; mask++) {
    const f = Object.fromEntries(flagNames.map((k, bit) => [k, ((mask >> bit) & 1) === 1])) as Flags;
    it(describeFlags(f), () => {
      const r = mulberry32(1000 + mask);
      const pick = (max: number) => 1 + Math.floor(r() * max);
      const dims: ScanDims = { B: pick(2), T: pick(5), E: pick(3), N: pick(4) };
      expectGradsMatchFiniteDiff(makeCase(dims, f, 7919 * (mask + 1)));
    });
  }

  it('random shapes and options (fast-check)', () => {
    fc.assert(fc.property(smallCases, (c) => {
      expectGradsMatchFiniteDiff(makeCase({ B: c.B, T: c.T, E: c.E, N: c.N }, c, c.seed));
    }));
  });

  it('T = 0: out is empty, state is the initial state, and dState flows straight to it', () => {
    const dims: ScanDims = { B: 2, T: 0, E: 2, N: 3 };
    const c = makeCase(dims, { D: true, z: true, deltaBias: true, initialState: true, dState: true, softplus: true }, 5);
    const { out, state } = selectiveScanOracle(c.x, dims);
    expect(out.length).toBe(0);
    expect(Array.from(state)).toEqual(Array.from(c.x.initialState!));
    const g = selectiveScanGradOracle(c.x, dims, c.dOut, c.dState);
    expect(Array.from(g.initialState!)).toEqual(Array.from(c.dState!));
    expect(maxAbs(g.A) + maxAbs(g.D!) + maxAbs(g.deltaBias!)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// structure

describe('chunking over T', () => {
  it('two runs carrying the state equal one run, forward and backward', () => {
    fc.assert(fc.property(smallCases, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), (s, frac) => {
      const T = s.T + 1; // at least 2, so both pieces are non-empty
      const T1 = 1 + Math.floor(frac * (T - 1));
      const T2 = T - T1;
      const { B, E, N } = s;
      const c = makeCase({ B, T, E, N }, s, s.seed);
      const x = c.x;
      const part = (t0: number, t1: number, init: ArrayLike<number> | undefined): ScanInputs => ({
        u: sliceT(x.u, B, T, E, t0, t1), delta: sliceT(x.delta, B, T, E, t0, t1), A: x.A,
        Bm: sliceT(x.Bm, B, T, N, t0, t1), Cm: sliceT(x.Cm, B, T, N, t0, t1),
        ...(x.z ? { z: sliceT(x.z, B, T, E, t0, t1) } : {}),
        ...(init ? { initialState: init } : {}),
        ...(x.D ? { D: x.D } : {}), ...(x.deltaBias ? { deltaBias: x.deltaBias } : {}),
        deltaSoftplus: x.deltaSoftplus,
      });
      const d1 = { B, T: T1, E, N };
      const d2 = { B, T: T2, E, N };
      const x1 = part(0, T1, x.initialState);
      const r1 = selectiveScanOracle(x1, d1);
      const x2 = part(T1, T, r1.state);
      const r2 = selectiveScanOracle(x2, d2);
      const full = selectiveScanOracle(x, c.dims);
      // the same float operations in the same order: bit-exact
      expect(maxAbsDiff(concatT(r1.out, r2.out, B, T1, T2, E), full.out)).toBe(0);
      expect(maxAbsDiff(r2.state, full.state)).toBe(0);

      // backward: the second piece's d initialState is the first piece's dState
      const g2 = selectiveScanGradOracle(x2, d2, sliceT(c.dOut, B, T, E, T1, T), c.dState);
      const g1 = selectiveScanGradOracle(x1, d1, sliceT(c.dOut, B, T, E, 0, T1), g2.initialState);
      const gf = selectiveScanGradOracle(x, c.dims, c.dOut, c.dState);
      // per-step gradients are computed identically; the sums over T are split differently
      for (const [name, W] of [['u', E], ['delta', E], ['Bm', N], ['Cm', N], ['z', E]] as const) {
        if (!gf[name]) continue;
        expect(relErr(concatT(g1[name]!, g2[name]!, B, T1, T2, W), gf[name]), name).toBeLessThan(1e-13);
      }
      for (const name of ['A', 'D', 'deltaBias'] as const) {
        if (!gf[name]) continue;
        expect(relErr(add(g1[name]!, g2[name]!), gf[name]), name).toBeLessThan(1e-13);
      }
      if (gf.initialState) expect(relErr(g1.initialState!, gf.initialState)).toBeLessThan(1e-13);
    }));
  });
});

describe('linearity', () => {
  it('without z, (out, state) is linear in (u, initialState) jointly, and the gradients in (dOut, dState)', () => {
    fc.assert(fc.property(smallCases, fc.double({ min: -3, max: 3, noNaN: true }), (s, alpha) => {
      const dims = { B: s.B, T: s.T, E: s.E, N: s.N };
      const f = { ...s, z: false, initialState: true, dState: true };
      const c1 = makeCase(dims, f, s.seed);
      const c2 = makeCase(dims, f, s.seed + 100);
      // same delta, A, Bm, Cm, D, bias: only u and the initial state differ
      const mix: ScanInputs = {
        ...c1.x,
        u: add(c1.x.u, Float64Array.from(c2.x.u, (v) => alpha * v)),
        initialState: add(c1.x.initialState!, Float64Array.from(c2.x.initialState!, (v) => alpha * v)),
      };
      const x2: ScanInputs = { ...c1.x, u: c2.x.u, initialState: c2.x.initialState };
      const r1 = selectiveScanOracle(c1.x, dims);
      const r2 = selectiveScanOracle(x2, dims);
      const rm = selectiveScanOracle(mix, dims);
      expect(relErr(rm.out, add(r1.out, r2.out.map((v) => alpha * v)))).toBeLessThan(1e-12);
      expect(relErr(rm.state, add(r1.state, r2.state.map((v) => alpha * v)))).toBeLessThan(1e-12);

      const dOutMix = add(c1.dOut, c2.dOut.map((v) => alpha * v));
      const dStateMix = add(c1.dState!, c2.dState!.map((v) => alpha * v));
      const g1 = selectiveScanGradOracle(c1.x, dims, c1.dOut, c1.dState);
      const g2 = selectiveScanGradOracle(c1.x, dims, c2.dOut, c2.dState);
      const gm = selectiveScanGradOracle(c1.x, dims, dOutMix, dStateMix);
      for (const name of INPUTS) {
        if (!gm[name]) continue;
        expect(relErr(gm[name], add(g1[name]!, g2[name]!.map((v) => alpha * v))), name).toBeLessThan(1e-12);
      }
    }));
  });
});

describe('extreme Δ', () => {
  const dims: ScanDims = { B: 2, T: 4, E: 3, N: 2 };
  const all: Flags = { D: true, z: true, deltaBias: true, initialState: true, dState: true, softplus: true };

  function finiteEverywhere(c: Case): ScanGrads {
    const { out, state } = selectiveScanOracle(c.x, dims);
    expect(allFinite(out) && allFinite(state)).toBe(true);
    const g = selectiveScanGradOracle(c.x, dims, c.dOut, c.dState);
    for (const name of INPUTS) if (g[name]) expect(allFinite(g[name]), name).toBe(true);
    return g;
  }

  for (const [label, delta] of [['Δ = 50', 50], ['Δ = 800 (naive softplus overflows)', 800]] as const) {
    it(`${label}, A = −1000: exp(Δ·A) underflows to 0, the state is the last input term, nothing is NaN`, () => {
      const { B, T, E, N } = dims;
      const c = makeCase(dims, all, 31);
      c.x.delta = new Float64Array(B * T * E).fill(delta - 0.25);
      c.x.deltaBias = new Float64Array(E).fill(0.25);
      c.x.A = new Float64Array(E * N).fill(-1000);
      c.x.initialState = uniform64(37, B * E * N, -1e3, 1e3); // large, and wiped out by a = 0
      const { state } = selectiveScanOracle(c.x, dims);
      const want = new Float64Array(B * E * N);
      for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) for (let n = 0; n < N; n++) {
        want[(b * E + e) * N + n] = delta * c.x.u[(b * T + T - 1) * E + e]! * c.x.Bm[(b * T + T - 1) * N + n]!;
      }
      expect(relErr(state, want)).toBeLessThan(1e-15);
      const g = finiteEverywhere(c);
      // a = 0 at every step: nothing flows to the initial state or through A
      expect(maxAbs(g.initialState!)).toBe(0);
      expect(maxAbs(g.A)).toBe(0);
    });
  }

  it('delta = −800: Δ = softplus(−800) = 0 exactly, so h passes through unchanged and y = h₋₁·C + D·u', () => {
    const { B, T, E, N } = dims;
    const c = makeCase(dims, { ...all, z: false }, 41);
    c.x.delta = new Float64Array(B * T * E).fill(-800);
    const { out, state } = selectiveScanOracle(c.x, dims);
    expect(Array.from(state)).toEqual(Array.from(c.x.initialState!));
    const want = new Float64Array(B * T * E);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) {
      let y = c.x.D![e]! * c.x.u[(b * T + t) * E + e]!;
      for (let n = 0; n < N; n++) y += c.x.initialState![(b * E + e) * N + n]! * c.x.Cm[(b * T + t) * N + n]!;
      want[(b * T + t) * E + e] = y;
    }
    expect(relErr(out, want)).toBeLessThan(1e-14);
    finiteEverywhere(c);
  });
});

describe('initial state', () => {
  it('out(initialState) − out(0) is exactly exp(A·Σ_{s≤t} Δ_s)·h₋₁·C_t (gated), state likewise', () => {
    fc.assert(fc.property(smallCases, (s) => {
      const { B, T, E, N } = s;
      const dims = { B, T, E, N };
      const c = makeCase(dims, { ...s, initialState: true }, s.seed);
      const withInit = selectiveScanOracle(c.x, dims);
      const zeroInit = selectiveScanOracle({ ...c.x, initialState: undefined }, dims);
      // the propagated term, from the closed form Π_s exp(Δ_s·A) = exp(A·Σ_s Δ_s)
      const wantOut = new Float64Array(B * T * E);
      const wantState = new Float64Array(B * E * N);
      for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) {
        let sum = 0;
        for (let t = 0; t < T; t++) {
          const i = (b * T + t) * E + e;
          const pre = c.x.delta[i]! + (c.x.deltaBias?.[e] ?? 0);
          sum += s.softplus ? softplus(pre) : pre;
          let y = 0;
          for (let n = 0; n < N; n++) {
            const carried = Math.exp(c.x.A[e * N + n]! * sum) * c.x.initialState![(b * E + e) * N + n]!;
            y += carried * c.x.Cm[(b * T + t) * N + n]!;
            if (t === T - 1) wantState[(b * E + e) * N + n] = carried;
          }
          wantOut[i] = c.x.z ? y * silu(c.x.z[i]!) : y;
        }
      }
      const diff = (a: Float64Array, b: Float64Array) => a.map((v, n) => v - b[n]!);
      // relative to the full outputs: the subtraction cancels, the error does not
      const scale = Math.max(1, maxAbs(withInit.out), maxAbs(withInit.state));
      expect(maxAbsDiff(diff(withInit.out, zeroInit.out), wantOut)).toBeLessThan(1e-13 * scale);
      expect(maxAbsDiff(diff(withInit.state, zeroInit.state), wantState)).toBeLessThan(1e-13 * scale);
      expect(maxAbs(wantState)).toBeGreaterThan(0);
    }));
  });
});

describe('input checks', () => {
  const dims: ScanDims = { B: 1, T: 2, E: 2, N: 3 };
  const ok = makeCase(dims, { D: true, z: true, deltaBias: true, initialState: true, dState: true, softplus: true }, 3);

  it('names the argument, its length and the expected one', () => {
    expect(() => selectiveScanOracle({ ...ok.x, Bm: new Float64Array(5) }, dims)).toThrow(/Bm has 5 values, expected 6/);
    expect(() => selectiveScanOracle({ ...ok.x, initialState: new Float64Array(2) }, dims)).toThrow(/initialState has 2 values, expected 6/);
    expect(() => selectiveScanGradOracle(ok.x, dims, ok.dOut, new Float64Array(1))).toThrow(/dState has 1 values, expected 6/);
    expect(() => selectiveScanOracle(ok.x, { ...dims, N: 1.5 })).toThrow(/N must be an integer/);
  });
});
