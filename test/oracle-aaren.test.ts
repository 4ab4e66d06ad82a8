// Tests of the float64 Aaren oracle itself (test/oracle/aaren.ts), no tfjs: two examples worked
// by hand, equality with causal softmax attention under one learned query per head computed the
// naive way, gradients against central finite differences with and without an initial state and
// the final state's cotangents, two pieces carrying the state, scores far apart, the state's
// redundancy in m, and the empty state.

import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  aarenGradOracle, aarenOracle, emptyHead, merge, type AarenDims, type AarenInputs, type AarenState,
} from './oracle/aaren.js';
import { allFinite, concatT, finiteDiff, maxAbs, maxAbsDiff, mulberry32, relErr, sliceT, uniform64 } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// helpers

/** Which initial state a case starts from, and which cotangents of the final state it has. */
type Flags = { init: 'none' | 'empty' | 'random'; dm: boolean; du: boolean; dw: boolean; scale: boolean };

type Case = { dims: AarenDims; x: AarenInputs; dOut: Float64Array; dState: Partial<AarenState> };

/**
 * Random inputs of moderate size (|q|, |k|, |v| < 1, so |s| < √K); a random initial state has
 * m in [−1, 1), u in [0.5, 3) and w/u in [−1, 1), as a real prefix's state would.
 */
function makeCase(dims: AarenDims, f: Flags, seed: number): Case {
  const { B, T, H, K } = dims;
  const x: AarenInputs = { q: uniform64(seed, H * K), k: uniform64(seed + 1, B * T * H * K), v: uniform64(seed + 2, B * T * H * K) };
  if (f.scale) x.scale = 0.25 + 2 * mulberry32(seed + 3)();
  if (f.init === 'empty') {
    x.initialState = { m: new Float64Array(B * H).fill(-Infinity), u: new Float64Array(B * H), w: new Float64Array(B * H * K) };
  } else if (f.init === 'random') {
    const u = uniform64(seed + 5, B * H, 0.5, 3);
    x.initialState = { m: uniform64(seed + 4, B * H), u, w: uniform64(seed + 6, B * H * K).map((r, n) => r * u[Math.floor(n / K)]!) };
  }
  const dState: Partial<AarenState> = {};
  if (f.dm) dState.m = uniform64(seed + 7, B * H);
  if (f.du) dState.u = uniform64(seed + 8, B * H);
  if (f.dw) dState.w = uniform64(seed + 9, B * H * K);
  return { dims, x, dOut: uniform64(seed + 10, B * T * H * K), dState };
}

/** s_t = scale·q_h·k_t of every token, `[B, T, H]`, computed apart from the oracle. */
function scores(x: AarenInputs, { B, T, H, K }: AarenDims): Float64Array {
  const scale = x.scale ?? 1 / Math.sqrt(K);
  const s = new Float64Array(B * T * H);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
    let d = 0;
    for (let n = 0; n < K; n++) d += x.q[h * K + n]! * x.k[((b * T + t) * H + h) * K + n]!;
    s[(b * T + t) * H + h] = scale * d;
  }
  return s;
}

/**
 * The smallest gap, over heads, between the largest and the second largest of (m_init, s_0, …):
 * the distance to a tie of the max, where m's gradient is undefined (Infinity with one candidate).
 */
function maxGap(x: AarenInputs, dims: AarenDims): number {
  const { B, T, H } = dims;
  const s = scores(x, dims);
  let gap = Infinity;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const all = Array.from({ length: T }, (_, t) => s[(b * T + t) * H + h]!);
    if (x.initialState) all.push(x.initialState.m[b * H + h]!);
    all.sort((p, r) => r - p);
    if (all.length > 1 && all[1] !== -Infinity) gap = Math.min(gap, all[0]! - all[1]!);
  }
  return gap;
}

