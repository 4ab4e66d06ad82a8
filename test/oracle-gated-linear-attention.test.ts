// Tests of the float64 GatedLinearAttention oracle itself (test/oracle/gated-linear-attention.ts),
// no tfjs: an example worked by hand, gradients against central finite differences, two pieces
// carrying the state, and agreement with flash-linear-attention's own `naive_recurrent_gla`
// (test/fixtures/gla-naive-recurrent.json, written by scripts/fixtures/gla-naive-recurrent.py).

import { readFileSync } from 'node:fs';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  gatedLinearAttentionGradOracle, gatedLinearAttentionMagnitudes, gatedLinearAttentionOracle,
  type GlaDims, type GlaInputs,
} from './oracle/gated-linear-attention.js';
import { allFinite, EPS32, finiteDiff, maxAbs, maxAbsDiff, uniform64 } from './helpers.js';

type Case = { dims: GlaDims; x: GlaInputs; dOut: Float64Array; dState?: Float64Array };

/** Random inputs: q, k, v in [−1, 1), gates in [−2, 0], optionally an initial state, dState and a scale. */
function makeCase(dims: GlaDims, seed: number, f: { initialState: boolean; dState: boolean; scale: boolean }): Case {
  const { B, T, H, K, V } = dims;
  const x: GlaInputs = {
    q: uniform64(seed, B * T * H * K), k: uniform64(seed + 1, B * T * H * K), v: uniform64(seed + 2, B * T * H * V),
    g: uniform64(seed + 3, B * T * H * K, -2, 0),
  };
  if (f.initialState) x.initialState = uniform64(seed + 4, B * H * K * V);
  if (f.scale) x.scale = 0.3 + uniform64(seed + 5, 1, 0, 1)[0]!;
  return { dims, x, dOut: uniform64(seed + 6, B * T * H * V), ...(f.dState ? { dState: uniform64(seed + 7, B * H * K * V) } : {}) };
}

/** L = Σ dOut·out + Σ dState·state, the scalar whose gradient the grad oracle returns. */
function loss(c: Case): number {
  const { out, state } = gatedLinearAttentionOracle(c.x, c.dims);
  let L = 0;
  for (let n = 0; n < out.length; n++) L += c.dOut[n]! * out[n]!;
  if (c.dState) for (let n = 0; n < state.length; n++) L += c.dState[n]! * state[n]!;
  return L;
}

/** Tokens [t0, t1) of a `[B, T, W]` array (W = H·K or H·V), as `[B, t1 − t0, W]`. */
function sliceT(a: ArrayLike<number>, B: number, T: number, W: number, t0: number, t1: number): Float64Array {
  const out = new Float64Array(B * (t1 - t0) * W);
  for (let b = 0; b < B; b++) out.set(Array.prototype.slice.call(a, (b * T + t0) * W, (b * T + t1) * W), b * (t1 - t0) * W);
  return out;
}

const smallCases = fc.record({
  B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 6 }), H: fc.integer({ min: 1, max: 2 }),
  K: fc.integer({ min: 1, max: 3 }), V: fc.integer({ min: 1, max: 3 }),
  initialState: fc.boolean(), dState: fc.boolean(), scale: fc.boolean(),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

