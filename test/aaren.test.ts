// ops.aaren and ops.aarenWithState (MIXERS.md §9): the chunked tfjs-ops reference on cpu and wasm,
// and the WGSL scan kernels on webgpu (with the reference there too), against the float64 oracle
// (test/oracle/aaren.ts), output, final state and every gradient, within bounds derived below;
// sequences across several chunks; two pieces carrying the state; padding; causality; large
// score ranges; non-finite tokens; leaks; errors.
import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import { aaren, aarenStep, aarenWithState, aarenWithStateOver, type AarenOptions, type AarenState } from '../src/mixers/aaren/op.js';
import { AAREN_CHUNK } from '../src/mixers/aaren/reference.js';
import { AAREN_FRAME } from '../src/mixers/aaren/kernel.js';
import { SEEN_CHUNK } from '../src/mixers/gated-linear-attention/kernel.js';
import { aarenGradOracle, aarenOracle, type AarenDims, type AarenInputs } from './oracle/aaren.js';
import type { Implementation } from '../src/validate.js';
import {
  EPS32, REFERENCE_BACKENDS, describeOn, describeScans, underScan, expectNoLeaks, launchedPipelines, maxAbs, maxAbsDiff, mulberry32, seededUniform, values,
} from './helpers.js';

const C = AAREN_CHUNK;

type Case = {
  B: number; T: number; H: number; K: number;
  /**
   * the initial state: none, the empty state (−∞, 0, 0), a random one, or a random one whose m
   * exceeds every score by 1/4 (so that it holds the final max, and m's gradient goes to it)
   */
  init: 'none' | 'empty' | 'random' | 'leading';
  /** whether the loss reads the final state (dm, du, dw) besides the outputs */
  dState: boolean;
  /** a scale of our own instead of 1/√K */
  scale: boolean;
  /** 1: q as drawn (|s| ≲ √K); otherwise each head's q rescaled to a largest entry of `spread` (|s| in the hundreds) */
  spread: number;
  seed: number;
};

/** T of 1, within a chunk, and across up to three chunk boundaries (3c + 5). */
const lengths = fc.oneof(fc.constant(1), fc.integer({ min: 2, max: C }), fc.integer({ min: C + 1, max: 3 * C + 5 }));

const cases: fc.Arbitrary<Case> = fc.record({
  B: fc.integer({ min: 1, max: 2 }), T: lengths, H: fc.integer({ min: 1, max: 3 }), K: fc.integer({ min: 1, max: 8 }),
  init: fc.constantFrom('none', 'empty', 'random', 'leading') as fc.Arbitrary<Case['init']>,
  dState: fc.boolean(), scale: fc.boolean(), spread: fc.constant(1), seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

/**
 * float32 inputs of a case: k, v, dOut in [−1, 1), q too, or scaled to a largest entry of `spread`
 * per head; a random state has m in [−1, 1), u in [0.5, 3), |w/u| < 1.
 */
function inputsOf(c: Case) {
  const { B, T, H, K } = c;
  let seed = c.seed;
  const draw = (n: number, lo = -1, hi = 1) => seededUniform(seed++, n, lo, hi);
  const q = draw(H * K);
  if (c.spread !== 1) {
    for (let h = 0; h < H; h++) {
      const head = q.subarray(h * K, (h + 1) * K);
      head.set(head.map((e) => (e * c.spread) / maxAbs(head)));
    }
  }
  const k = draw(B * T * H * K);
  const v = draw(B * T * H * K);
  const dOut = draw(B * T * H * K);
  const dm = draw(B * H);
  const du = draw(B * H);
  const dw = draw(B * H * K);
  const scale = c.scale ? Math.fround(0.25 + 2 * mulberry32(seed++)()) : undefined;
  let init: { m: Float32Array; u: Float32Array; w: Float32Array } | undefined;
  if (c.init === 'empty') init = { m: new Float32Array(B * H).fill(-Infinity), u: new Float32Array(B * H), w: new Float32Array(B * H * K) };
  if (c.init === 'random' || c.init === 'leading') {
    const u = draw(B * H, 0.5, 3);
    init = { m: draw(B * H), u, w: draw(B * H * K).map((r, n) => r * u[Math.floor(n / K)]!) };
  }
  const x = { q, k, v, dOut, dState: c.dState ? { m: dm, u: du, w: dw } : undefined, scale, init };
  if (c.init === 'leading') {
    const s = scores(c, x);
    for (let bh = 0; bh < B * H; bh++) init!.m[bh] = Math.max(...Array.from({ length: T }, (_, t) => s[bh * T + t]!)) + 0.25;
  }
  return x;
}

type Inputs = ReturnType<typeof inputsOf>;

/** s = scale·q_h·k_t in float64 from the float32 inputs, `[B, H, T]`, and the largest scale·Σ_κ|q_κ·k_κ|. */
function scoresAndSize(c: Case, x: Pick<Inputs, 'q' | 'k' | 'scale'>): { s: Float64Array; Sabs: number } {
  const { B, T, H, K } = c;
  const scale = x.scale ?? 1 / Math.sqrt(K);
  const s = new Float64Array(B * H * T);
  let Sabs = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
    let d = 0;
    let a = 0;
    for (let n = 0; n < K; n++) {
      const p = x.q[h * K + n]! * x.k[((b * T + t) * H + h) * K + n]!;
      d += p;
      a += Math.abs(p);
    }
    s[(b * H + h) * T + t] = scale * d;
    Sabs = Math.max(Sabs, scale * a);
  }
  return { s, Sabs };
}

const scores = (c: Case, x: Pick<Inputs, 'q' | 'k' | 'scale'>) => scoresAndSize(c, x).s;

const oracleInputs = (x: Inputs): AarenInputs => ({ q: x.q, k: x.k, v: x.v, scale: x.scale, ...(x.init ? { initialState: x.init } : {}) });

/** The op's output, final state and gradients of L = Σ dOut·o + Σ dState·state in q, k, v (and the initial state's parts). */
function run(c: Case, x: Inputs, implementation: Implementation = 'auto', step = false) {
  const { B, T, H, K } = c;
  return tf.tidy(() => {
    const ts: tf.Tensor[] = [tf.tensor2d(x.q, [H, K]), tf.tensor4d(x.k, [B, T, H, K]), tf.tensor4d(x.v, [B, T, H, K])];
    if (x.init) ts.push(tf.tensor2d(x.init.m, [B, H]), tf.tensor2d(x.init.u, [B, H]), tf.tensor3d(x.init.w, [B, H, K]));
    // with `step`, one token through aarenStep (the layer's decode step) from rows at position 0
    const op = (q: tf.Tensor2D, k: tf.Tensor4D, v: tf.Tensor4D, o: AarenOptions) => {
      if (!step) return aarenWithState(q, k, v, o);
      const r = aarenStep(q, k, v, tf.zeros([B], 'int32'), o);
      r.positions.dispose();
      return r;
    };
    const f = (...t: tf.Tensor[]) => op(t[0] as tf.Tensor2D, t[1] as tf.Tensor4D, t[2] as tf.Tensor4D, {
      scale: x.scale, implementation, ...(t.length > 3 ? { initialState: { m: t[3] as tf.Tensor2D, u: t[4] as tf.Tensor2D, w: t[5] as tf.Tensor3D } } : {}),
    });
    const { output, state } = f(...ts);
    const dO = tf.tensor4d(x.dOut, [B, T, H, K]);
    const grads = tf.grads((...t: tf.Tensor[]) => {
      const r = f(...t);
      let L = tf.sum(tf.mul(r.output, dO));
      if (x.dState) {
        L = tf.add(L, tf.sum(tf.mul(r.state.m, tf.tensor2d(x.dState.m, [B, H]))));
        L = tf.add(L, tf.sum(tf.mul(r.state.u, tf.tensor2d(x.dState.u, [B, H]))));
        L = tf.add(L, tf.sum(tf.mul(r.state.w, tf.tensor3d(x.dState.w, [B, H, K]))));
      }
      return L as tf.Scalar;
    })(ts);
    return { output, state, grads };
  });
}

/**
 * What the float32 error of each result scales with, from a float64 pass over the inputs:
 * `Sabs` = max scale·Σ_κ|q_κ·k_κ| over tokens (the scores' absolute error is at most
 * (K + 2)·ε·Sabs), each token's column mass Σ_{t≥j} P_tj (+ e^{s_j − m} when the loss reads the
 * final state), the initial state's, the final u, and which element maximises the final m.
 */
function sizes(c: Case, x: Inputs) {
  const { B, T, H, K } = c;
  const scale = x.scale ?? 1 / Math.sqrt(K);
  const mass = new Float64Array(B * H * T);
  const massInit = new Float64Array(B * H);
  const uT = new Float64Array(B * H);
  const first = new Int32Array(B * H);
  const { s: all, Sabs } = scoresAndSize(c, x);
  let gap = Infinity;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const bh = b * H + h;
    const s = all.subarray(bh * T, (bh + 1) * T);
    const [m0, u0] = x.init && c.init !== 'empty' ? [x.init.m[bh]!, x.init.u[bh]!] : [-Infinity, 0];
    const m = new Float64Array(T);
    const u = new Float64Array(T);
    let [mt, ut] = [m0, u0];
    for (let t = 0; t < T; t++) {
      const next = Math.max(mt, s[t]!);
      ut = ut * (mt === -Infinity ? 0 : Math.exp(mt - next)) + Math.exp(s[t]! - next);
      [m[t], u[t], mt] = [next, ut, next];
    }
    uT[bh] = ut;
    const candidates = [m0, ...s];
    first[bh] = candidates.indexOf(mt) - 1;
    const sorted = candidates.slice().sort((p, r) => r - p);
    if (sorted.length > 1 && sorted[1] !== -Infinity) gap = Math.min(gap, sorted[0]! - sorted[1]!);
    const tail = (sj: number) => (x.dState && sj !== -Infinity ? Math.exp(sj - mt) : 0);
    for (let j = 0; j < T; j++) {
      let sum = tail(s[j]!);
      for (let t = j; t < T; t++) sum += Math.exp(s[j]! - m[t]!) / u[t]!;
      mass[bh * T + j] = sum;
    }
    let sum = tail(m0);
    for (let t = 0; t < T; t++) sum += (m0 === -Infinity ? 0 : Math.exp(m0 - m[t]!)) / u[t]!;
    massInit[bh] = sum;
  }
  return { Sabs, mass, massInit, uT, first, gap, scale };
}