/** L = Σ dOut·o + Σ dState·state, the scalar whose gradient the grad oracle returns. */
function loss(c: Case): number {
  const { o, state } = aarenOracle(c.x, c.dims);
  let L = 0;
  for (let n = 0; n < o.length; n++) L += c.dOut[n]! * o[n]!;
  for (const part of ['m', 'u', 'w'] as const) {
    const d = c.dState[part];
    if (d) for (let n = 0; n < d.length; n++) L += d[n]! * state[part][n]!;
  }
  return L;
}

/**
 * Every gradient against central differences (h = 1e-6). Tolerance, derived: rounding in
 * (L(x+h) − L(x−h))/2h is about ε64·|L|/h ≈ 2.2e-16 · 100 / 1e-6 ≈ 2e-8 (|L| ≲ 100 for these
 * sizes, u ≤ T + 3), and the truncation error is h²·|L'''|/6 ≈ 1e-12·O(100) ≈ 1e-10; so
 * 1e-6 · max(1, max|g|) leaves a 50× margin, while a dropped or mis-signed term changes some
 * entry by O(0.1). Cases whose max is within 1e-3 of a tie are skipped: a step of h must not
 * cross it (m's gradient jumps there).
 */
function expectGradsMatchFiniteDiff(c: Case): void {
  const g = aarenGradOracle(c.x, c.dims, c.dOut, c.dState);
  const check = (name: string, analytic: Float64Array | undefined, xs: Float64Array) => {
    const numeric = finiteDiff(() => loss(c), xs);
    expect(allFinite(analytic!), name).toBe(true);
    expect(maxAbsDiff(analytic!, numeric), name).toBeLessThanOrEqual(1e-6 * Math.max(1, maxAbs(analytic!)));
  };
  check('q', g.q, c.x.q as Float64Array);
  check('k', g.k, c.x.k as Float64Array);
  check('v', g.v, c.x.v as Float64Array);
  if (!c.x.initialState) {
    expect(g.initialState).toBeUndefined();
    return;
  }
  for (const part of ['m', 'u', 'w'] as const) check(`initialState.${part}`, g.initialState![part], c.x.initialState[part] as Float64Array);
}

const smallCases = fc.record({
  B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 6 }),
  H: fc.integer({ min: 1, max: 3 }), K: fc.integer({ min: 1, max: 4 }),
  init: fc.constantFrom('none', 'empty', 'random') as fc.Arbitrary<Flags['init']>,
  dm: fc.boolean(), du: fc.boolean(), dw: fc.boolean(), scale: fc.boolean(),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

// ---------------------------------------------------------------------------------------------
// worked by hand

