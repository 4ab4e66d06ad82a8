// Tests of the float64 attention oracles themselves (test/oracle/attention.ts), no tfjs:
// gradients against central finite differences, block-sparse vs causal, GQA vs repeated heads,
// huge logits, and exact zeros on rows with no visible key.

import { describe, expect, it } from 'vitest';
import {
  blockSparseMask, expressiveAttentionGradOracle, expressiveAttentionOracle, softmaxAttentionGradOracle,
  softmaxAttentionOracle, visibleMask, visibleMaskPerRow,
  type AttentionGrads, type AttentionShape, type MaskFn,
} from './oracle/attention.js';
import { finiteDiff, maxAbs, maxAbsDiff, mulberry32 } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// helpers


/** n values uniform in [−amp, amp). */
function uniform(seed: number, n: number, amp = 1): Float64Array {
  const r = mulberry32(seed);
  return Float64Array.from({ length: n }, () => amp * (2 * r() - 1));
}

const qSize = (s: AttentionShape) => s.B * s.Tq * s.H * s.K;
const kvSize = (s: AttentionShape) => s.B * s.Tk * s.Hkv * s.K;

function inputs(s: AttentionShape, seed: number) {
  return {
    q: uniform(seed, qSize(s)), k: uniform(seed + 1, kvSize(s)),
    v: uniform(seed + 2, kvSize(s)), dO: uniform(seed + 3, qSize(s)),
  };
}

function dotAll(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let acc = 0;
  for (let n = 0; n < a.length; n++) acc += a[n]! * b[n]!;
  return acc;
}