/**
 * The bound on each result's float32 error, derived. Every value is a chain of sums: K terms for
 * a score, up to T + c for a running (u, w) (a chunk's c, then the carry from each earlier chunk),
 * as many for the reverse scan, B·T more for dq: γ_n = n·ε of the magnitudes summed. A weight
 * e^{s_j − m_t} has the relative error of its exponent, 2·(K + 2)·ε·Sabs from the scores (m_t is
 * one of them) plus ε·|s_j − m_t|, whose weighted sums stay below T·ε. So each result is within
 * 4·((3T + c + K + 8)·ε + 2(K + 2)·ε·Sabs) of max(1, its magnitude), the magnitudes (|v|, |w/u|,
 * dOut and dState all below 1) being: o 1; m Sabs (max |m_init| ≤ 1 aside); u and w the final u;
 * dv_j the column mass M_j = Σ_{t≥j} P_tj (+ e^{s_j − m}); ds_j 2K·M_j, plus at the maximiser
 * of m the routed g_m = dm − du·u − dw·w, below 1 + (K + 1)·u; dk scale·|q|·|ds|, dq
 * scale·|k|·Σ_{b,j}|ds_j|; for the initial state, with M_init = Σ_t e^{m_init − m_t}/u_t
 * (+ e^{m_init − m}): dw_init M_init, du_init K·M_init, dm_init (|w_init| + u_init)·K·M_init
 * (+ g_m when it maximises m).
 *
 * The WGSL scan kernels (`kernels`) keep (u, w) in the frame of the running max and carry them
 * step by step: per step a product, a sum and exp(m_{t−1} − m_t), which WGSL computes within
 * 3 + 2·|m_{t−1} − m_t| ulps, ≤ 5T·ε + 4·ε·Sabs over a sequence (m rises by at most 2·Sabs; the
 * first step from an empty state multiplies an exact 0); per chunk of 32 the carry's exp of its
 * summed steps, 3 ulps plus 2|Σ| ulps plus the float32 sum's 32·u·Σ|Δm|: ≤ 3⌈T/32⌉·ε + 36·ε·Sabs;
 * the weights e^{s_j − m_t} as above (T·ε); the scores 2(K + 2)·ε·Sabs; the sums over K and the
 * division, the final state's frame factor and the GLA wrapper's adds, K + 8. So γ is
 * (6T + 3⌈T/32⌉ + K + 8)·ε + (2(K + 2) + 40)·ε·Sabs, with the same magnitudes.
 */
function bounds(c: Case, x: Inputs, kernels = false) {
  const { B, T, H, K } = c;
  const z = sizes(c, x);
  const gamma = kernels
    ? (6 * T + 3 * Math.ceil(T / 32) + K + 8) * EPS32 + (2 * (K + 2) + 40) * EPS32 * z.Sabs
    : (3 * T + C + K + 8) * EPS32 + 2 * (K + 2) * EPS32 * z.Sabs;
  const bound = (magnitude: number, extraTerms = 0) => 4 * (gamma + extraTerms * EPS32) * Math.max(1, magnitude);
  const gm = (bh: number) => (x.dState ? 1 + (K + 1) * z.uT[bh]! : 0);
  let ds = 0;
  const dsPerHead = new Float64Array(H);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let j = 0; j < T; j++) {
    const bh = b * H + h;
    const mag = 2 * K * z.mass[bh * T + j]! + (z.first[bh] === j ? gm(bh) : 0);
    ds = Math.max(ds, mag);
    dsPerHead[h] += mag;
  }
  const dsSum = maxAbs(dsPerHead);
  const uMax = maxAbs(z.uT);
  const massInit = maxAbs(z.massInit);
  const initMax = x.init && c.init !== 'empty' ? Math.max(maxAbs(x.init.w), maxAbs(x.init.u)) : 0;
  const gmInit = Math.max(0, ...Array.from(z.first).map((f, bh) => (f === -1 ? gm(bh) : 0)));
  return {
    gap: z.gap,
    Sabs: z.Sabs,
    output: bound(1),
    m: bound(z.Sabs),
    u: bound(uMax),
    w: bound(uMax),
    q: bound(z.scale * maxAbs(x.k) * dsSum, B * T),
    k: bound(z.scale * maxAbs(x.q) * ds),
    v: bound(maxAbs(z.mass)),
    initM: bound(2 * initMax * K * massInit + gmInit),
    initU: bound(K * massInit),
    initW: bound(massInit),
  };
}

type Bounds = ReturnType<typeof bounds>;

/** Asserts every result of `run` against the oracle within `bounds`. */
async function expectMatchesOracle(c: Case, x: Inputs, tol: Bounds, implementation: Implementation = 'auto', step = false): Promise<void> {
  const dims: AarenDims = { B: c.B, T: c.T, H: c.H, K: c.K };
  const want = aarenOracle(oracleInputs(x), dims);
  const g = aarenGradOracle(oracleInputs(x), dims, x.dOut, x.dState ?? {});
  const got = run(c, x, implementation, step);
  try {
    const check = async (what: keyof Bounds, t: tf.Tensor, o: Float64Array) => {
      const v = await values(t);
      expect(v.every((e, n) => Number.isFinite(e) || e === o[n]), `${what} finite`).toBe(true);
      // −∞ (an empty state's m) must come back as −∞; compare the finite entries
      const d = maxAbsDiff(v.map((e) => (Number.isFinite(e) ? e : 0)), o.map((e) => (Number.isFinite(e) ? e : 0)));
      expect(d, `${what}: error ${d}, bound ${tol[what]}`).toBeLessThanOrEqual(tol[what] as number);
    };
    await check('output', got.output, want.o);
    await check('m', got.state.m, want.state.m);
    await check('u', got.state.u, want.state.u);
    await check('w', got.state.w, want.state.w);
    await check('q', got.grads[0]!, g.q);
    await check('k', got.grads[1]!, g.k);
    await check('v', got.grads[2]!, g.v);
    if (x.init) {
      await check('initM', got.grads[3]!, g.initialState!.m);
      await check('initU', got.grads[4]!, g.initialState!.u);
      await check('initW', got.grads[5]!, g.initialState!.w);
    }
  } finally {
    tf.dispose(got);
  }
}