describe('worked by hand', () => {
  it('B = H = K = 1, T = 2, scale 1, no initial state', () => {
    // q = 1, k = (0, ln 2) → s = (0, ln 2); v = (3, 6)
    //   t = 0: m = 0, u = 1, w = 3, o = 3
    //   t = 1: m = ln 2, u = e^{−ln 2}·1 + 1 = 3/2, w = 3/2 + 6 = 15/2, o = 5
    // with dOut = (1, 1), no dState: P_00 = 1, P_10 = (1/2)/(3/2) = 1/3, P_11 = 1/(3/2) = 2/3
    //   dv = (P_00 + P_10, P_11) = (4/3, 2/3)
    //   ds_0 = P_00·(v_0 − o_0) + P_10·(v_0 − o_1) = 0 + (1/3)(3 − 5) = −2/3,  ds_1 = (2/3)(6 − 5) = 2/3
    //   dk = ds·q = (−2/3, 2/3),  dq = Σ ds_j·k_j = (2/3) ln 2
    const dims: AarenDims = { B: 1, T: 2, H: 1, K: 1 };
    const x: AarenInputs = { q: [1], k: [0, Math.LN2], v: [3, 6], scale: 1 };
    const { o, state } = aarenOracle(x, dims);
    const close = (a: ArrayLike<number>, want: number[]) => want.forEach((w, n) => expect(a[n]).toBeCloseTo(w, 13));
    close(o, [3, 5]);
    close(state.m, [Math.LN2]);
    close(state.u, [1.5]);
    close(state.w, [7.5]);

    const g = aarenGradOracle(x, dims, [1, 1]);
    close(g.v, [4 / 3, 2 / 3]);
    close(g.k, [-2 / 3, 2 / 3]);
    close(g.q, [(2 / 3) * Math.LN2]);
    expect(g.initialState).toBeUndefined();

    // the final state alone, dm = 1, du = 1/2, dw = 1/4: L = m + u/2 + w/4 with m = s_1 the max,
    // u = e^{s_0 − s_1} + 1, w = 3·e^{s_0 − s_1} + 6. By hand:
    //   ∂L/∂s_0 = e^{s_0 − s_1}·(1/2 + 3/4) = 5/8,   ∂L/∂s_1 = 1 − 5/8 = 3/8
    // and by §9's rule: g_m = dm − du·u − dw·w = 1 − 3/4 − 15/8 = −13/8 goes to s_1, the maximiser:
    //   ds_1 = e^0·(du + dw·v_1) + g_m = 2 − 13/8 = 3/8
    //   dv = (e^{−ln 2}·dw, dw) = (1/8, 1/4)
    const gs = aarenGradOracle(x, dims, [0, 0], { m: [1], u: [0.5], w: [0.25] });
    close(gs.k, [5 / 8, 3 / 8]);
    close(gs.v, [1 / 8, 1 / 4]);
    close(gs.q, [(3 / 8) * Math.LN2]);
  });

  it('T = 1 from an initial state that holds the max, with dm', () => {
    // initialState (m, u, w) = (1, 2, 4); q = 2, k = 0 → s_0 = 0; v = 5; scale 1
    //   m = max(1, 0) = 1, u = 2 + e⁻¹, w = 4 + 5e⁻¹, o = w/u
    // dOut = 1, dm = 1: P_00 = e⁻¹/u, P_0,init = 1/u
    //   ds_0 = P_00·(v − o) = (e⁻¹/u)·(5u − w)/u = 6/(e·u²)    (5u − w = 10 + 5/e − 4 − 5/e = 6)
    //   dk = ds_0·q = 12/(e·u²), dq = ds_0·k = 0, dv = P_00 = e⁻¹/u
    //   dw_init = 1/u, du_init = −o/u, dm_init = 4/u − 2·o/u + g_m = (4u − 2w)/u² + 1 = 1 − 6/(e·u²)
    //   (g_m = dm = 1 goes to the initial state, the maximiser; ds_0 + dm_init = dm: shifting every
    //   score and m_init together moves only m)
    const dims: AarenDims = { B: 1, T: 1, H: 1, K: 1 };
    const x: AarenInputs = { q: [2], k: [0], v: [5], scale: 1, initialState: { m: [1], u: [2], w: [4] } };
    const u = 2 + 1 / Math.E;
    const w = 4 + 5 / Math.E;
    const { o, state } = aarenOracle(x, dims);
    expect(o[0]).toBeCloseTo(w / u, 14);
    expect([state.m[0], state.u[0], state.w[0]]).toEqual([1, u, w]);

    const g = aarenGradOracle(x, dims, [1], { m: [1] });
    expect(g.k[0]).toBeCloseTo(12 / (Math.E * u * u), 14);
    expect(g.q[0]).toBe(0);
    expect(g.v[0]).toBeCloseTo(1 / (Math.E * u), 14);
    expect(g.initialState!.w[0]).toBeCloseTo(1 / u, 14);
    expect(g.initialState!.u[0]).toBeCloseTo(-w / (u * u), 14);
    expect(g.initialState!.m[0]).toBeCloseTo(1 - 6 / (Math.E * u * u), 14);
  });
});

// ---------------------------------------------------------------------------------------------
// against plain softmax attention