/** max |a − b| / max |a|, 0 when both are all zeros. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const d = maxAbsDiff(a, b);
  const m = Math.max(maxAbs(a), maxAbs(b));
  return m === 0 ? d : d / m;
}


const allZero = (a: ArrayLike<number>) => Array.prototype.every.call(a, (x: number) => x === 0);
const allFinite = (a: ArrayLike<number>) => Array.prototype.every.call(a, (x: number) => Number.isFinite(x));

// ---------------------------------------------------------------------------------------------
// the two mixers under one interface, so every check runs on both

type Opts = { causal: boolean; scale?: number; mask?: MaskFn; epsilon?: number };
type Mixer = {
  name: string;
  forward: (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, s: AttentionShape, o: Opts) => Float64Array;
  grad: (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dO: ArrayLike<number>, s: AttentionShape, o: Opts) => AttentionGrads;
};

const mixers: Mixer[] = [
  {
    name: 'softmax',
    forward: (q, k, v, s, o) => softmaxAttentionOracle(q, k, v, s, o).o,
    grad: softmaxAttentionGradOracle,
  },
  {
    name: 'expressive ε=1e-6',
    forward: (q, k, v, s, o) => expressiveAttentionOracle(q, k, v, s, o).o,
    grad: expressiveAttentionGradOracle,
  },
  {
    // a large ε, so that the ε terms of the derivative are exercised and not lost in rounding
    name: 'expressive ε=0.3',
    forward: (q, k, v, s, o) => expressiveAttentionOracle(q, k, v, s, { ...o, epsilon: 0.3 }).o,
    grad: (q, k, v, dO, s, o) => expressiveAttentionGradOracle(q, k, v, dO, s, { ...o, epsilon: 0.3 }),
  },
];

type Case = { label: string; shape: AttentionShape; causal: boolean; mask?: MaskFn; emptyRows: number[] };

const cases: Case[] = [
  { label: 'MHA, non-causal, Tq < Tk', shape: { B: 1, Tq: 3, Tk: 4, H: 2, Hkv: 2, K: 3 }, causal: false, emptyRows: [] },
  { label: 'GQA H=4 Hkv=2, causal, Tq < Tk', shape: { B: 2, Tq: 3, Tk: 5, H: 4, Hkv: 2, K: 3 }, causal: true, emptyRows: [] },
  // bottom-right alignment: query i sees j ≤ i − 2, so rows 0 and 1 see nothing
  { label: 'GQA H=4 Hkv=2, causal, Tq > Tk (rows 0, 1 empty)', shape: { B: 2, Tq: 5, Tk: 3, H: 4, Hkv: 2, K: 2 }, causal: true, emptyRows: [0, 1] },
  {
    // row 1 fully masked and key 0 visible to nobody
    label: 'MQA, custom mask with an empty row',
    shape: { B: 1, Tq: 4, Tk: 4, H: 2, Hkv: 1, K: 3 },
    causal: false,
    mask: (i, j) => i !== 1 && j !== 0 && (i + j) % 3 !== 0,
    emptyRows: [1],
  },
  {
    label: 'block-sparse T=7 b=2 w=1 g=1 s=2, GQA',
    shape: { B: 1, Tq: 7, Tk: 7, H: 4, Hkv: 2, K: 2 },
    causal: false,
    mask: blockSparseMask({ T: 7, blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 2 }),
    emptyRows: [],
  },
];

// ---------------------------------------------------------------------------------------------
// (a) gradients against central finite differences

describe('attention oracles: gradients vs central finite differences (float64, h = 1e-6)', () => {
  for (const m of mixers) {
    for (const c of cases) {
      it(`${m.name}: ${c.label}`, () => {
        const { q, k, v, dO } = inputs(c.shape, 11);
        const opts: Opts = { causal: c.causal, mask: c.mask };
        const loss = () => dotAll(m.forward(q, k, v, c.shape, opts), dO);
        const g = m.grad(q, k, v, dO, c.shape, opts);
        for (const [name, x, analytic] of [['dq', q, g.dq], ['dk', k, g.dk], ['dv', v, g.dv]] as const) {
          const fd = finiteDiff(loss, x);
          expect(maxAbs(analytic), `${name} is not trivially zero`).toBeGreaterThan(1e-3);
          expect(relErr(analytic, fd), name).toBeLessThan(1e-6);
        }
      });
    }
  }

  it('rescaling q by a custom scale is the same as the default scale (sanity of the scale plumbing)', () => {
    const shape: AttentionShape = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
    const { q, k, v } = inputs(shape, 5);
    for (const m of mixers) {
      const a = m.forward(q, k, v, shape, { causal: true });
      const b = m.forward(q.map((x) => x / 2), k, v, shape, { causal: true, scale: 1 });
      expect(maxAbsDiff(a, b), m.name).toBeLessThan(1e-14);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// (b) block-sparse mask

describe('blockSparseMask', () => {
  it('matches MIXERS.md §5 on a hand-enumerated layout (T=8 b=2 w=1 g=1 s=2)', () => {
    const f = blockSparseMask({ T: 8, blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 2 });
    // active blocks by hand: I=0 {0}; I=1 {0 sink, 1 local}; I=2 {0 sink and stride, 2}; I=3 {0 sink, 1 stride, 3}
    const active = [[0], [0, 1], [0, 2], [0, 1, 3]];
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 8; j++) {
        const want = active[Math.floor(i / 2)]!.includes(Math.floor(j / 2)) && j <= i;
        expect(f(i, j), `(${i}, ${j})`).toBe(want);
      }
    }
  });

  it('handles a partial last block (T=7 b=3, local window of one block)', () => {
    const f = blockSparseMask({ T: 7, blockSize: 3, localBlocks: 1, globalBlocks: 0, stride: 0 });
    const row = (i: number) => [...Array(7).keys()].filter((j) => f(i, j));
    expect(row(6)).toEqual([6]);
    expect(row(5)).toEqual([3, 4, 5]);
    expect(row(2)).toEqual([0, 1, 2]);
    expect(() => f(7, 0)).toThrow();
  });

  for (const [T, b, w] of [[10, 3, 4], [10, 3, 10], [8, 4, 2], [5, 1, 5]] as const) {
    it(`with w ≥ ceil(T/b) equals causal attention (T=${T} b=${b} w=${w})`, () => {
      const shape: AttentionShape = { B: 2, Tq: T, Tk: T, H: 4, Hkv: 2, K: 3 };
      const { q, k, v, dO } = inputs(shape, 23);
      // sinks and strides on top must change nothing either
      const mask = blockSparseMask({ T, blockSize: b, localBlocks: w, globalBlocks: 1, stride: 3 });
      expect(visibleMask(T, T, false, mask)).toEqual(visibleMask(T, T, true));
      const sparse = softmaxAttentionOracle(q, k, v, shape, { causal: false, mask });
      const causal = softmaxAttentionOracle(q, k, v, shape, { causal: true });
      expect(sparse.o).toEqual(causal.o);
      expect(sparse.lse).toEqual(causal.lse);
      const gs = softmaxAttentionGradOracle(q, k, v, dO, shape, { causal: false, mask });
      const gc = softmaxAttentionGradOracle(q, k, v, dO, shape, { causal: true });
      expect(gs).toEqual(gc);
    });
  }

  it('a narrower window does change the output (the mask is not a no-op)', () => {
    const shape: AttentionShape = { B: 1, Tq: 8, Tk: 8, H: 1, Hkv: 1, K: 3 };
    const { q, k, v } = inputs(shape, 29);
    const mask = blockSparseMask({ T: 8, blockSize: 2, localBlocks: 1, globalBlocks: 0, stride: 0 });
    const sparse = softmaxAttentionOracle(q, k, v, shape, { causal: false, mask }).o;
    const causal = softmaxAttentionOracle(q, k, v, shape, { causal: true }).o;
    expect(maxAbsDiff(sparse, causal)).toBeGreaterThan(1e-3);
  });
});

// ---------------------------------------------------------------------------------------------
// (c) GQA equals MHA with repeated K/V heads

/** [B, T, Hkv, K] → [B, T, H, K], head h copied from kv head floor(h·Hkv/H). */
function repeatHeads(x: Float64Array, s: AttentionShape): Float64Array {
  const y = new Float64Array(s.B * s.Tk * s.H * s.K);
  for (let b = 0; b < s.B; b++) for (let t = 0; t < s.Tk; t++) for (let h = 0; h < s.H; h++) {
    const g = Math.floor((h * s.Hkv) / s.H);
    for (let d = 0; d < s.K; d++) y[((b * s.Tk + t) * s.H + h) * s.K + d] = x[((b * s.Tk + t) * s.Hkv + g) * s.K + d]!;
  }
  return y;
}