describe('worked by hand', () => {
  it('B = H = 1, T = 2, K = 2, V = 1, scale 1, with an initial state', () => {
    // S₋₁ = [2, 4]ᵀ
    // t = 0: exp(g₀) = [1/2, 1], k₀ᵀv₀ = [1, 2]ᵀ·3 = [3, 6]ᵀ → S₀ = [2/2 + 3, 4 + 6] = [4, 10]
    //        o₀ = q₀·S₀ = [1, −1]·[4, 10] = −6
    // t = 1: exp(g₁) = [1, 1/2], k₁ᵀv₁ = [−1, 1]ᵀ·2 = [−2, 2]ᵀ → S₁ = [4 − 2, 5 + 2] = [2, 7]
    //        o₁ = [3, 1]·[2, 7] = 13
    const x: GlaInputs = {
      q: [1, -1, 3, 1], k: [1, 2, -1, 1], v: [3, 2], g: [-Math.LN2, 0, 0, -Math.LN2], initialState: [2, 4], scale: 1,
    };
    const dims = { B: 1, T: 2, H: 1, K: 2, V: 1 };
    const { out, state } = gatedLinearAttentionOracle(x, dims);
    expect(maxAbsDiff(out, [-6, 13])).toBeLessThan(1e-14);
    expect(maxAbsDiff(state, [2, 7])).toBeLessThan(1e-14);
    // L = o₁ (dOut = [0, 1]): dq₁ = S₁ = [2, 7], dq₀ = 0; dS₁ = q₁ = [3, 1];
    // dk₁ = dS₁·v₁ = [6, 2], dv₁ = k₁·dS₁ = −3 + 1 = −2; dg₁ = exp(g₁) ⊙ dS₁ ⊙ S₀ = [1·3·4, ½·1·10] = [12, 5];
    // dS₀ = exp(g₁) ⊙ dS₁ = [3, 1/2]: dk₀ = dS₀·v₀ = [9, 3/2], dv₀ = k₀·dS₀ = 3 + 1 = 4,
    // dg₀ = exp(g₀) ⊙ dS₀ ⊙ S₋₁ = [½·3·2, 1·½·4] = [3, 2]; dS₋₁ = exp(g₀) ⊙ dS₀ = [3/2, 1/2]
    const g = gatedLinearAttentionGradOracle(x, dims, [0, 1]);
    expect(maxAbsDiff(g.q, [0, 0, 2, 7])).toBeLessThan(1e-14);
    expect(maxAbsDiff(g.k, [9, 1.5, 6, 2])).toBeLessThan(1e-14);
    expect(maxAbsDiff(g.v, [4, -2])).toBeLessThan(1e-14);
    expect(maxAbsDiff(g.g, [3, 2, 12, 5])).toBeLessThan(1e-14);
    expect(maxAbsDiff(g.initialState!, [1.5, 0.5])).toBeLessThan(1e-14);
  });

  it('the default scale is 1/sqrt(K), and no initial state means zeros', () => {
    // K = 4: S₀ = k₀ᵀv₀ = [2, 0, 0, 0]ᵀ, o₀ = (1/2)·[1, 1, 1, 1]·S₀ = 1
    const { out, state } = gatedLinearAttentionOracle(
      { q: [1, 1, 1, 1], k: [1, 0, 0, 0], v: [2], g: [0, 0, 0, 0] }, { B: 1, T: 1, H: 1, K: 4, V: 1 });
    expect(Array.from(out)).toEqual([1]);
    expect(Array.from(state)).toEqual([2, 0, 0, 0]);
  });
});

describe('gradients', () => {
  /**
   * Every gradient against central differences (h = 1e-6). Tolerance, derived: rounding in
   * (L(x+h) − L(x−h))/2h is about ε64·|L|/h ≈ 2.2e-16 · 50 / 1e-6 ≈ 1e-8 (|L| ≲ 50 here: at
   * most 2·6·2·3 outputs, each a sum of ≤ 7 terms of ≤ 1·1·1·scale ≤ 1.3 plus the state's), and
   * the truncation error is h²·|L'''|/6 ≈ 1e-12·O(100); so 1e-6 · max(1, max|g|) leaves a wide
   * margin, while a dropped or mis-signed term of the chain rule changes some entry by O(0.1).
   */
  it('match central finite differences, with and without initial state and dState', () => {
    fc.assert(fc.property(smallCases, (s) => {
      const dims = { B: s.B, T: s.T, H: s.H, K: s.K, V: s.V };
      const c = makeCase(dims, s.seed, s);
      const g = gatedLinearAttentionGradOracle(c.x, dims, c.dOut, c.dState);
      for (const name of ['q', 'k', 'v', 'g', 'initialState'] as const) {
        const xs = c.x[name] as Float64Array | undefined;
        if (xs === undefined) {
          expect(g[name], `${name} absent`).toBeUndefined();
          continue;
        }
        const analytic = g[name]!;
        expect(allFinite(analytic), name).toBe(true);
        expect(maxAbsDiff(analytic, finiteDiff(() => loss(c), xs)), name).toBeLessThanOrEqual(1e-6 * Math.max(1, maxAbs(analytic)));
      }
    }), { numRuns: 40 });
  });
});

describe('pieces', () => {
  it('two pieces carrying the state equal one run, bit for bit (the same steps in the same order)', () => {
    fc.assert(fc.property(smallCases.filter((s) => s.T >= 2), fc.double({ min: 0, max: 1, noNaN: true }), (s, at) => {
      const { B, T, H, K, V } = s;
      const c = makeCase({ B, T, H, K, V }, s.seed, s);
      const cut = 1 + Math.floor(at * (T - 1));
      const piece = (t0: number, t1: number, initialState?: ArrayLike<number>) => gatedLinearAttentionOracle({
        q: sliceT(c.x.q, B, T, H * K, t0, t1), k: sliceT(c.x.k, B, T, H * K, t0, t1), v: sliceT(c.x.v, B, T, H * V, t0, t1),
        g: sliceT(c.x.g, B, T, H * K, t0, t1), scale: c.x.scale, ...(initialState ? { initialState } : {}),
      }, { B, T: t1 - t0, H, K, V });
      const one = gatedLinearAttentionOracle(c.x, c.dims);
      const first = piece(0, cut, c.x.initialState);
      const second = piece(cut, T, first.state);
      expect(Array.from(sliceT(one.out, B, T, H * V, 0, cut))).toEqual(Array.from(first.out));
      expect(Array.from(sliceT(one.out, B, T, H * V, cut, T))).toEqual(Array.from(second.out));
      expect(Array.from(one.state)).toEqual(Array.from(second.state));
    }), { numRuns: 30 });
  });

  it('T = 0 gives no output and the initial state (or zeros) as the state', () => {
    const dims = { B: 2, T: 0, H: 1, K: 2, V: 3 };
    const init = uniform64(5, 12);
    const none = { q: [], k: [], v: [], g: [] };
    expect(gatedLinearAttentionOracle({ ...none, initialState: init }, dims)).toEqual({ out: new Float64Array(0), state: init });
    expect(Array.from(gatedLinearAttentionOracle(none, dims).state)).toEqual(new Array(12).fill(0));
    expect(Array.from(gatedLinearAttentionGradOracle({ ...none, initialState: init }, dims, [], init).initialState!)).toEqual(Array.from(init));
  });
});