describe('causal softmax attention with one learned query per head', () => {
  it('o_t = Σ_{j≤t} softmax_j(s)·v_j, computed naively per t, equals the scan', () => {
    fc.assert(fc.property(smallCases, fc.integer({ min: 1, max: 40 }), (s, T) => {
      const dims = { B: s.B, T, H: s.H, K: s.K };
      const { x } = makeCase(dims, { ...s, init: 'none' }, s.seed);
      const sc = scores(x, dims);
      const { B, H, K } = dims;
      const want = new Float64Array(B * T * H * K);
      for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
        // the usual stable softmax over the visible keys 0..t: shift by their max
        let mx = -Infinity;
        for (let j = 0; j <= t; j++) mx = Math.max(mx, sc[(b * T + j) * H + h]!);
        let den = 0;
        for (let j = 0; j <= t; j++) den += Math.exp(sc[(b * T + j) * H + h]! - mx);
        for (let j = 0; j <= t; j++) {
          const a = Math.exp(sc[(b * T + j) * H + h]! - mx) / den;
          for (let n = 0; n < K; n++) want[((b * T + t) * H + h) * K + n] += a * x.v[((b * T + j) * H + h) * K + n]!;
        }
      }
      // the same terms, summed in another order: a few ε64 per term
      expect(relErr(aarenOracle(x, dims).o, want)).toBeLessThan(1e-13);
    }));
  });
});

// ---------------------------------------------------------------------------------------------
// gradients against finite differences