/**
 * Whether m's maximiser is the same in float32 and float64: its gradient (when the loss reads
 * the state) is defined only away from a tie, and the scores' float32 error is ≤ (K + 2)·ε·Sabs.
 */
const untied = (c: Case, tol: Bounds) => !c.dState || tol.gap > 4 * (c.K + 2) * EPS32 * Math.max(1, tol.Sabs);

/** max |a − b| allowed between two float32 evaluations of the same sums (n terms) in other orders. */
function sameSums(a: ArrayLike<number>, b: ArrayLike<number>, n: number): number {
  return 2 * n * EPS32 * Math.max(1, maxAbs(a), maxAbs(b));
}

const tensors = (c: Case, x: Inputs) => ({
  q: tf.tensor2d(x.q, [c.H, c.K]), k: tf.tensor4d(x.k, [c.B, c.T, c.H, c.K]), v: tf.tensor4d(x.v, [c.B, c.T, c.H, c.K]),
});

/** Tokens [t0, t1) of a `[B, T, H, K]` tensor. */
const tokens = (x: tf.Tensor4D, t0: number, t1: number) => x.slice([0, t0, 0, 0], [-1, t1 - t0, -1, -1]);

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeScans(backend, 'aaren', () => {
  // the reference on cpu and wasm, the WGSL scan kernels on webgpu
  const implementation: Implementation = backend === 'webgpu' ? 'webgpu' : 'auto';
  const kernels = backend === 'webgpu';
  const withImpl = (o: AarenOptions = {}): AarenOptions => ({ ...o, implementation });

  it('matches the float64 oracle: output, final state and every gradient (q, k, v, initial m, u, w)', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const x = inputsOf(c);
      const tol = bounds(c, x, kernels);
      fc.pre(untied(c, tol));
      await expectMatchesOracle(c, x, tol, implementation);
    }), { numRuns: 14 });
  });

  if (!kernels) {
    // off webgpu a decode step is its own few tfjs ops (token.ts), not the op at T = 1; its chain
    // (a score, the new max, two exps, two products and a sum, a division) is the op's at T = 1
    it('a decode step matches the float64 oracle from an empty, a random and a leading state: output, state and every gradient', async () => {
      await fc.assert(fc.asyncProperty(cases.filter((c) => c.init !== 'none'), async (drawn) => {
        const c = { ...drawn, T: 1 };
        const x = inputsOf(c);
        const tol = bounds(c, x, false);
        fc.pre(untied(c, tol));
        await expectMatchesOracle(c, x, tol, implementation, true);
      }), { numRuns: 20 });
    });

    it('a decode step makes NaN exactly the heads whose k or v is NaN or ±∞, gives them zero gradients and the rest a clean run\'s, in fewer launches than the op, leaving nothing behind', async () => {
      const c: Case = { B: 2, T: 1, H: 3, K: 4, init: 'random', dState: false, scale: false, spread: 1, seed: 17 };
      const x = inputsOf(c);
      const { B, H, K } = c;
      // (0, 0): a NaN k, (0, 1): a +∞ v, (1, 2): a −∞ k; the other heads clean
      const spoilt = { ...x, k: x.k.slice(), v: x.v.slice() };
      spoilt.k[(0 * H + 0) * K + 1] = NaN;
      spoilt.v[(0 * H + 1) * K + 3] = Infinity;
      spoilt.k[(1 * H + 2) * K] = -Infinity;
      const bad = new Set([0 * H + 0, 0 * H + 1, 1 * H + 2]);
      // a loss on the clean heads' outputs and states only
      const dOut = Float32Array.from(x.dOut, (d, i) => (bad.has(Math.floor(i / K)) ? 0 : d));
      const clean = run(c, { ...x, dOut }, implementation, true);
      const got = await expectNoLeaks(async () => {
        const r = run(c, { ...spoilt, dOut }, implementation, true);
        const v = [await values(r.output), await values(r.state.m), await values(r.state.u), await values(r.state.w),
          ...await Promise.all(r.grads.map(values))];
        tf.dispose(r);
        return v;
      });
      const want = [await values(clean.output), await values(clean.state.m), await values(clean.state.u), await values(clean.state.w),
        ...await Promise.all(clean.grads.map(values))];
      tf.dispose(clean);
      ['output', 'm', 'u', 'w'].forEach((what, i) => {
        const per = what === 'output' || what === 'w' ? K : 1;
        for (let bh = 0; bh < B * H; bh++) for (let j = 0; j < per; j++) {
          const e = got[i]![bh * per + j]!;
          if (bad.has(bh)) expect(e, `${what} ${bh}`).toBeNaN();
          else expect(e, `${what} ${bh}`).toBe(want[i]![bh * per + j]);
        }
      });
      // the gradients in k and v: 0 at the bad entries, a clean run's elsewhere; every gradient finite
      for (const [i, name, at] of [[5, 'k', (0 * H + 0) * K + 1], [6, 'v', (0 * H + 1) * K + 3], [5, 'k', (1 * H + 2) * K]] as const) {
        expect(got[i]![at], `d${name} at its bad entry`).toBe(0);
      }
      for (let i = 4; i < got.length; i++) expect(got[i]!.every(Number.isFinite), `gradient ${i} finite`).toBe(true);
      const launches = async (impl: Implementation) => {
        const info = await tf.profile(() => tf.tidy(() => {
          const r = aarenStep(tf.tensor2d(x.q, [H, K]), tf.tensor4d(x.k, [B, 1, H, K]), tf.tensor4d(x.v, [B, 1, H, K]), tf.zeros([B], 'int32'), {
            implementation: impl, initialState: { m: tf.tensor2d(x.init!.m, [B, H]), u: tf.tensor2d(x.init!.u, [B, H]), w: tf.tensor3d(x.init!.w, [B, H, K]) },
          });
          return [r.output, r.state.m, r.state.u, r.state.w, r.positions];
        }));
        tf.dispose(info.result as tf.Tensor[]);
        return info.kernels.length;
      };
      const [token, op] = [await launches('auto'), await launches('reference')];
      expect(token, `${token} launches against the op's ${op}`).toBeLessThan(0.7 * op);
    });
  }

  // a chunk's products hold 64 · 64 · 64 multiply-adds a head: wasm's products batch by batch
  it('at K = 64 matches the float64 oracle', async () => {
    const c: Case = { B: 2, T: 2 * C + 5, H: 2, K: 64, init: 'random', dState: true, scale: false, spread: 1, seed: 11 };
    const x = inputsOf(c);
    const tol = bounds(c, x, kernels);
    expect(untied(c, tol)).toBe(true);
    await expectMatchesOracle(c, x, tol, implementation);
  });

  it('scores spread over hundreds (q scaled to a largest entry of 300) stay finite and match the oracle', async () => {
    const spread = fc.record({
      B: fc.constant(1), T: fc.integer({ min: C - 3, max: 2 * C + 5 }), H: fc.integer({ min: 1, max: 2 }),
      K: fc.integer({ min: 2, max: 4 }), init: fc.constantFrom('none', 'random', 'leading') as fc.Arbitrary<Case['init']>, dState: fc.boolean(),
      scale: fc.constant(false), spread: fc.constant(300), seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    });
    await fc.assert(fc.asyncProperty(spread, async (c) => {
      const x = inputsOf(c);
      const tol = bounds(c, x, kernels);
      fc.pre(untied(c, tol));
      expect(tol.Sabs).toBeGreaterThan(100);
      await expectMatchesOracle(c, x, tol, implementation);
    }), { numRuns: 6 });
  });

  it('two pieces carrying the state equal one run: outputs, state and the gradients in q, k, v', async () => {
    await fc.assert(fc.asyncProperty(cases.filter((c) => c.T >= 2), fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), async (c, at) => {
      const x = inputsOf(c);
      const cut = 1 + Math.floor(at * (c.T - 1));
      const [one, two] = tf.tidy(() => {
        const { q, k, v } = tensors(c, x);
        const dO = tf.tensor4d(x.dOut, k.shape);
        const whole = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => {
          const r = aarenWithState(a as tf.Tensor2D, b as tf.Tensor4D, d as tf.Tensor4D, withImpl({ scale: x.scale }));
          return [r.output, r.state.m, r.state.u, r.state.w];
        };
        const pieces = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => {
          const opts = { scale: x.scale };
          const r1 = aarenWithState(a as tf.Tensor2D, tokens(b as tf.Tensor4D, 0, cut), tokens(d as tf.Tensor4D, 0, cut), withImpl(opts));
          const r2 = aarenWithState(a as tf.Tensor2D, tokens(b as tf.Tensor4D, cut, c.T), tokens(d as tf.Tensor4D, cut, c.T), withImpl({ ...opts, initialState: r1.state }));
          return [tf.concat([r1.output, r2.output], 1), r2.state.m, r2.state.u, r2.state.w];
        };
        const both = (f: typeof whole) => [...f(q, k, v), ...tf.grads((a, b, d) => tf.sum(tf.mul(f(a!, b!, d!)[0]!, dO)) as tf.Scalar)([q, k, v])];
        return [both(whole), both(pieces)];
      });
      // the same scores and running maxes, the sums split at another place: u and w sum up to
      // T + c terms (a chunk, then a carry per chunk), and so do the reverse scan's; o = w/u and
      // the gradients divide or multiply two such sums, so each run is within 2n·ε of the scale
      // and the two within twice sameSums's n·ε per run; dq sums B·T more terms
      const terms = [c.T + C, c.T + C, c.T + C, c.T + C, c.B * c.T + c.T + C, c.T + C, c.T + C];
      for (let n = 0; n < one.length; n++) {
        const a = await values(one[n]!);
        const b = await values(two[n]!);
        expect(maxAbsDiff(a, b), `result ${n}`).toBeLessThanOrEqual(2 * sameSums(a, b, terms[n]!));
      }
      tf.dispose([one, two]);
    }), { numRuns: 8 });
  });

  it('padded tokens (the layers\' real mask) are the merge\'s identity: each row equals a run over its real tokens alone, outputs, state and gradients, and padding gets none', async () => {
    const withReal = cases.filter((c) => c.init !== 'leading');
    await fc.assert(fc.asyncProperty(withReal, fc.integer({ min: 0, max: 2 ** 31 - 1 }), async (c, maskSeed) => {
      const x = inputsOf(c);
      const { B, T, H, K } = c;
      // about a third of the tokens padded, anywhere (holes too), a row possibly all padding
      const draw = mulberry32(maskSeed);
      const real = Array.from({ length: B }, () => Array.from({ length: T }, () => (draw() < 0.65 ? 1 : 0)));
      const init = (b: number) => (x.init ? {
        m: tf.tensor2d(x.init.m.slice(b * H, (b + 1) * H), [1, H]), u: tf.tensor2d(x.init.u.slice(b * H, (b + 1) * H), [1, H]),
        w: tf.tensor3d(x.init.w.slice(b * H * K, (b + 1) * H * K), [1, H, K]),
      } : undefined);
      // the loss reads the real tokens' outputs only (a padded token's output is the state's so far,
      // which the real tokens before it reach, and the run over real tokens alone has no such output)
      const dO = tf.tensor4d(x.dOut.map((e, n) => (real[Math.floor(n / (T * H * K))]![Math.floor(n / (H * K)) % T] ? e : 0)), [B, T, H, K]);
      const { q, k, v } = tensors(c, x);
      const masked = tf.tidy(() => {
        const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => aarenWithStateOver(a as tf.Tensor2D, b as tf.Tensor4D, d as tf.Tensor4D,
          tf.tensor2d(real), withImpl({ scale: x.scale, ...(x.init ? { initialState: { m: tf.tensor2d(x.init.m, [B, H]), u: tf.tensor2d(x.init.u, [B, H]), w: tf.tensor3d(x.init.w, [B, H, K]) } } : {}) }));
        const r = f(q, k, v);
        return [r.output, r.state.m, r.state.u, r.state.w, ...tf.grads((a, b, d) => tf.sum(tf.mul(f(a!, b!, d!).output, dO)) as tf.Scalar)([q, k, v])];
      });
      const [o, m, u, w, , dk, dv] = await Promise.all(masked.map(values));
      for (let b = 0; b < B; b++) {
        const kept = real[b]!.flatMap((r, t) => (r ? [t] : []));
        const rowOf = (a: Float64Array, t: number) => a.slice((b * T + t) * H * K, (b * T + t + 1) * H * K);
        // the row alone, its real tokens only (no token: the initial state, or the empty one)
        const alone = tf.tidy(() => {
          const pick = (a: tf.Tensor4D) => (kept.length ? tf.gather(a.slice([b, 0, 0, 0], [1, -1, -1, -1]), kept, 1) : tf.zeros([1, 0, H, K])) as tf.Tensor4D;
          const start = init(b);
          const f = (a: tf.Tensor, bb: tf.Tensor, d: tf.Tensor) => aarenWithState(a as tf.Tensor2D, bb as tf.Tensor4D, d as tf.Tensor4D, withImpl({ scale: x.scale, ...(start ? { initialState: start } : {}) }));
          const r = f(q, pick(k), pick(v));
          const dOr = pick(dO);
          const g = kept.length ? tf.grads((bb, d) => tf.sum(tf.mul(f(q, bb!, d!).output, dOr)) as tf.Scalar)([pick(k), pick(v)]) : [];
          return [r.output, r.state.m, r.state.u, r.state.w, ...g];
        });
        const [oA, mA, uA, wA, dkA, dvA] = await Promise.all(alone.map(values));
        // the same sums as the one run's, cut at other chunk boundaries: within twice sameSums's (T + c)·ε each
        const close = (a: ArrayLike<number>, e: ArrayLike<number>, what: string) => {
          if (Array.from(e).every((z) => z === -Infinity)) expect(Array.from(a), what).toEqual(Array.from(e));
          else expect(maxAbsDiff(a, e), what).toBeLessThanOrEqual(2 * sameSums(a, e, T + C));
        };
        close(m!.slice(b * H, (b + 1) * H), mA!, `row ${b} m`);
        close(u!.slice(b * H, (b + 1) * H), uA!, `row ${b} u`);
        close(w!.slice(b * H * K, (b + 1) * H * K), wA!, `row ${b} w`);
        kept.forEach((t, i) => {
          close(rowOf(o!, t), oA!.slice(i * H * K, (i + 1) * H * K), `row ${b} output at ${t}`);
          close(rowOf(dk!, t), dkA!.slice(i * H * K, (i + 1) * H * K), `row ${b} dk at ${t}`);
          close(rowOf(dv!, t), dvA!.slice(i * H * K, (i + 1) * H * K), `row ${b} dv at ${t}`);
        });
        for (let t = 0; t < T; t++) {
          expect(rowOf(o!, t).every(Number.isFinite), `row ${b} output at ${t} finite`).toBe(true);
          if (!real[b]![t]) {
            expect(maxAbs(rowOf(dk!, t)), `row ${b} dk at padded ${t}`).toBe(0);
            expect(maxAbs(rowOf(dv!, t)), `row ${b} dv at padded ${t}`).toBe(0);
          }
        }
        tf.dispose(alone);
      }
      tf.dispose([masked, q, k, v, dO]);
    }), { numRuns: 10 });
  });

  it('a row all padding with no initial state ends in the empty state (−∞, 0, 0), and its m passes no gradient to the padding', async () => {
    const [B, T, H, K] = [2, 5, 2, 3];
    const q = tf.tensor2d(seededUniform(1, H * K, -1, 1), [H, K]);
    const k = tf.tensor4d(seededUniform(2, B * T * H * K, -2, 2), [B, T, H, K]);
    const v = tf.tensor4d(seededUniform(3, B * T * H * K, -2, 2), [B, T, H, K]);
    const real = tf.tensor2d([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]]);
    const ones = tf.ones([B, H]);
    await expectNoLeaks(async () => {
      const { output, state } = aarenWithStateOver(q, k, v, real, withImpl());
      expect(Array.from(await state.m.data())).toEqual([...Array.from((await state.m.data()).slice(0, H)), -Infinity, -Infinity]);
      expect(Array.from(await state.m.data()).slice(0, H).every(Number.isFinite)).toBe(true);
      expect(Array.from(await state.u.data()).slice(H)).toEqual([0, 0]);
      expect(Array.from(await state.w.data()).slice(H * K)).toEqual(new Array(H * K).fill(0));
      // a gradient of 1 in every row's m: row 0's reaches its real scores' maximiser, row 1's nothing
      const [dk] = tf.grads((a: tf.Tensor) => aarenWithStateOver(q, a as tf.Tensor4D, v, real, withImpl()).state.m)([k], ones);
      const dks = await dk!.data();
      expect(Array.from(dks).every(Number.isFinite)).toBe(true);
      const padded = [2, 4, 5, 6, 7, 8, 9].flatMap((token) => Array.from(dks.slice(token * H * K, (token + 1) * H * K)));
      expect(maxAbs(padded), 'padded tokens').toBe(0);
      expect(maxAbs(dks.slice(0, 2 * H * K)), 'row 0 real tokens').toBeGreaterThan(0);
      tf.dispose([output, state.m, state.u, state.w, dk!]);
    });
    tf.dispose([q, k, v, real, ones]);
  });

  it('is causal: changing the tokens after t leaves the outputs 0..t bit for bit', async () => {
    await fc.assert(fc.asyncProperty(cases, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), async (c, at) => {
      const x = inputsOf(c);
      const t = Math.floor(at * c.T);
      const inner = c.H * c.K;
      const changed = (a: Float32Array) => a.map((e, n) => (Math.floor(n / inner) % c.T > t ? 5 * e - 3 : e));
      const outputs = async (k: Float32Array, v: Float32Array) => {
        const o = tf.tidy(() => {
          const ts = tensors(c, { ...x, k, v });
          return aaren(ts.q, ts.k, ts.v, withImpl({ scale: x.scale }));
        });
        const got = await values(o);
        o.dispose();
        return got;
      };
      const a = await outputs(x.k, x.v);
      const b = await outputs(changed(x.k), changed(x.v));
      for (let n = 0; n < a.length; n++) {
        if (Math.floor(n / inner) % c.T <= t) expect(b[n], `entry ${n}`).toBe(a[n]);
      }
    }), { numRuns: 8 });
  });

  it('a NaN or ±∞ in token t\'s k or v makes NaN that head\'s outputs from t on and its state, and nothing else; gradients of a loss before t equal a clean run\'s', async () => {
    const c: Case = { B: 2, T: 2 * C + 7, H: 2, K: 3, init: 'random', dState: false, scale: false, spread: 1, seed: 9 };
    const x = inputsOf(c);
    const { T, H, K } = c;
    for (const [where, t] of [['k', 5], ['v', C + 3], ['k', 2 * C + 6]] as const) {
      for (const bad of [Number.NaN, Infinity, -Infinity]) {
        // token t of row 1, head 0, channel K − 1; the loss reads the outputs before t only
        const spoilt = x[where].slice();
        spoilt[((1 * T + t) * H + 0) * K + K - 1] = bad;
        const dOut = x.dOut.map((e, n) => (Math.floor(n / (H * K)) % T < t ? e : 0));
        const clean = run(c, { ...x, dOut }, implementation);
        const got = run(c, { ...x, dOut, [where]: spoilt }, implementation);
        const what = `${where}[1, ${t}, 0] = ${bad}`;
        const [o, o0] = [await values(got.output), await values(clean.output)];
        for (let n = 0; n < o.length; n++) {
          const [bb, tt, hh] = [Math.floor(n / (T * H * K)), Math.floor(n / (H * K)) % T, Math.floor(n / K) % H];
          if (bb === 1 && hh === 0 && tt >= t) expect(o[n], `${what}: output ${n}`).toBeNaN();
          else expect(o[n], `${what}: output ${n}`).toBe(o0[n]);
        }
        for (const part of ['m', 'u', 'w'] as const) {
          const [s, s0] = [await values(got.state[part]), await values(clean.state[part])];
          const per = part === 'w' ? K : 1;
          s.forEach((e, n) => {
            if (Math.floor(n / per) === 1 * H + 0) expect(e, `${what}: state ${part}`).toBeNaN();
            else expect(e, `${what}: state ${part}`).toBe(s0[n]);
          });
        }
        for (let n = 0; n < got.grads.length; n++) {
          const [a, a0] = [await values(got.grads[n]!), await values(clean.grads[n]!)];
          expect(a.every(Number.isFinite), `${what}: gradient ${n} finite`).toBe(true);
          expect(maxAbsDiff(a, a0), `${what}: gradient ${n}`).toBe(0);
        }
        tf.dispose([clean, got]);
      }
    }
  });

  // the empty path runs no kernel, the same code on every backend; on webgpu the test's own
  // reductions of empty tensors fail in tfjs-backend-webgpu 4.22 (a zero-size buffer upload)
  if (backend !== 'webgpu') it('T = 0 and B = 0: an empty output and the initial state (or the empty state), the gradient in it the identity', async () => {
    for (const [B, T] of [[2, 0], [0, 3]]) {
      const [H, K] = [2, 3];
      const q = tf.ones([H, K]) as tf.Tensor2D;
      const k = tf.zeros([B, T, H, K]) as tf.Tensor4D;
      const init: AarenState = { m: tf.fill([B, H], 0.5) as tf.Tensor2D, u: tf.fill([B, H], 2) as tf.Tensor2D, w: tf.ones([B, H, K]) as tf.Tensor3D };
      const fresh = aarenWithState(q, k, k, withImpl());
      expect(fresh.output.shape).toEqual([B, T, H, K]);
      expect(Array.from(await fresh.state.m.data())).toEqual(new Array(B * H).fill(-Infinity));
      expect(maxAbs(await values(fresh.state.u)) + maxAbs(await values(fresh.state.w))).toBe(0);
      const cont = aarenWithState(q, k, k, withImpl({ initialState: init }));
      for (const p of ['m', 'u', 'w'] as const) expect(Array.from(await cont.state[p].data())).toEqual(Array.from(await init[p].data()));
      const grads = tf.grads((m: tf.Tensor, u: tf.Tensor, w: tf.Tensor, a: tf.Tensor) => {
        const r = aarenWithState(a as tf.Tensor2D, k, k, withImpl({ initialState: { m: m as tf.Tensor2D, u: u as tf.Tensor2D, w: w as tf.Tensor3D } }));
        return tf.addN([tf.sum(tf.mul(r.state.m, 3)), tf.sum(tf.mul(r.state.u, 5)), tf.sum(tf.mul(r.state.w, 7)), tf.sum(r.output)]) as tf.Scalar;
      })([init.m, init.u, init.w, q]);
      expect(Array.from(await grads[0]!.data())).toEqual(new Array(B * H).fill(3));
      expect(Array.from(await grads[1]!.data())).toEqual(new Array(B * H).fill(5));
      expect(Array.from(await grads[2]!.data())).toEqual(new Array(B * H * K).fill(7));
      expect(maxAbs(await values(grads[3]!))).toBe(0);
      // a later call from the empty state equals a fresh one, and is finite
      const k1 = tf.randomNormal([Math.max(B, 1), 4, H, K]) as tf.Tensor4D;
      const start = aarenWithState(q, tf.zeros([Math.max(B, 1), 0, H, K]) as tf.Tensor4D, tf.zeros([Math.max(B, 1), 0, H, K]) as tf.Tensor4D, withImpl());
      const [a, b] = [aaren(q, k1, k1, withImpl({ initialState: start.state })), aaren(q, k1, k1, withImpl())];
      expect(Array.from(await a.data())).toEqual(Array.from(await b.data()));
      expect((await values(a)).every(Number.isFinite)).toBe(true);
      tf.dispose([q, k, init, fresh, cont, grads, k1, start, a, b]);
    }
  });

  it(`leaves no tensor behind: forward, state, gradients${backend === 'webgpu' ? '' : ', empty calls'}`, async () => {
    const c: Case = { B: 2, T: C + 9, H: 2, K: 4, init: 'random', dState: true, scale: true, spread: 1, seed: 4 };
    const x = inputsOf(c);
    await expectNoLeaks(async () => tf.dispose(run(c, x, implementation)));
    await expectNoLeaks(async () => tf.dispose(run({ ...c, init: 'none' }, inputsOf({ ...c, init: 'none' }), implementation)));
    const { q, k, v } = tensors(c, x);
    const empty = tf.zeros([2, 0, 2, 4]) as tf.Tensor4D;
    await expectNoLeaks(async () => {
      tf.dispose(aaren(q, k, v, withImpl()));
      // (empty calls: not on webgpu, whose tf.sum of an empty tensor fails, as above)
      if (backend === 'webgpu') return;
      tf.dispose(aarenWithState(q, empty, empty, withImpl()));
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(aaren(a as tf.Tensor2D, b as tf.Tensor4D, b as tf.Tensor4D, withImpl())))([q, empty]));
    });
    tf.dispose([q, k, v, empty]);
  });
});