/** One case of the fixture, as scripts/fixtures/gla-naive-recurrent.py writes it. */
type FixtureCase = GlaDims & {
  name: string; q: number[]; k: number[]; v: number[]; g: number[]; initialState: number[] | null; output: number[]; state: number[];
};

describe('flash-linear-attention naive_recurrent_gla (fixture)', () => {
  const fixture = JSON.parse(readFileSync(new URL('./fixtures/gla-naive-recurrent.json', import.meta.url), 'utf8')) as {
    flaCommit: string; torchVersion: string; cases: FixtureCase[];
  };

  it('comes from the pinned fla commit and covers T = 1, no initial state and an initial state', () => {
    expect(fixture.flaCommit).toBe('bc3b101dcb713ddc5bd8924b66754eb68b5ccf89');
    expect(fixture.cases.map((c) => [c.T === 1, c.initialState !== null])).toEqual(
      expect.arrayContaining([[true, true], [false, false], [false, true]]));
  });

  /**
   * fla computes in float32 (naive.py casts with `.float()`) on float32-representable inputs, so
   * the oracle's float64 result differs from it by fla's rounding alone. Tolerance, derived per
   * entry, with u = 2⁻²⁴ the unit roundoff and ε = EPS32 = 2u: a term k_j v_j of the state is
   * rounded once as a product, then at each later step by exp(g) (≤ 1 ulp = 2u), the multiply
   * and the add: ≤ (4T + 2)u; the output then rounds scale (to float32), q·scale, q_i·h_i and a
   * sum of K of them: K + 2 more. So |fla − oracle| ≤ (4T + K + 4)·u·M = (2T + K/2 + 2)·ε·M,
   * with M the same entry of the oracle run on absolute values (Σ |terms|); the test uses
   * (2T + K + 4)·ε·M. A wrong layout, scale or gate changes entries by O(M).
   */
  it('the oracle equals fla\'s float32 output and final state within fla\'s rounding', () => {
    for (const c of fixture.cases) {
      const dims = { B: c.B, T: c.T, H: c.H, K: c.K, V: c.V };
      const x: GlaInputs = { q: c.q, k: c.k, v: c.v, g: c.g, ...(c.initialState ? { initialState: c.initialState } : {}) };
      expect(Math.max(...c.g), c.name).toBeLessThanOrEqual(0);
      const { out, state } = gatedLinearAttentionOracle(x, dims);
      const mag = gatedLinearAttentionMagnitudes(x, dims, new Float64Array(out.length));
      const n = 2 * c.T + c.K + 4;
      for (const [what, got, want, m] of [['output', out, c.output, mag.out], ['state', state, c.state, mag.state]] as const) {
        expect(got.length, `${c.name}: ${what}`).toBe(want.length);
        let worst = 0;
        for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (n * EPS32 * m[i]!));
        expect(worst, `${c.name}: ${what}, worst error over its bound`).toBeLessThanOrEqual(1);
      }
      expect(maxAbs(out), c.name).toBeGreaterThan(0.1);
    }
  });
});

describe('input checks', () => {
  it('names the argument, its length and the expected one', () => {
    const dims = { B: 1, T: 2, H: 1, K: 2, V: 3 };
    const ok = makeCase(dims, 3, { initialState: true, dState: true, scale: false });
    expect(() => gatedLinearAttentionOracle({ ...ok.x, v: new Float64Array(5) }, dims)).toThrow(/v has 5 values, expected 6/);
    expect(() => gatedLinearAttentionOracle({ ...ok.x, initialState: new Float64Array(2) }, dims)).toThrow(/initialState has 2 values, expected 6/);
    expect(() => gatedLinearAttentionGradOracle(ok.x, dims, ok.dOut, new Float64Array(1))).toThrow(/dState has 1 values, expected 6/);
    expect(() => gatedLinearAttentionOracle(ok.x, { ...dims, K: 1.5 })).toThrow(/K must be an integer/);
  });
});