describe('gradients vs central finite differences', () => {
  it('random shapes, initial states (none, empty, random) and final-state cotangents', () => {
    fc.assert(fc.property(smallCases, (s) => {
      const c = makeCase({ B: s.B, T: s.T, H: s.H, K: s.K }, s, s.seed);
      fc.pre(maxGap(c.x, c.dims) > 1e-3);
      expectGradsMatchFiniteDiff(c);
    }), { numRuns: 60 });
  });

  it('T = 0: o is empty, the state is the initial one, and dState flows straight to it', () => {
    const dims: AarenDims = { B: 2, T: 0, H: 2, K: 3 };
    for (const init of ['random', 'empty'] as const) {
      const c = makeCase(dims, { init, dm: true, du: true, dw: true, scale: false }, 5);
      const { o, state } = aarenOracle(c.x, dims);
      expect(o.length).toBe(0);
      for (const part of ['m', 'u', 'w'] as const) expect(Array.from(state[part])).toEqual(Array.from(c.x.initialState![part]));
      const g = aarenGradOracle(c.x, dims, c.dOut, c.dState);
      for (const part of ['m', 'u', 'w'] as const) {
        expect(maxAbsDiff(g.initialState![part], c.dState[part]!), `${init} ${part}`).toBeLessThan(1e-15);
      }
      expect(maxAbs(g.q)).toBe(0);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// structure

describe('two pieces carrying the state', () => {
  it('equal one run, forward (bit for bit) and backward', () => {
    fc.assert(fc.property(smallCases, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), (s, frac) => {
      const T = s.T + 1; // at least 2, so both pieces are non-empty
      const T1 = 1 + Math.floor(frac * (T - 1));
      const T2 = T - T1;
      const { B, H, K } = s;
      const W = H * K;
      const c = makeCase({ B, T, H, K }, s, s.seed);
      fc.pre(maxGap(c.x, c.dims) > 1e-9);
      const x = c.x;
      const part = (t0: number, t1: number, init: AarenState<ArrayLike<number>> | undefined): AarenInputs => ({
        q: x.q, k: sliceT(x.k, B, T, W, t0, t1), v: sliceT(x.v, B, T, W, t0, t1), scale: x.scale, ...(init ? { initialState: init } : {}),
      });
      const d1 = { B, T: T1, H, K };
      const d2 = { B, T: T2, H, K };
      const x1 = part(0, T1, x.initialState);
      const r1 = aarenOracle(x1, d1);
      const x2 = part(T1, T, r1.state);
      const r2 = aarenOracle(x2, d2);
      const full = aarenOracle(x, c.dims);
      // the same merges in the same order
      expect(maxAbsDiff(concatT(r1.o, r2.o, B, T1, T2, W), full.o)).toBe(0);
      for (const p of ['m', 'u', 'w'] as const) expect(maxAbsDiff(r2.state[p], full.state[p])).toBe(0);

      // backward: the second piece's gradient in its initial state is the first piece's dState
      const g2 = aarenGradOracle(x2, d2, sliceT(c.dOut, B, T, W, T1, T), c.dState);
      const g1 = aarenGradOracle(x1, d1, sliceT(c.dOut, B, T, W, 0, T1), g2.initialState);
      const gf = aarenGradOracle(x, c.dims, c.dOut, c.dState);
      expect(relErr(concatT(g1.k, g2.k, B, T1, T2, W), gf.k), 'k').toBeLessThan(1e-12);
      expect(relErr(concatT(g1.v, g2.v, B, T1, T2, W), gf.v), 'v').toBeLessThan(1e-12);
      expect(relErr(g1.q.map((g, n) => g + g2.q[n]!), gf.q), 'q').toBeLessThan(1e-12);
      if (gf.initialState) for (const p of ['m', 'u', 'w'] as const) expect(relErr(g1.initialState![p], gf.initialState[p]), p).toBeLessThan(1e-12);
    }));
  });
});

describe('scores far apart', () => {
  it('s from −200 to 200: o, the state and every gradient are finite, and match softmax attention and finite differences', () => {
    // K = 1, q = 1, scale 1: s_t = k_t, drawn over [−200, 200], so e^{s_j − m_t} spans e^{−400}..1
    const T = 12;
    const dims: AarenDims = { B: 1, T, H: 1, K: 1 };
    const x: AarenInputs = {
      q: [1], k: uniform64(3, T, -200, 200), v: uniform64(4, T), scale: 1,
      initialState: { m: [150], u: [2], w: [1] },
    };
    const dOut = uniform64(5, T);
    const dState = { m: Float64Array.of(0.5), u: Float64Array.of(0.25), w: Float64Array.of(-0.5) };
    const { o, state } = aarenOracle(x, dims);
    expect(allFinite(o) && allFinite(state.m) && allFinite(state.u) && allFinite(state.w)).toBe(true);
    expect(state.u[0]).toBeGreaterThanOrEqual(1);
    // o_t is a convex combination of the values and of w_init/u_init
    for (let t = 0; t < T; t++) expect(Math.abs(o[t]!)).toBeLessThanOrEqual(1);
    const want = Float64Array.from({ length: T }, (_, t) => {
      const s = [x.initialState!.m[0]!, ...Array.from(x.k).slice(0, t + 1)];
      const mx = Math.max(...s);
      const mass = [x.initialState!.u[0]!, ...Array(t + 1).fill(1)];
      const vals = [x.initialState!.w[0]! / x.initialState!.u[0]!, ...Array.from(x.v).slice(0, t + 1)];
      let num = 0;
      let den = 0;
      s.forEach((sj, j) => { num += mass[j]! * Math.exp(sj - mx) * vals[j]!; den += mass[j]! * Math.exp(sj - mx); });
      return num / den;
    });
    expect(relErr(o, want)).toBeLessThan(1e-13);
    const c: Case = { dims, x, dOut, dState };
    expect(maxGap(x, dims)).toBeGreaterThan(1e-3);
    expectGradsMatchFiniteDiff(c);
  });
});

describe('the state', () => {
  it('is redundant in m: (m + δ, u·e^{−δ}, w·e^{−δ}) gives the same outputs, and dm − u·du − w·dw = 0 with the loss on o', () => {
    fc.assert(fc.property(smallCases, fc.double({ min: -3, max: 3, noNaN: true }), (s, delta) => {
      const c = makeCase({ B: s.B, T: s.T, H: s.H, K: s.K }, { ...s, init: 'random' }, s.seed);
      const { B, H, K } = c.dims;
      const init = c.x.initialState!;
      const shifted: AarenInputs = { ...c.x, initialState: {
        m: Float64Array.from(init.m, (m) => m + delta),
        u: Float64Array.from(init.u, (u) => u * Math.exp(-delta)),
        w: Float64Array.from(init.w, (w) => w * Math.exp(-delta)),
      } };
      expect(relErr(aarenOracle(shifted, c.dims).o, aarenOracle(c.x, c.dims).o)).toBeLessThan(1e-13);
      const g = aarenGradOracle(c.x, c.dims, c.dOut).initialState!;
      for (let bh = 0; bh < B * H; bh++) {
        let along = g.m[bh]! - init.u[bh]! * g.u[bh]!;
        let size = Math.abs(g.m[bh]!) + Math.abs(init.u[bh]! * g.u[bh]!);
        for (let n = 0; n < K; n++) {
          along -= init.w[bh * K + n]! * g.w[bh * K + n]!;
          size += Math.abs(init.w[bh * K + n]! * g.w[bh * K + n]!);
        }
        expect(Math.abs(along)).toBeLessThan(1e-14 * Math.max(1, size));
      }
    }));
  });

  it('the empty state (−∞, 0, 0) is the identity of ⊕, merged with itself too, and equals no initial state', () => {
    const K = 3;
    const a = { m: 0.5, u: 2, w: Float64Array.from([1, -2, 0.5]) };
    for (const [l, r] of [[emptyHead(K), a], [a, emptyHead(K)]]) {
      const got = merge(l, r);
      expect([got.m, got.u, Array.from(got.w)]).toEqual([a.m, a.u, Array.from(a.w)]);
    }
    const both = merge(emptyHead(K), emptyHead(K));
    expect([both.m, both.u, Array.from(both.w)]).toEqual([-Infinity, 0, [0, 0, 0]]);

    fc.assert(fc.property(smallCases, (s) => {
      const dims = { B: s.B, T: s.T, H: s.H, K: s.K };
      const empty = makeCase(dims, { ...s, init: 'empty' }, s.seed);
      const none: AarenInputs = { ...empty.x, initialState: undefined };
      fc.pre(maxGap(none, dims) > 0);
      const r1 = aarenOracle(empty.x, dims);
      const r0 = aarenOracle(none, dims);
      expect(maxAbsDiff(r1.o, r0.o)).toBe(0);
      for (const p of ['m', 'u', 'w'] as const) expect(maxAbsDiff(r1.state[p], r0.state[p])).toBe(0);
      const g1 = aarenGradOracle(empty.x, dims, empty.dOut, empty.dState);
      const g0 = aarenGradOracle(none, dims, empty.dOut, empty.dState);
      for (const p of ['q', 'k', 'v'] as const) expect(maxAbsDiff(g1[p], g0[p]), p).toBe(0);
      // nothing of a later token reaches an empty initial state
      for (const p of ['m', 'u', 'w'] as const) expect(maxAbs(g1.initialState![p]), p).toBe(0);
    }));
  });
});

describe('input checks', () => {
  const dims: AarenDims = { B: 1, T: 2, H: 2, K: 3 };
  const ok = makeCase(dims, { init: 'random', dm: true, du: true, dw: true, scale: false }, 3);

  it('names the argument, its length and the expected one', () => {
    expect(() => aarenOracle({ ...ok.x, q: new Float64Array(5) }, dims)).toThrow(/q has 5 values, expected 6/);
    expect(() => aarenOracle({ ...ok.x, initialState: { ...ok.x.initialState!, w: new Float64Array(2) } }, dims))
      .toThrow(/initialState.w has 2 values, expected 6/);
    expect(() => aarenGradOracle(ok.x, dims, ok.dOut, { u: new Float64Array(1) })).toThrow(/dState.u has 1 values, expected 2/);
    expect(() => aarenOracle(ok.x, { ...dims, K: 1.5 })).toThrow(/K must be an integer/);
  });
});