/** [B, T, H, K] → [B, T, Hkv, K], summing the heads of each group (the adjoint of repeatHeads). */
function sumHeads(x: Float64Array, s: AttentionShape): Float64Array {
  const y = new Float64Array(s.B * s.Tk * s.Hkv * s.K);
  for (let b = 0; b < s.B; b++) for (let t = 0; t < s.Tk; t++) for (let h = 0; h < s.H; h++) {
    const g = Math.floor((h * s.Hkv) / s.H);
    for (let d = 0; d < s.K; d++) y[((b * s.Tk + t) * s.Hkv + g) * s.K + d] += x[((b * s.Tk + t) * s.H + h) * s.K + d]!;
  }
  return y;
}

describe('GQA equals MHA with repeated K/V heads', () => {
  for (const m of mixers) {
    for (const [H, Hkv] of [[4, 2], [4, 1], [6, 3]] as const) {
      it(`${m.name}: H=${H} Hkv=${Hkv}, causal, Tq ≠ Tk`, () => {
        const shape: AttentionShape = { B: 2, Tq: 4, Tk: 6, H, Hkv, K: 3 };
        const mha: AttentionShape = { ...shape, Hkv: H };
        const { q, k, v, dO } = inputs(shape, 37);
        const kr = repeatHeads(k, shape);
        const vr = repeatHeads(v, shape);
        const opts: Opts = { causal: true };
        expect(maxAbsDiff(m.forward(q, k, v, shape, opts), m.forward(q, kr, vr, mha, opts))).toBeLessThan(1e-15);
        const g = m.grad(q, k, v, dO, shape, opts);
        const gr = m.grad(q, kr, vr, dO, mha, opts);
        expect(maxAbsDiff(g.dq, gr.dq)).toBeLessThan(1e-15);
        // summation order differs between the two, so not bit-exact
        expect(relErr(g.dk, sumHeads(gr.dk, shape))).toBeLessThan(1e-13);
        expect(relErr(g.dv, sumHeads(gr.dv, shape))).toBeLessThan(1e-13);
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------
// (d) huge logits

describe('large logits stay finite and correct', () => {
  // k_j = (C, r_j) and q_i = (1, u_i): s_ij = scale·C + scale·u_i·r_j, a per-row shift of the
  // logits of k_j = (0, r_j), which softmax ignores and which moves lse by exactly scale·C
  const shape: AttentionShape = { B: 1, Tq: 4, Tk: 6, H: 2, Hkv: 1, K: 4 };
  const scale = 1 / Math.sqrt(shape.K);
  for (const target of [80, -80, 500, -500, 1000, -1000]) {
    it(`softmax with logits ≈ ${target}`, () => {
      const { q, k, v, dO } = inputs(shape, 41);
      const C = target / scale;
      const kShift = k.slice();
      const kBase = k.slice();
      for (let n = 0; n < q.length; n += shape.K) q[n] = 1;
      for (let n = 0; n < k.length; n += shape.K) { kShift[n] = C; kBase[n] = 0; }
      const opts = { causal: true };
      const big = softmaxAttentionOracle(q, kShift, v, shape, opts);
      const ref = softmaxAttentionOracle(q, kBase, v, shape, opts);
      expect(allFinite(big.o) && allFinite(big.lse)).toBe(true);
      expect(maxAbsDiff(big.o, ref.o)).toBeLessThan(1e-11);
      expect(maxAbsDiff(big.lse.map((x) => x - target), ref.lse)).toBeLessThan(1e-11);
      const gb = softmaxAttentionGradOracle(q, kShift, v, dO, shape, opts);
      const gr = softmaxAttentionGradOracle(q, kBase, v, dO, shape, opts);
      expect(allFinite(gb.dq) && allFinite(gb.dk) && allFinite(gb.dv)).toBe(true);
      // rows of dS sum to 0, so the shift component of dq vanishes and the rest is unchanged
      expect(maxAbsDiff(gb.dq, gr.dq)).toBeLessThan(1e-9);
      expect(maxAbsDiff(gb.dv, gr.dv)).toBeLessThan(1e-11);
      // dk of the shift column gets scale·Σ dS·1, the rest is unchanged
      expect(maxAbsDiff(gb.dk, gr.dk)).toBeLessThan(1e-11);
    });
  }

  for (const target of [80, 500, 1e4]) {
    it(`expressive with max |s| = ${target}: finite, and ≈ the ε = 0 weights (which ignore the scale)`, () => {
      const { q, k, v, dO } = inputs(shape, 43);
      // largest raw |q·k| over every (i, j), so the scale puts the largest |s| exactly at target
      let raw = 0;
      for (let i = 0; i < shape.Tq; i++) for (let h = 0; h < shape.H; h++) for (let j = 0; j < shape.Tk; j++) {
        let d = 0;
        for (let c = 0; c < shape.K; c++) d += q[(i * shape.H + h) * shape.K + c]! * k[j * shape.K + c]!;
        raw = Math.max(raw, Math.abs(d));
      }
      const big = expressiveAttentionOracle(q, k, v, shape, { causal: true, scale: target / raw });
      const ref = expressiveAttentionOracle(q, k, v, shape, { causal: true, scale: 1, epsilon: 0 });
      expect(allFinite(big.o) && allFinite(big.z)).toBe(true);
      expect(maxAbsDiff(big.o, ref.o)).toBeLessThan(1e-9);
      const g = expressiveAttentionGradOracle(q, k, v, dO, shape, { causal: true, scale: target / raw });
      expect(allFinite(g.dq) && allFinite(g.dk) && allFinite(g.dv)).toBe(true);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// (e) empty rows: exact zeros, never NaN

describe('rows with no visible key', () => {
  const shape: AttentionShape = { B: 2, Tq: 5, Tk: 3, H: 4, Hkv: 2, K: 3 };
  const empty = [0, 1]; // causal, bottom-right: query i sees j ≤ i − 2
  const rowOf = (n: number) => Math.floor(n / (shape.H * shape.K)) % shape.Tq;

  for (const m of mixers) {
    it(`${m.name}: o and dq are exactly 0 on empty rows, everything finite`, () => {
      const { q, k, v, dO } = inputs(shape, 47);
      const o = m.forward(q, k, v, shape, { causal: true });
      const g = m.grad(q, k, v, dO, shape, { causal: true });
      for (const a of [o, g.dq, g.dk, g.dv]) expect(allFinite(a)).toBe(true);
      expect(allZero(o.filter((_, n) => empty.includes(rowOf(n))))).toBe(true);
      expect(allZero(g.dq.filter((_, n) => empty.includes(rowOf(n))))).toBe(true);
      // and the other rows are not zero
      expect(maxAbs(o.filter((_, n) => !empty.includes(rowOf(n))))).toBeGreaterThan(1e-3);
    });
  }

  it('softmax lse is -Infinity and expressive z is 0 on empty rows', () => {
    const { q, k, v } = inputs(shape, 53);
    const { lse } = softmaxAttentionOracle(q, k, v, shape, { causal: true });
    const { z } = expressiveAttentionOracle(q, k, v, shape, { causal: true });
    lse.forEach((x, n) => expect(x, `lse[${n}]`).toBe(empty.includes(n % shape.Tq) ? -Infinity : x));
    lse.forEach((x, n) => { if (!empty.includes(n % shape.Tq)) expect(Number.isFinite(x)).toBe(true); });
    z.forEach((x, n) => { if (empty.includes(n % shape.Tq)) expect(x).toBe(0); else expect(x).toBeGreaterThan(0); });
  });

  it('a mask that hides everything gives all-zero outputs and gradients', () => {
    const s: AttentionShape = { B: 1, Tq: 3, Tk: 4, H: 2, Hkv: 1, K: 2 };
    const { q, k, v, dO } = inputs(s, 59);
    const opts: Opts = { causal: false, mask: () => false };
    for (const m of mixers) {
      expect(allZero(m.forward(q, k, v, s, opts)), m.name).toBe(true);
      const g = m.grad(q, k, v, dO, s, opts);
      expect(allZero(g.dq) && allZero(g.dk) && allZero(g.dv), m.name).toBe(true);
    }
    expect(softmaxAttentionOracle(q, k, v, s, opts).lse.every((x) => x === -Infinity)).toBe(true);
  });

  it('keys visible to no query get exactly zero dk and dv', () => {
    const s: AttentionShape = { B: 1, Tq: 3, Tk: 4, H: 2, Hkv: 2, K: 2 };
    const { q, k, v, dO } = inputs(s, 61);
    const opts: Opts = { causal: false, mask: (_i, j) => j !== 2 };
    for (const m of mixers) {
      const g = m.grad(q, k, v, dO, s, opts);
      const key2 = (a: Float64Array) => a.filter((_, n) => Math.floor(n / (s.Hkv * s.K)) === 2);
      expect(allZero(key2(g.dk)) && allZero(key2(g.dv)), m.name).toBe(true);
      expect(maxAbs(g.dk), m.name).toBeGreaterThan(1e-3);
    }
  });

  it('expressive: a visible row whose q is 0 outputs 0, not NaN (ε > 0)', () => {
    const s: AttentionShape = { B: 1, Tq: 2, Tk: 2, H: 1, Hkv: 1, K: 3 };
    const { k, v, dO } = inputs(s, 67);
    const q = new Float64Array(qSize(s));
    expect(allZero(expressiveAttentionOracle(q, k, v, s, { causal: false }).o)).toBe(true);
    const g = expressiveAttentionGradOracle(q, k, v, dO, s, { causal: false });
    expect(allFinite(g.dq) && allFinite(g.dk) && allFinite(g.dv)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// MIXERS.md §3's backward formula against the exact derivative

/**
 * The §3 formula, taken literally on one head (B = H = Hkv = 1): P = S∘S/Z, dP = dO·Vᵀ,
 * D_i = rowsum(dO_i∘O_i), dS = 2·S∘(dP − D)/Z, dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO,
 * with O the true forward output and Z either ε + Σ s² or the raw Σ s².
 */
function mixersFormula(
  q: Float64Array, k: Float64Array, v: Float64Array, dO: Float64Array, s: AttentionShape,
  scale: number, eps: number, zWithEps: boolean,
): AttentionGrads {
  const { Tq, Tk, K } = s;
  const O = expressiveAttentionOracle(q, k, v, s, { causal: false, scale, epsilon: eps }).o;
  const dq = new Float64Array(Tq * K);
  const dk = new Float64Array(Tk * K);
  const dv = new Float64Array(Tk * K);
  const row = (a: Float64Array, i: number) => a.subarray(i * K, (i + 1) * K);
  for (let i = 0; i < Tq; i++) {
    const S = [...Array(Tk).keys()].map((j) => scale * dotAll(row(q, i), row(k, j)));
    const Z = (zWithEps ? eps : 0) + S.reduce((a, x) => a + x * x, 0);
    const D = dotAll(row(dO, i), row(O, i));
    for (let j = 0; j < Tk; j++) {
      const P = (S[j]! * S[j]!) / Z;
      const dS = (2 * S[j]! * (dotAll(row(dO, i), row(v, j)) - D)) / Z;
      for (let d = 0; d < K; d++) {
        dq[i * K + d] += scale * dS * k[j * K + d]!;
        dk[j * K + d] += scale * dS * q[i * K + d]!;
        dv[j * K + d] += P * dO[i * K + d]!;
      }
    }
  }
  return { dq, dk, dv };
}

describe('MIXERS.md §3 expressive backward vs the exact derivative', () => {
  const s: AttentionShape = { B: 1, Tq: 3, Tk: 4, H: 1, Hkv: 1, K: 3 };
  const { q, k, v, dO } = inputs(s, 71);
  const scale = 1 / Math.sqrt(s.K);

  it('agrees when Z includes ε (Z = ε + Σ s², the forward denominator)', () => {
    for (const eps of [1e-6, 0.3, 2]) {
      const exact = expressiveAttentionGradOracle(q, k, v, dO, s, { causal: false, epsilon: eps });
      const f = mixersFormula(q, k, v, dO, s, scale, eps, true);
      for (const name of ['dq', 'dk', 'dv'] as const) expect(relErr(f[name], exact[name]), `${name} ε=${eps}`).toBeLessThan(1e-13);
    }
  });

  it('disagrees when Z is the raw accumulated Σ s² (no ε): K=1, q=1e-4, k=v=dO=1, scale=1, ε=1e-6', () => {
    const one: AttentionShape = { B: 1, Tq: 1, Tk: 1, H: 1, Hkv: 1, K: 1 };
    const [q1, k1, v1, d1] = [1e-4, 1, 1, 1].map((x) => Float64Array.of(x)) as [Float64Array, Float64Array, Float64Array, Float64Array];
    const exact = expressiveAttentionGradOracle(q1, k1, v1, d1, one, { causal: false, scale: 1 });
    // o = s²/(ε + s²) with s = q: do/dq = 2·s·ε/(ε + s²)² ≈ 196.06, do/dv = s²/(ε + s²) ≈ 0.0099
    expect(exact.dq[0]).toBeCloseTo((2 * 1e-4 * 1e-6) / (1e-6 + 1e-8) ** 2, 9);
    expect(exact.dv[0]).toBeCloseTo(1e-8 / (1e-6 + 1e-8), 12);
    const withEps = mixersFormula(q1, k1, v1, d1, one, 1, 1e-6, true);
    expect(relErr(withEps.dq, exact.dq)).toBeLessThan(1e-12);
    const raw = mixersFormula(q1, k1, v1, d1, one, 1, 1e-6, false);
    expect(raw.dq[0]).toBeCloseTo(2 * (1 - 1e-8 / (1e-6 + 1e-8)) / 1e-4, 6); // ≈ 19802, 101× too big
    expect(raw.dv[0]).toBe(1); // P = s²/Σs² = 1 instead of a ≈ 0.0099
  });
});

// ---------------------------------------------------------------------------------------------
// MIXERS.md §7 visibility, per batch row

/** The rows of a `[Tq, Tk]` 0/1 matrix as strings, `x` visible and `.` not. */
function draw(m: Uint8Array, Tq: number, Tk: number, from = 0): string[] {
  return Array.from({ length: Tq }, (_, i) => Array.from(m.subarray(from + i * Tk, from + (i + 1) * Tk), (x) => (x ? 'x' : '.')).join(''));
}

describe('visibleMaskPerRow: MIXERS.md §7 on hand-drawn cases', () => {
  const shape = (B: number, Tq: number, Tk: number): AttentionShape => ({ B, Tq, Tk, H: 1, Hkv: 1, K: 1 });

  it('a causal window of 2 keeps the diagonal and the key before it', () => {
    expect(draw(visibleMaskPerRow(shape(1, 4, 4), { causal: true, window: 2 }), 4, 4)).toEqual(['x...', 'xx..', '.xx.', '..xx']);
  });

  it('a window without causal reaches w − 1 keys on either side', () => {
    expect(draw(visibleMaskPerRow(shape(1, 4, 5), { causal: false, window: 2 }), 4, 5)).toEqual(['xxx..', '.xxx.', '..xxx', '...xx']);
  });

  it('queryOffsets place each row\'s queries; the default is Tk − Tq', () => {
    const m = visibleMaskPerRow(shape(2, 2, 4), { causal: true, queryOffsets: [0, 1] });
    expect(draw(m, 2, 4)).toEqual(['x...', 'xx..']);
    expect(draw(m, 2, 4, 8)).toEqual(['xx..', 'xxx.']);
    expect(draw(visibleMaskPerRow(shape(1, 2, 4), { causal: true }), 2, 4)).toEqual(['xxx.', 'xxxx']);
  });

  it('kvLengths, segments and a mask restrict each batch row on its own, and combine with AND', () => {
    const m = visibleMaskPerRow(shape(2, 3, 3), {
      causal: false,
      kvLengths: [3, 0],
      segmentIds: { query: [[0, 0, 1], [5, 5, 5]], key: [[0, 1, 1], [5, 5, 5]] },
      attentionMask: (b, i, j) => !(b === 0 && i === 2 && j === 2),
    });
    expect(draw(m, 3, 3)).toEqual(['x..', 'x..', '.x.']);
    expect(draw(m, 3, 3, 9)).toEqual(['...', '...', '...']);
  });

  it('the softmax and expressive oracles output 0 with no gradient on a row whose keys are all past its length', () => {
    const s: AttentionShape = { B: 2, Tq: 2, Tk: 3, H: 2, Hkv: 1, K: 3 };
    const { q, k, v, dO } = inputs(s, 29);
    for (const m of mixers) {
      const opts = { causal: false, kvLengths: [2, 0] };
      const o = m.forward(q, k, v, s, opts);
      const g = m.grad(q, k, v, dO, s, opts);
      const half = o.length / 2;
      expect(allZero(o.subarray(half)), `${m.name} o of row 1`).toBe(true);
      expect(allZero(g.dq.subarray(half)), `${m.name} dq of row 1`).toBe(true);
      expect(allZero(g.dk.subarray(g.dk.length / 2)), `${m.name} dk of row 1`).toBe(true);
      // row 0 sees keys 0 and 1 only: key 2 gets no gradient
      expect(allZero(g.dk.subarray(2 * s.K, 3 * s.K)), `${m.name} dk of key 2`).toBe(true);
      expect(allZero(o.subarray(0, half)), `${m.name} o of row 0`).toBe(false);
    }
  });
});