describeOn('cpu', 'aaren errors', () => {
  it('errors name the op, the argument, the expected and the received', () => {
    const q = tf.zeros([2, 3]) as tf.Tensor2D;
    const k = tf.zeros([1, 4, 2, 3]) as tf.Tensor4D;
    const state = { m: tf.zeros([1, 2]), u: tf.zeros([1, 2]), w: tf.zeros([1, 2, 3]) };
    const call = (over: Record<string, unknown>, options: Record<string, unknown> = {}) => () => {
      const a = { q, k, v: k, ...over };
      aaren(a.q as tf.Tensor2D, a.k as tf.Tensor4D, a.v as tf.Tensor4D, options as AarenOptions);
    };
    expect(call({ q: tf.zeros([2, 3, 1]) })).toThrow(/aaren: argument 'q' must be a float32 tensor of rank 2 \[H, K\]; received a float32 tensor of shape \[2, 3, 1\]/);
    expect(call({ k: tf.zeros([1, 4, 3, 3]) })).toThrow(/aaren: argument 'k' must have shape \[B, T, H, K\] = \[1, 4, 2, 3\]; received \[1, 4, 3, 3\]/);
    expect(call({ v: tf.zeros([1, 5, 2, 3]) })).toThrow(/argument 'v' must have shape \[B, T, H, K\] = \[1, 4, 2, 3\]; received \[1, 5, 2, 3\]/);
    expect(call({ k: tf.zeros([1, 4, 2, 3], 'int32') })).toThrow(/argument 'k' .* received an int32 tensor of shape \[1, 4, 2, 3\]/);
    expect(call({ q: tf.zeros([0, 3]) })).toThrow(/argument 'q' \[H, K\] must have H ≥ 1/);
    for (const scale of [0, -1, Number.NaN, Infinity, '1']) {
      expect(call({}, { scale })).toThrow(/aaren: option 'scale' must be a finite number > 0; received/);
    }
    expect(call({}, { chunk: 8 })).toThrow(/aaren: unknown option 'chunk'; the options are 'scale', 'initialState', 'implementation'/);
    expect(call({}, { implementation: 'cuda' })).toThrow(/option 'implementation' must be one of/);
    expect(call({}, { implementation: 'webgpu' })).toThrow(/aaren: implementation 'webgpu' needs the 'webgpu' backend; the active backend is 'cpu'/);
    expect(call({}, { initialState: tf.zeros([1, 2]) })).toThrow(/option 'initialState' must be an object \{ m: \[B, H\], u: \[B, H\], w: \[B, H, K\] \}/);
    expect(call({}, { initialState: { m: state.m, u: state.u } })).toThrow(/option 'initialState' must have exactly the parts 'm', 'u' and 'w'; part 'w' is missing/);
    expect(call({}, { initialState: { ...state, h: state.m } })).toThrow(/received an unknown part 'h'/);
    expect(call({}, { initialState: { ...state, w: tf.zeros([1, 2, 4]) } })).toThrow(/argument 'initialState.w' must have shape \[B, H, K\] = \[1, 2, 3\]; received \[1, 2, 4\]/);
    expect(call({}, { initialState: { ...state, m: tf.zeros([2, 2]) } })).toThrow(/argument 'initialState.m' must have shape \[B, H\] = \[1, 2\]; received \[2, 2\]/);
    expect(() => aarenWithState(q, k, k, { initialState: { ...state, u: tf.zeros([1]) } as never }))
      .toThrow(/aarenWithState: argument 'initialState.u' must be a float32 tensor of rank 2 \[B, H\]/);
    expect(() => aaren(q, k, k, { implementation: 'auto' })).not.toThrow();
    tf.dispose([q, k, state.m, state.u, state.w]);
  });
});

// The reference runs on webgpu too, with implementation 'reference'
describeOn('webgpu', 'aaren on the scan kernels', () => {
  it('the frame kernel gives the scores\' keys and gates in the frame of the running max floored at −10³⁰, and the final max', async () => {
    // scores of small integers (q, k integers, scale 1/2) are exact in float32, and so are the
    // frame and the gates; rows of 150 tokens (runs of 3 per invocation); m_init −∞ (an empty
    // state), an integer, a NaN, 100 above every score, and +∞; a NaN and a +∞ in k, read as 0;
    // row b = 1 padded after 110 tokens
    const [B, T, H, K, scale] = [2, 150, 3, 4, 0.5];
    const q = Float32Array.from(seededUniform(12, H * K, -3, 4), Math.floor);
    const k = Float32Array.from(seededUniform(13, B * T * H * K, -3, 4), Math.floor);
    k[(5 * H + 1) * K + 2] = Number.NaN;
    k[((T + 70) * H + 2) * K] = Infinity;
    const mInit = Float32Array.from([-Infinity, 2, Number.NaN, 100, -Infinity, Infinity]);
    const real = Float32Array.from({ length: B * T }, (_, i) => (i >= T + 110 ? 0 : 1));
    const [key, gate, mMax, move] = tf.engine().runKernel(AAREN_FRAME, {
      q: tf.tensor2d(q, [H, K]), k: tf.tensor4d(k, [B, T, H, K]), mInit: tf.tensor2d(mInit, [B, H]), real: tf.tensor2d(real, [B, T]),
    }, { scale, hasInit: true, hasReal: true }) as tf.Tensor[];
    const [gotKey, gotGate, gotMax, gotMove] = await Promise.all([key!, gate!, mMax!, move!].map(values));
    // the frame's floor: hiddenScore() on a float32 backend
    const hidden = Math.fround(-1e30);
    // NaN from a NaN on, as tfjs's maximum
    const larger = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b));
    // WGSL's exp is within 3 + 2·|x| ulp, here |x| ≤ 100 + 18 (239 ulp, an ulp at most 2⁻²³ of the
    // value), and a result below float32's normal range (2⁻¹²⁶) may be anything under it
    const expClose = (got: number, want: number, what: string) => {
      if (Number.isNaN(want)) expect(got, what).toBeNaN();
      else expect(Math.abs(got - want), what).toBeLessThanOrEqual(239 * 2 ** -23 * want + 2 ** -126);
    };
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const row = b * H + h;
        let before = larger(hidden, mInit[row]!);
        let max = mInit[row]!;
        for (let t = 0; t < T; t++) {
          const at = (b * T + t) * H + h;
          let s = 0;
          for (let c = 0; c < K; c++) s += q[h * K + c]! * (Number.isFinite(k[at * K + c]!) ? k[at * K + c]! : 0);
          s = Math.fround(s * scale + (1 - real[b * T + t]!) * hidden);
          const after = larger(before, s);
          // a NaN or +∞ frame: both NaN
          const finite = Number.isFinite(after);
          expect(gotGate[at], `gate ${row}, ${t}`).toBe(finite ? Math.fround(before - after) : Number.NaN);
          expClose(gotKey[at]!, finite ? Math.exp(s - after) * real[b * T + t]! : Number.NaN, `key ${row}, ${t}`);
          before = after;
          max = larger(max, s);
        }
        expect(gotMax[row], `max ${row}`).toBe(max);
        expClose(gotMove[row]!, Number.isFinite(max) ? Math.exp(larger(hidden, max) - max) : 1, `move ${row}`);
      }
    }
    tf.dispose([key!, gate!, mMax!, move!]);
  });

  it('a tie for the final max sends m\'s gradient to the first of the tied scores, as the reference does', async () => {
    // tokens 1 and 3 hold the same k, the largest score; a loss on the final m alone
    const [H, K] = [1, 2];
    const q = tf.tensor2d([[1, 2]]);
    const k = tf.tensor4d([0, 1, 2, 2, -1, 0, 2, 2, 1, -1], [1, 5, H, K]);
    const v = tf.ones([1, 5, H, K]) as tf.Tensor4D;
    const grads = async (implementation: Implementation) => {
      const dk = tf.grad((x: tf.Tensor) => tf.sum(aarenWithState(q, x as tf.Tensor4D, v, { implementation }).state.m))(k);
      return values(dk);
    };
    const got = await grads('auto');
    expect(Array.from(got)).toEqual(Array.from(await grads('reference')).map((x) => expect.closeTo(x, 6)));
    // scale·q at token 1 (1/√2 · [1, 2]), nothing at token 3
    expect(Array.from(got.subarray(2, 4)).map((x) => x * Math.SQRT2)).toEqual([1, 2].map((x) => expect.closeTo(x, 6)));
    expect(Array.from(got.subarray(6, 8))).toEqual([0, 0]);
    tf.dispose([q, k, v]);
  });

  it('the frame\'s gradient: a NaN or ±∞ in k, read as 0, gets none, and changes no other gradient', async () => {
    // a loss on the keys and the final max, so that the bad tokens' keys have a gradient; the
    // same inputs with those entries 0 give the same outputs, and must give the same gradients
    // but at the bad entries, whose gradient is 0
    const [B, T, H, K, scale] = [2, 70, 2, 4, 0.5];
    const q = tf.tensor2d(seededUniform(21, H * K, -1, 1), [H, K]);
    const clean = seededUniform(22, B * T * H * K, -1, 1);
    const bad = clean.slice();
    const badAt = [(5 * H + 1) * K + 2, ((T + 40) * H) * K + 3, ((T + 40) * H) * K];
    [Number.NaN, Infinity, -Infinity].forEach((x, i) => { bad[badAt[i]!] = x; clean[badAt[i]!] = 0; });
    const weights = tf.tensor4d(seededUniform(23, B * T * H, -1, 1), [B, T, H, 1]);
    const standIn = tf.zeros([1]);
    const grads = async (ks: Float32Array) => {
      const k = tf.tensor4d(ks, [B, T, H, K]);
      const f = (qq: tf.Tensor, kk: tf.Tensor) => {
        const [key, , mMax] = tf.engine().runKernel(AAREN_FRAME, { q: qq, k: kk, mInit: standIn, real: standIn },
          { scale, hasInit: false, hasReal: false }) as tf.Tensor[];
        return tf.add(tf.sum(tf.mul(key!, weights)), tf.sum(mMax!));
      };
      const [dq, dk] = tf.grads(f)([q, k]);
      const out = [await values(dq!), await values(dk!)];
      tf.dispose([k, dq!, dk!]);
      return out;
    };
    const [dqBad, dkBad] = await grads(bad);
    const [dqClean, dkClean] = await grads(clean);
    expect(Array.from(dqBad!)).toEqual(Array.from(dqClean!));
    for (const at of badAt) {
      expect(dkClean![at], `the clean run's gradient at ${at}`).not.toBe(0);
      dkClean![at] = 0;
    }
    expect(Array.from(dkBad!)).toEqual(Array.from(dkClean!));
    tf.dispose([q, weights, standIn]);
  });

  it('runs in 9 launches with its final state, 8 without, 10 from a state (two fewer where its scan walks): the frame, the values, GLA\'s, the poison and the ratio, with no tfjs doublings, running sums or score ops, forward or backward', async () => {
    const c: Case = { B: 2, T: C + 7, H: 2, K: 4, init: 'random', dState: false, scale: false, spread: 1, seed: 9 };
    const x = inputsOf(c);
    const [q, k, v] = [tf.tensor2d(x.q, [c.H, c.K]), tf.tensor4d(x.k, [c.B, c.T, c.H, c.K]), tf.tensor4d(x.v, [c.B, c.T, c.H, c.K])];
    const launches = (f: () => tf.Tensor[]) => launchedPipelines(async () => {
      const ys = f();
      await Promise.all(ys.map((y) => y.data()));
      tf.dispose(ys);
    });
    // GLA's scan: the chunks' three passes (a GPU's), or the walk's one
    const passes = { chunks: ['GatedLinearAttentionChunkStates', 'ScanCarry', 'GatedLinearAttentionForward'], walk: ['GatedLinearAttentionWalk'] };
    for (const how of ['chunks', 'walk'] as const) {
      await underScan(how, async () => {
        const scan = [
          // the frame; v's finite part beside a column of ones, the values [v, 1]
          'AarenFrame', 'AarenValues', ...passes[how], 'GatedLinearAttentionSeen',
          // the poison of non-finite k and v, then o = w/u with it added
          'GatedLinearAttentionSeen', 'AarenRatio',
        ];
        const withState = await launches(() => {
          const r = aarenWithState(q, k, v);
          return [r.output, r.state.m, r.state.u, r.state.w];
        });
        // the final state moved to its m, the poison added to its three parts: one launch
        expect(withState, how).toEqual([...scan, 'AarenFinalState']);
        // an initial state enters the frame in one launch, GLA's state of one key channel
        const start = aarenWithState(q, k, v);
        const fromState = await launches(() => {
          const r = aarenWithState(q, k, v, { initialState: start.state });
          return [r.output, r.state.m, r.state.u, r.state.w];
        });
        expect(fromState, how).toEqual(['AarenFrame', 'AarenValues', 'AarenInitialState', ...scan.slice(2), 'AarenFinalState']);
        tf.dispose([start.output, start.state.m, start.state.u, start.state.w]);
        // ops.aaren forms no state
        expect(await launches(() => [aaren(q, k, v)]), how).toEqual(scan);
      });
    }
    // the frame's gradient: the scores' (no stack of m_T, move and their gradients: a loss on the
    // output leaves them tfjs's zeros), then q's and k's, with no tfjs select, tile, transpose or fill
    const grads = await launches(() => tf.grads((a, b, d) => tf.sum(aaren(a as tf.Tensor2D, b as tf.Tensor4D, d as tf.Tensor4D)))([q, k, v]));
    const frame = grads.indexOf('AarenFrameBackward');
    // q's gradient is the column sums of a dense launch
    expect(grads.slice(frame - 1, frame + 3)).toEqual(['AarenValuesBackward', 'AarenFrameBackward', 'AarenFrameInputsBackward', 'Dense']);
    expect(grads.filter((label) => /Select|Tile|Transpose|Fill|Concat/.test(label))).toEqual([]);
    // a loss on the final state reaches m_T and move: their gradients stacked beside them
    const stateGrads = await launches(() => tf.grads((a, b, d) => {
      const r = aarenWithState(a as tf.Tensor2D, b as tf.Tensor4D, d as tf.Tensor4D);
      return tf.add(tf.sum(r.output), tf.sum(r.state.m));
    })([q, k, v]));
    expect(stateGrads.slice(stateGrads.indexOf('AarenFrameBackward') - 1).slice(0, 2)).toEqual(['ConcatProgram', 'AarenFrameBackward']);
    tf.dispose([q, k, v]);
  });
  it(`past one seen chunk (${SEEN_CHUNK} tokens: two launches each), a bad k or v in any chunk makes NaN exactly the outputs and states that see it, leaving no data behind`, async () => {
    const S = SEEN_CHUNK;
    // a last chunk part full, full, and of one token
    for (const T of [2 * S + 37, 2 * S, S + 1]) {
      const c: Case = { B: 2, T, H: 3, K: 3, init: 'random', dState: false, scale: false, spread: 1, seed: 11 };
      const x = inputsOf(c);
      const { B, H, K } = c;
      // [b, h, input, token, value], at channel K − 1, those before T; (0, 2) stays clean
      const spoils: Array<[number, number, 'k' | 'v', number, number]> = [
        [0, 0, 'k', 0, NaN], // the first token: every output of the head
        [0, 1, 'v', S, Infinity], [0, 1, 'k', T - 1, NaN], // a middle chunk's first token, and the last
        [1, 0, 'k', S - 1, -Infinity], [1, 0, 'v', S + 1, NaN], // the first chunk's last token
        [1, 1, 'v', T - 1, -Infinity], // the last token alone
        [1, 2, 'k', 2 * S - 1, Infinity], // the middle chunk's last token (the last chunk's, at T = 2·S)
      ];
      const spoil = spoils.filter(([, , , t]) => t < T);
      // the expected placement, from the list: a head's outputs from its first bad k or v on, and its state
      const first = (b: number, h: number) => Math.min(T, ...spoil.filter(([bb, hh]) => bb === b && hh === h).map(([, , , t]) => t));
      const spoilt = { k: x.k.slice(), v: x.v.slice() };
      for (const [b, h, n, t, bad] of spoil) spoilt[n][((b * T + t) * H + h) * K + K - 1] = bad;
      const call = (k: Float32Array, v: Float32Array) => tf.tidy(() => {
        const init = x.init!;
        const r = aarenWithState(tf.tensor2d(x.q, [H, K]), tf.tensor4d(k, [B, T, H, K]), tf.tensor4d(v, [B, T, H, K]), {
          implementation: 'webgpu',
          initialState: { m: tf.tensor2d(init.m, [B, H]), u: tf.tensor2d(init.u, [B, H]), w: tf.tensor3d(init.w, [B, H, K]) },
        });
        return [r.output, r.state.m, r.state.u, r.state.w];
      });
      const clean = call(x.k, x.v);
      const want = await Promise.all(clean.map(values));
      const before = { tensors: tf.memory().numTensors, data: tf.backend().numDataIds() };
      let got: Float64Array[] = [];
      const ran = await launchedPipelines(async () => {
        const r = call(spoilt.k, spoilt.v);
        got = await Promise.all(r.map(values));
        tf.dispose(r);
      });
      expect({ tensors: tf.memory().numTensors, data: tf.backend().numDataIds() }, `T = ${T}: memory`).toEqual(before);
      // GLA's own poison of the scan, then Aaren's of non-finite k and v
      expect(ran.filter((l) => l.startsWith('GatedLinearAttentionSeen')), `T = ${T}`).toEqual(
        ['GatedLinearAttentionSeenChunks', 'GatedLinearAttentionSeen', 'GatedLinearAttentionSeenChunks', 'GatedLinearAttentionSeen']);
      const [o, m, u, w] = got as [Float64Array, Float64Array, Float64Array, Float64Array];
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let j = 0; j < K; j++) {
        const at = ((b * T + t) * H + h) * K + j;
        if (t >= first(b, h)) expect(o[at], `T = ${T}: output ${[b, t, h, j]}`).toBeNaN();
        else expect(o[at], `T = ${T}: output ${[b, t, h, j]}`).toBe(want[0]![at]);
      }
      for (const [part, per, value, clean0] of [['m', 1, m, want[1]!], ['u', 1, u, want[2]!], ['w', K, w, want[3]!]] as const) {
        value.forEach((e, n) => {
          const bh = Math.floor(n / per);
          if (first(Math.floor(bh / H), bh % H) < T) expect(e, `T = ${T}: state ${part} ${n}`).toBeNaN();
          else expect(e, `T = ${T}: state ${part} ${n}`).toBe(clean0[n]);
        });
      }
      tf.dispose(clean);
    }
  });

  /** Row b's position before a decode step: each row its own. */
  const positionOf = (b: number) => 3 * b + 1;

  /**
   * One decode token of case c (T = 1) from its initial state through the step kernel, rows at
   * {@link positionOf}: output, m, u, w and the next positions.
   */
  const step = (c: Case, x: Pick<Inputs, 'q' | 'k' | 'v' | 'scale' | 'init'>) => tf.tidy(() => {
    const { B, H, K } = c;
    const init = x.init!;
    const positions = tf.tensor1d(Array.from({ length: B }, (_, b) => positionOf(b)), 'int32');
    const r = aarenStep(tf.tensor2d(x.q, [H, K]), tf.tensor4d(x.k, [B, 1, H, K]), tf.tensor4d(x.v, [B, 1, H, K]), positions, {
      scale: x.scale, initialState: { m: tf.tensor2d(init.m, [B, H]), u: tf.tensor2d(init.u, [B, H]), w: tf.tensor3d(init.w, [B, H, K]) },
    });
    return [r.output, r.state.m, r.state.u, r.state.w, r.positions];
  });

  it('a decode step takes two launches and matches the float64 oracle from an empty, a random and a leading state', async () => {
    // one token is the scan's T = 1: the scan kernels' bound at T = 1 holds for the step's shorter
    // chain (a score, the new max, two exps, two products and a sum, a division)
    await fc.assert(fc.asyncProperty(cases.filter((c) => c.init !== 'none'), async (drawn) => {
      const c = { ...drawn, T: 1 };
      const x = inputsOf(c);
      const tol = bounds(c, x, true);
      const want = aarenOracle(oracleInputs(x), { B: c.B, T: 1, H: c.H, K: c.K });
      let got: Float64Array[] = [];
      const ran = await launchedPipelines(async () => {
        const r = step(c, x);
        got = await Promise.all(r.map(values));
        tf.dispose(r);
      });
      expect(ran).toEqual(['AarenStepFrame', 'AarenStepMerge']);
      // the first launch also advances every row's position
      expect(Array.from(got[4]!)).toEqual(Array.from({ length: c.B }, (_, b) => positionOf(b) + 1));
      const parts = [['output', want.o], ['m', want.state.m], ['u', want.state.u], ['w', want.state.w]] as const;
      parts.forEach(([what, o], i) => {
        const v = got[i]!;
        expect(v.every(Number.isFinite), `${what} finite`).toBe(true);
        expect(maxAbsDiff(v, o), what).toBeLessThanOrEqual(tol[what]);
      });
    }), { numRuns: 12, seed: 41 });
  });

  it('a decode step makes NaN exactly the heads whose k or v is NaN or ±∞, or whose state is poisoned, and leaks nothing', async () => {
    const c: Case = { B: 2, T: 1, H: 3, K: 4, init: 'random', dState: false, scale: false, spread: 1, seed: 17 };
    const x = inputsOf(c);
    const { H, K } = c;
    const clean = await Promise.all(step(c, x).map(async (t) => { const v = await values(t); t.dispose(); return v; }));
    // (b, h): a NaN k, a +∞ v, a −∞ k, a NaN m; m = +∞ leaves m +∞; (1, 1) stays clean
    const spoilt = { ...x, k: x.k.slice(), v: x.v.slice(), init: { ...x.init!, m: x.init!.m.slice() } };
    spoilt.k[(0 * H + 0) * K + 1] = NaN;
    spoilt.v[(0 * H + 1) * K + 3] = Infinity;
    spoilt.k[(0 * H + 2) * K] = -Infinity;
    spoilt.init.m[1 * H + 0] = NaN;
    spoilt.init.m[1 * H + 2] = Infinity;
    const data = tf.backend().numDataIds();
    const got = await expectNoLeaks(async () => {
      const r = step(c, spoilt);
      const v = await Promise.all(r.map(values));
      tf.dispose(r);
      return v;
    });
    // the factors the two launches pass between them are freed too
    expect(tf.backend().numDataIds()).toBe(data);
    const [o, m, u, w] = got as [Float64Array, Float64Array, Float64Array, Float64Array];
    for (let bh = 0; bh < c.B * H; bh++) {
      const isClean = bh === 1 * H + 1;
      for (const [what, per, value] of [['output', K, o], ['u', 1, u], ['w', K, w]] as const) {
        for (let j = 0; j < per; j++) {
          if (isClean) expect(value[bh * per + j], `${what} ${bh}`).toBe(clean[['output', 'm', 'u', 'w'].indexOf(what)]![bh * per + j]);
          else expect(value[bh * per + j], `${what} ${bh}`).toBeNaN();
        }
      }
      if (isClean) expect(m[bh]).toBe(clean[1]![bh]);
      else if (bh === 1 * H + 2) expect(m[bh]).toBe(Infinity);
      else expect(m[bh], `m ${bh}`).toBeNaN();
    }
  });
});

describeOn('webgpu', 'aaren (the reference on the webgpu backend)', () => {
  it('matches the float64 oracle through implementation reference: output, final state and every gradient', async () => {
    const shapes: Case[] = [
      { B: 1, T: 5, H: 2, K: 3, init: 'none', dState: false, scale: false, spread: 1, seed: 3 },
      { B: 2, T: C + 7, H: 1, K: 4, init: 'random', dState: true, scale: false, spread: 1, seed: 4 },
      { B: 1, T: 1, H: 2, K: 2, init: 'empty', dState: true, scale: true, spread: 1, seed: 5 },
    ];
    for (const c of shapes) {
      const x = inputsOf(c);
      const tol = bounds(c, x);
      expect(untied(c, tol)).toBe(true);
      await expectMatchesOracle(c, x, tol, 'reference');
    }
  });
});
