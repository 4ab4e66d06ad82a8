// GatedLinearAttention (src/mixers/gated-linear-attention/) against the float64 oracle
// (test/oracle/gated-linear-attention.ts): the chunked tfjs-ops reference on cpu and wasm, the
// every-chunk-at-once path that webgl runs (called directly on cpu and wasm), and the WGSL scan
// kernels on webgpu (with the reference there too). Output, final state and every
// gradient within derived bounds, T spanning several chunks, two pieces carrying the state,
// causality, strong and tiny gates, non-finite inputs, the decode step, empty inputs, leaks and errors.

import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import {
  gatedLinearAttention, gatedLinearAttentionStep, gatedLinearAttentionStepFromLowRank, gatedLinearAttentionWithState, logForgetGate,
} from '../src/mixers/gated-linear-attention/op.js';
import type { Implementation } from '../src/validate.js';
import { GLA_CHUNK } from '../src/mixers/gated-linear-attention/reference.js';
import { gatedLinearAttentionParallel, PARALLEL_CHUNK } from '../src/mixers/gated-linear-attention/parallel.js';
import { SEEN_CHUNK } from '../src/mixers/gated-linear-attention/kernel.js';
import {
  gatedLinearAttentionGradOracle, gatedLinearAttentionMagnitudes, gatedLinearAttentionOracle, type GlaDims, type GlaInputs,
} from './oracle/gated-linear-attention.js';
import { describeOn, describeScans, EPS32, underScan, expectNoLeaks, launchedPipelines, maxAbs, REFERENCE_BACKENDS, seededUniform, values } from './helpers.js';

const c = GLA_CHUNK;

/**
 * What runs: the op with an implementation, or `{ parallel: true }`, the every-chunk-at-once path (webgl's
 * under 'auto'), called directly so that cpu and wasm test it, optionally in groups of at most
 * `groupRows` chunks' own terms at a time; or `{ step: true }`, one token through
 * gatedLinearAttentionStep under 'auto' (from zeros without an initial state).
 */
type ParallelPath = { parallel: true; groupRows?: number };
type Path = Implementation | ParallelPath | { step: true };
const isParallel = (path: Path): path is ParallelPath => typeof path === 'object' && 'parallel' in path;

/** The chunk length a path cuts T into. */
const chunkOf = (path: Path) => (isParallel(path) ? PARALLEL_CHUNK : GLA_CHUNK);

type Options = { initialState?: tf.Tensor4D; scale?: number };

/** gatedLinearAttentionWithState along a path. */
function withStateOn(path: Path) {
  return (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, g: tf.Tensor4D, o: Options = {}) => {
    if (isParallel(path)) {
      return gatedLinearAttentionParallel({ q, k, v, g, scale: o.scale ?? 1 / Math.sqrt(q.shape[3]), initialState: o.initialState }, path.groupRows);
    }
    if (typeof path === 'object') {
      const [B, , H, K] = q.shape;
      return gatedLinearAttentionStep(q, k, v, g, o.initialState ?? tf.zeros([B, H, K, v.shape[3]]), { scale: o.scale });
    }
    return gatedLinearAttentionWithState(q, k, v, g, { ...o, implementation: path });
  };
}

/** n values uniform in [lo, hi), float32 values so that oracle and reference read the same numbers. */
const uniform = (seed: number, n: number, lo = -1, hi = 1) => Float64Array.from(seededUniform(seed, n, lo, hi));

type Flags = { initialState: boolean; dState: boolean; scale: boolean };
type Case = GlaDims & Flags & { seed: number; gLo: number; gHi: number };
type Name = 'q' | 'k' | 'v' | 'g' | 'initialState';
const NAMES: Name[] = ['q', 'k', 'v', 'g', 'initialState'];

/** Inputs and cotangents of a case, float32-representable. */
function inputs(s: Case): { x: GlaInputs; dOut: Float64Array; dState?: Float64Array } {
  const { B, T, H, K, V, seed } = s;
  const x: GlaInputs = {
    q: uniform(seed, B * T * H * K), k: uniform(seed + 1, B * T * H * K), v: uniform(seed + 2, B * T * H * V),
    g: uniform(seed + 3, B * T * H * K, s.gLo, s.gHi),
  };
  if (s.initialState) x.initialState = uniform(seed + 4, B * H * K * V);
  if (s.scale) x.scale = Math.fround(0.3 + uniform(seed + 5, 1, 0, 1)[0]!);
  return { x, dOut: uniform(seed + 6, B * T * H * V), ...(s.dState ? { dState: uniform(seed + 7, B * H * K * V) } : {}) };
}

const dimsOf = (s: GlaDims): GlaDims => ({ B: s.B, T: s.T, H: s.H, K: s.K, V: s.V });

const shapeOf = (s: GlaDims, n: Name) =>
  n === 'v' ? [s.B, s.T, s.H, s.V] : n === 'initialState' ? [s.B, s.H, s.K, s.V] : [s.B, s.T, s.H, s.K];

/**
 * Σ dState·state, whose gradient reaches the op as a tensor of dState made on the CPU, as tfjs
 * makes zeros for a state the loss does not read: the kernels must not take a gradient still
 * held there for zeros. (Right only under a loss that adds it, whose dy is 1.)
 */
function stateTerm(state: tf.Tensor, dState: Float32Array): tf.Scalar {
  return tf.customGrad((st) => ({
    value: tf.sum(tf.mul(st as tf.Tensor, tf.tensor(dState, state.shape, 'float32'))),
    gradFunc: () => tf.tensor(dState, state.shape, 'float32'),
  }))(state) as tf.Scalar;
}

/** The op's output, state and the gradients of L = Σ dOut·out + Σ dState·state, read back. */
async function runOp(s: Case, x: GlaInputs, dOut: Float64Array, dState: Float64Array | undefined, path: Path) {
  const names = NAMES.filter((n) => x[n as keyof GlaInputs] !== undefined);
  const ts = names.map((n) => tf.tensor(Float32Array.from(x[n as keyof GlaInputs] as Float64Array), shapeOf(s, n), 'float32'));
  const call = (t: tf.Tensor[]) => {
    const by = Object.fromEntries(names.map((n, i) => [n, t[i]!])) as Record<Name, tf.Tensor4D>;
    return withStateOn(path)(by.q, by.k, by.v, by.g, {
      ...(x.scale !== undefined ? { scale: x.scale } : {}), ...(by.initialState ? { initialState: by.initialState } : {}),
    });
  };
  const { output, state } = call(ts);
  const grads = tf.grads((...t: tf.Tensor[]) => {
    const r = call(t);
    const L = tf.sum(tf.mul(r.output, tf.tensor(Float32Array.from(dOut), r.output.shape, 'float32')));
    return dState ? tf.add(L, stateTerm(r.state, Float32Array.from(dState))) : L;
  })(ts);
  const got = {
    output: await values(output), state: await values(state),
    grads: Object.fromEntries(await Promise.all(names.map(async (n, i) => [n, await values(grads[i]!)]))) as Record<Name, Float64Array>,
  };
  tf.dispose([ts, output, state, grads]);
  return got;
}

/**
 * The number of float32 roundings, times ε = EPS32 = 2u, that bound the reference's relative
 * error on any one term of a sum (a term: one q–k–v path through the state), derived from the
 * reference's operations:
 * - sums: a chunk's matMuls add ≤ c terms, the state carries a term through ≤ T/c chunk updates
 *   of 4 roundings each (exp(G_last)·S, the add, the matMul's product and its sum, ≤ T + 4·nC in
 *   all), the sums over K and V (q·S, scores, and the backward's dOut·vᵀ) K + V, and the
 *   products q·scale, q⊙exp(G), k⊙exp(·), masks (exact) and the final add: ≤ 8; a pair of
 *   tokens in different sub-chunks of a chunk takes its weight as two exps applied to q and k
 *   apart, then their product and the sum of the sub-chunks' own and crossing parts: 3 more, ≤ 11;
 * - exponents: every exponent is an in-chunk partial sum of g, or a difference of two, formed by
 *   a float32 cumsum whose absolute error is ≤ c·u·Σ_chunk |g|; the difference adds u·|gap| and
 *   exp its own ulp. A pair across sub-chunks splits its gap at the boundary b between them,
 *   (G_t − b) + (b − G_u): b's error cancels, and the two roundings add u·|G_t − b| + u·|b − G_u|
 *   = u·|gap|, the same. A term's path meets ≤ 1 exponent per chunk it crosses plus one, so its
 *   relative error from the exponents is ≤ (2c + 1)·u·A with A = max over (b, h, k) of
 *   Σ_t |g_t|, counted here as (2c + 1)·A·ε.
 * The bound on an entry is this count times ε times the entry's magnitude M (the oracle on
 * absolute values: Σ |terms|). Being a worst case (every rounding the same way), it sits about
 * 100× above the errors seen (≤ 1% of it over these cases, for g in [−1, 0], tiny and strong
 * gates alike); for strong gates it is looser still, since it does not scale a term's exponent
 * error by the term's own weight exp(G_t − G_j). A wrong term changes entries by O(M).
 *
 * The every-chunk-at-once path (chunk c = {@link PARALLEL_CHUNK}) forms the same terms: its
 * running sums of g are products with a `[c, c]` matrix of ones (≤ c terms, the cumsum's bound),
 * and its state reaches chunk i by ⌈log₂ nC⌉ doubling rounds instead of i updates; a term
 * crossing chunks meets, per round, one product and one add, and a product of up to nC chunk
 * decays formed with ≤ nC roundings: ≤ nC + 2·⌈log₂ nC⌉ ≤ 4·nC with its c, within the count above.
 */
function roundings(s: Case, g: ArrayLike<number>, chunk = c): number {
  const { T, K, V } = s;
  return T + 4 * Math.ceil(T / chunk) + K + V + 11 + (2 * chunk + 1) * gateMass(s, g);
}

/** A = the largest Σ_t |g_t| over (b, h, k): how far the gates can move an exponent. */
function gateMass(s: GlaDims, g: ArrayLike<number>): number {
  const { B, T, H, K } = s;
  let A = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < K; i++) {
    let sum = 0;
    for (let t = 0; t < T; t++) sum += Math.abs(g[((b * T + t) * H + h) * K + i]!);
    A = Math.max(A, sum);
  }
  return A;
}

/**
 * The same count for the WGSL scan kernels, from their operations: a term carried through the
 * state meets, per step, exp(g) (WGSL allows 3 + 2·|g| ulps, ≤ (3 + 2|g|)·ε), a product and a
 * sum: ≤ 5T + 2A over the sequence; per chunk boundary the carry's exp of the chunk's Σ g, whose
 * float32 sum adds ≤ c·u·Σ|g|: ≤ 5·nC + (c + 2)·A; the output's sum over K, the backward's sums
 * over V (across a workgroup, then across blocks) and over K, and the products scale·q and the
 * adjoint's: ≤ K + V + 8. The gradient of g is formed directly, per token, as a sum over V of
 * products of an adjoint and a state (no cumsum), so its magnitude is the oracle's |dg| itself.
 */
function kernelRoundings(s: Case, g: ArrayLike<number>): number {
  const { T, K, V } = s;
  return 5 * T + 5 * Math.ceil(T / c) + K + V + 8 + (c + 4) * gateMass(s, g);
}

/** Worst |got − want| / bound over the entries; ≤ 1 passes. */
function worstOverBound(got: ArrayLike<number>, want: ArrayLike<number>, bound: (i: number) => number): number {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i]! - want[i]!);
    if (!(e <= bound(i))) worst = Math.max(worst, Number.isNaN(e) ? Infinity : e / bound(i));
  }
  return worst;
}

/**
 * A bound `[B, T, H, K]` on every partial sum that the reference's g gradient meets. It is the
 * reverse cumsum, within a chunk, of dG_t = ∂L/∂G_t, whose terms (both signs) are the q–k pairs
 * with t at either end, and the pairs crossing the chunk (through exp(G_last)·S_prev). With the
 * magnitudes (absolute-value oracle), the pairs at a query t sum to |q_t|·|dq_t|, those at a key
 * j to |k_j|·|dk_j| (the dState pairs included), and those crossing token s to |dg_s|. So every
 * entry of a chunk is bounded by Σ_{t ∈ chunk} (|q_t|·|dq_t| + |k_t|·|dk_t|) + max_{s ∈ chunk} |dg_s|.
 */
function gPartialSums(s: GlaDims, x: GlaInputs, mag: ReturnType<typeof gatedLinearAttentionMagnitudes>, c: number): Float64Array {
  const { B, T, H, K } = s;
  const out = new Float64Array(B * T * H * K);
  const at = (b: number, t: number, h: number, i: number) => ((b * T + t) * H + h) * K + i;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < K; i++) {
    for (let t0 = 0; t0 < T; t0 += c) {
      const t1 = Math.min(T, t0 + c);
      let sum = 0;
      let crossing = 0;
      for (let t = t0; t < t1; t++) {
        const n = at(b, t, h, i);
        sum += Math.abs(x.q[n]!) * mag.grads.q[n]! + Math.abs(x.k[n]!) * mag.grads.k[n]!;
        crossing = Math.max(crossing, mag.grads.g[n]!);
      }
      for (let t = t0; t < t1; t++) out[at(b, t, h, i)] = sum + crossing;
    }
  }
  return out;
}

/**
 * Every result of the reference against the oracle, entry by entry within n·ε·M (see
 * {@link roundings}), with a floor of 4 ulps for entries whose magnitude is 0. For g's gradient
 * M is {@link gPartialSums}, and the reverse cumsum over ≤ c entries (on the parallel path a
 * product with a `[c, c]` matrix of ones) adds c roundings.
 */
async function expectMatchesOracle(s: Case, path: Path): Promise<void> {
  const { x, dOut, dState } = inputs(s);
  const dims = dimsOf(s);
  const want = gatedLinearAttentionOracle(x, dims);
  const wantGrads = gatedLinearAttentionGradOracle(x, dims, dOut, dState);
  const mag = gatedLinearAttentionMagnitudes(x, dims, dOut, dState);
  const got = await runOp(s, x, dOut, dState, path);
  const kernel = path === 'webgpu';
  const c = chunkOf(path);
  const n = kernel ? kernelRoundings(s, x.g) : roundings(s, x.g, c);
  const tol = (m: number) => n * EPS32 * m + 4 * EPS32 * (m === 0 ? 1 : 0);
  const label = JSON.stringify(s);
  expect(worstOverBound(got.output, want.out, (i) => tol(mag.out[i]!)), `output ${label}`).toBeLessThanOrEqual(1);
  expect(worstOverBound(got.state, want.state, (i) => tol(mag.state[i]!)), `state ${label}`).toBeLessThanOrEqual(1);
  for (const name of ['q', 'k', 'v', 'initialState'] as const) {
    if (!wantGrads[name]) continue;
    expect(worstOverBound(got.grads[name], wantGrads[name], (i) => tol(mag.grads[name]![i]!)), `d${name} ${label}`).toBeLessThanOrEqual(1);
  }
  const partial = kernel ? mag.grads.g : gPartialSums(dims, x, mag, c);
  const gFactor = kernel ? 1 : 1 + c / n;
  expect(worstOverBound(got.grads.g, wantGrads.g, (i) => tol(gFactor * partial[i]!)), `dg ${label}`).toBeLessThanOrEqual(1);
}

/** T of 1, within one chunk, and spanning up to three chunks and a remainder. */
const cases = fc.record({
  B: fc.integer({ min: 1, max: 2 }), T: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: c }), fc.integer({ min: c + 1, max: 3 * c + 5 })),
  H: fc.integer({ min: 1, max: 2 }), K: fc.integer({ min: 1, max: 4 }), V: fc.integer({ min: 1, max: 3 }),
  initialState: fc.boolean(), dState: fc.boolean(), scale: fc.boolean(), seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  gLo: fc.constant(-1), gHi: fc.constant(0),
});

const base: Case = { B: 2, T: 3 * c + 5, H: 2, K: 3, V: 2, initialState: true, dState: true, scale: false, seed: 7, gLo: -1, gHi: 0 };

/** q, k, v, g (and an initial state) of a case as tensors. */
function tensorsOf(s: Case) {
  const { x } = inputs(s);
  const t = (n: Name) => tf.tensor<tf.Rank>(Float32Array.from(x[n as keyof GlaInputs] as Float64Array), shapeOf(s, n), 'float32') as tf.Tensor4D;
  return { q: t('q'), k: t('k'), v: t('v'), g: t('g'), initialState: s.initialState ? t('initialState') : undefined };
}

// the reference on cpu and wasm, the every-chunk-at-once path called there, the WGSL kernels on webgpu
const suites: [typeof REFERENCE_BACKENDS[number] | 'webgpu', Implementation | ParallelPath][] = [
  ...REFERENCE_BACKENDS.map((b): [typeof b, Implementation] => [b, 'auto']),
  ...REFERENCE_BACKENDS.map((b): [typeof b, ParallelPath] => [b, { parallel: true }]),
  ['webgpu', 'webgpu'],
];
for (const [backend, path] of suites) describeScans(backend, isParallel(path) ? 'gatedLinearAttention, every chunk at once (webgl\'s path)' : 'gatedLinearAttention', () => {
  const implementation: Implementation = isParallel(path) ? 'auto' : path;
  const withState = withStateOn(path);
  const outputOf = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, g: tf.Tensor4D, o: Options = {}) => {
    if (!isParallel(path)) return gatedLinearAttention(q, k, v, g, { ...o, implementation: path });
    const { output, state } = withState(q, k, v, g, o);
    state.dispose();
    return output;
  };
  const c = chunkOf(path);
  const roundingsOf = (s: Case, g: ArrayLike<number>) => (path === 'webgpu' ? kernelRoundings(s, g) : roundings(s, g, c));

  it('matches the float64 oracle: output, final state and the gradients of q, k, v, g, initialState', async () => {
    await fc.assert(fc.asyncProperty(cases, (s) => expectMatchesOracle(s, path)), { numRuns: backend === 'webgpu' ? 12 : 25 });
  });

  // a chunk's products hold 32 · 64 · 64 multiply-adds a head: wasm's products batch by batch
  it('at K = V = 64 matches the float64 oracle', async () => {
    await expectMatchesOracle({ ...base, K: 64, V: 64 }, path);
  });

  it('strong gates (g down to −50) and tiny ones (g = −1e-6) stay finite and match the oracle', async () => {
    for (const [gLo, gHi] of [[-50, -10], [-50, 0], [-1e-6, -1e-6]]) await expectMatchesOracle({ ...base, gLo, gHi }, path);
  });

  if (isParallel(path)) {
    // groups of 2 or 3 chunks' own terms: B·H·n = 2·2·7 rows of chunks, the last group short
    it('taking the chunks\' terms a group at a time changes nothing: the oracle, every chunk boundary, with groups of 2 and 3', async () => {
      for (const rows of [2, 3]) {
        for (const T of [c - 1, c, c + 1, 6 * c + 5]) {
          await expectMatchesOracle({ ...base, T }, { parallel: true, groupRows: rows });
        }
      }
    });

    it('launches a constant number of kernels more per doubling of T (one doubling round each way), far fewer than the loop over chunks', async () => {
      const launches = async (T: number, p: Path) => {
        const { q, k, v, g, initialState } = tensorsOf({ ...base, B: 1, H: 1, T });
        const info = await tf.profile(() => {
          tf.dispose(tf.grads((a, b, c2, d, e) => {
            const r = withStateOn(p)(a as tf.Tensor4D, b as tf.Tensor4D, c2 as tf.Tensor4D, d as tf.Tensor4D, { initialState: e as tf.Tensor4D });
            return tf.add(tf.sum(r.output), tf.sum(r.state));
          })([q, k, v, g, initialState!]));
        });
        tf.dispose([q, k, v, g, initialState!]);
        return info.kernels.length;
      };
      const [k256, k512, k1024] = [await launches(256, path), await launches(512, path), await launches(1024, path)];
      expect(k1024 - k512, `${k256}, ${k512}, ${k1024}`).toBe(k512 - k256);
      expect(k1024 - k512).toBeLessThanOrEqual(20);
      expect(k1024 * 4, `${k1024} against the reference's`).toBeLessThan(await launches(1024, 'reference'));
    });
  }

  /** Two float32 evaluations within n·ε·M of the oracle each are within 2·n·ε·M of each other. */
  it('two pieces carrying the state equal one run', async () => {
    await fc.assert(fc.asyncProperty(cases.filter((s) => s.T >= 2), fc.double({ min: 0, max: 1, noNaN: true }), async (s, at) => {
      const cut = 1 + Math.floor(at * (s.T - 1));
      const [one, two] = tf.tidy(() => {
        const { q, k, v, g, initialState } = tensorsOf(s);
        const whole = withState(q, k, v, g, { initialState });
        const piece = (t0: number, n: number, init?: tf.Tensor4D) => {
          const at = (x: tf.Tensor4D) => x.slice([0, t0, 0, 0], [-1, n, -1, -1]);
          return withState(at(q), at(k), at(v), at(g), { initialState: init });
        };
        const first = piece(0, cut, initialState);
        const second = piece(cut, s.T - cut, first.state);
        return [[whole.output, whole.state], [tf.concat([first.output, second.output], 1), second.state]];
      });
      const { x } = inputs(s);
      const mag = gatedLinearAttentionMagnitudes(x, dimsOf(s), new Float64Array(s.B * s.T * s.H * s.V));
      const n = roundingsOf(s, x.g);
      for (const [i, m] of [[0, mag.out], [1, mag.state]] as const) {
        expect(worstOverBound(await values(two[i]!), await values(one[i]!), (j) => 2 * n * EPS32 * m[j]! + 4 * EPS32)).toBeLessThanOrEqual(1);
      }
      tf.dispose([one, two]);
    }), { numRuns: 12 });
  });

  it('is causal: changing the tokens after t leaves outputs 0..t bit for bit unchanged', async () => {
    await fc.assert(fc.asyncProperty(cases.filter((s) => s.T >= 2), fc.double({ min: 0, max: 1, noNaN: true }), async (s, at) => {
      const t = Math.floor(at * (s.T - 1));   // keep 0..t, change t+1..T−1
      const [a, b] = tf.tidy(() => {
        const mine = tensorsOf(s);
        const theirs = tensorsOf({ ...s, seed: s.seed + 100 });
        const mixed = (n: 'q' | 'k' | 'v' | 'g') =>
          tf.concat([mine[n].slice([0, 0, 0, 0], [-1, t + 1, -1, -1]), theirs[n].slice([0, t + 1, 0, 0], [-1, -1, -1, -1])], 1) as tf.Tensor4D;
        const keep = (o: tf.Tensor) => o.slice([0, 0, 0, 0], [-1, t + 1, -1, -1]);
        return [
          keep(outputOf(mine.q, mine.k, mine.v, mine.g, { initialState: mine.initialState })),
          keep(outputOf(mixed('q'), mixed('k'), mixed('v'), mixed('g'), { initialState: mine.initialState })),
        ];
      });
      expect(Array.from(await values(b))).toEqual(Array.from(await values(a)));
      tf.dispose([a, b]);
    }), { numRuns: 12 });
  });

  it('a NaN or ±∞ in a token poisons exactly the outputs that see it; a loss on the earlier ones has finite gradients', async () => {
    const s: Case = { ...base, B: 2, H: 2, T: c + 9 };
    const { B, T, H, K, V } = s;
    const t0 = c - 3;   // the chunk before the boundary: later chunks see it through the state
    for (const [name, bad] of [['k', NaN], ['v', Infinity], ['g', -Infinity], ['g', NaN], ['q', -Infinity]] as const) {
      const clean = tensorsOf(s);
      const width = name === 'v' ? V : K;
      const poisoned = tf.tidy(() => {
        const data = clean[name].dataSync().slice();
        data[((1 * T + t0) * H + 1) * width + (width - 1)] = bad;   // batch row 1, head 1
        return tf.tensor(data, clean[name].shape) as tf.Tensor4D;
      });
      const args = { ...clean, [name]: poisoned };
      const { output, state } = withState(args.q, args.k, args.v, args.g, { initialState: args.initialState });
      const o = await values(output);
      const st = await values(state);
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let j = 0; j < V; j++) {
        const sees = b === 1 && h === 1 && (name === 'q' ? t === t0 : t >= t0);
        expect(Number.isNaN(o[((b * T + t) * H + h) * V + j]!), `${name}=${bad}: output ${[b, t, h, j]}`).toBe(sees);
      }
      for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let j = 0; j < K * V; j++) {
        const sees = name !== 'q' && b === 1 && h === 1;
        expect(Number.isNaN(st[(b * H + h) * K * V + j]!), `${name}=${bad}: state ${[b, h, j]}`).toBe(sees);
      }
      const names = ['q', 'k', 'v', 'g', 'initialState'] as const;
      const grads = tf.grads((...t: tf.Tensor[]) => {
        const out = outputOf(t[0] as tf.Tensor4D, t[1] as tf.Tensor4D, t[2] as tf.Tensor4D, t[3] as tf.Tensor4D,
          { initialState: t[4] as tf.Tensor4D });
        return tf.sum(out.slice([0, 0, 0, 0], [-1, t0, -1, -1]));
      })(names.map((n) => args[n]!));
      for (let i = 0; i < grads.length; i++) {
        const gv = await values(grads[i]!);
        expect(gv.every(Number.isFinite), `${name}=${bad}: d${names[i]} finite`).toBe(true);
      }
      tf.dispose([clean, poisoned, output, state, grads]);
    }
  });

  if (backend !== 'webgpu' && !isParallel(path)) {
    // off webgpu a decode step is its own few tfjs ops (token.ts), not the op at T = 1
    it('a decode step matches the float64 oracle: output, state and the gradients of q, k, v, g and the state before it', async () => {
      await fc.assert(fc.asyncProperty(cases, (s) => expectMatchesOracle({ ...s, T: 1 }, { step: true })), { numRuns: 25 });
    });

    it('a decode step poisons what the op poisons, gives a bad input a zero gradient and the rest finite ones, in fewer launches than the op, leaving nothing behind', async () => {
      const s: Case = { ...base, T: 1 };
      const { B, H, K, V } = s;
      const clean = tensorsOf(s);
      const names = ['q', 'k', 'v', 'g', 'initialState'] as const;
      const step = (t: Record<(typeof names)[number], tf.Tensor>) =>
        gatedLinearAttentionStep(t.q as tf.Tensor4D, t.k as tf.Tensor4D, t.v as tf.Tensor4D, t.g as tf.Tensor4D, t.initialState as tf.Tensor4D);
      for (const [name, bad] of [['k', NaN], ['v', Infinity], ['g', -Infinity], ['g', NaN], ['q', -Infinity]] as const) {
        const width = name === 'v' ? V : K;
        const at = (1 * H + 1) * width + (width - 1);   // batch row 1, head 1
        const poisoned = tf.tidy(() => {
          const data = clean[name].dataSync().slice();
          data[at] = bad;
          return tf.tensor(data, clean[name].shape) as tf.Tensor4D;
        });
        const args = { ...clean, [name]: poisoned } as Record<(typeof names)[number], tf.Tensor>;
        await expectNoLeaks(async () => {
          const { output, state } = step(args);
          const o = await values(output);
          const st = await values(state);
          for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
            const sees = b === 1 && h === 1;
            for (let j = 0; j < V; j++) expect(Number.isNaN(o[(b * H + h) * V + j]!), `${name}=${bad}: output ${[b, h, j]}`).toBe(sees);
            for (let j = 0; j < K * V; j++) expect(Number.isNaN(st[(b * H + h) * K * V + j]!), `${name}=${bad}: state ${[b, h, j]}`).toBe(sees && name !== 'q');
          }
          // a loss on every output but the poisoned head's
          const keep = tf.tensor4d(Array.from({ length: B * H * V }, (_, i) => (Math.floor(i / V) === H + 1 ? 0 : 1)), [B, 1, H, V]);
          const grads = tf.grads((...t: tf.Tensor[]) => {
            const r = step(Object.fromEntries(names.map((n, i) => [n, t[i]!])) as Record<(typeof names)[number], tf.Tensor>);
            return tf.sum(tf.where(tf.cast(keep, 'bool'), r.output, tf.zerosLike(r.output)));
          })(names.map((n) => args[n]));
          for (let i = 0; i < grads.length; i++) {
            const d = await values(grads[i]!);
            expect(d.every(Number.isFinite), `${name}=${bad}: d${names[i]} finite`).toBe(true);
            if (names[i] === name) expect(d[at], `${name}=${bad}: its own gradient`).toBe(0);
          }
          tf.dispose([output, state, keep, grads]);
        });
        poisoned.dispose();
      }
      const launches = async (f: () => tf.Tensor[]) => {
        const info = await tf.profile(f);
        tf.dispose(info.result as tf.Tensor[]);
        return info.kernels.length;
      };
      const op = await launches(() => Object.values(gatedLinearAttentionWithState(clean.q, clean.k, clean.v, clean.g, { initialState: clean.initialState })));
      const token = await launches(() => Object.values(step(clean as Record<(typeof names)[number], tf.Tensor>)));
      expect(token, `${token} launches against the op's ${op}`).toBeLessThan(0.6 * op);
      tf.dispose(Object.values(clean).filter((t) => t !== undefined) as tf.Tensor[]);
    });
  }

  /** The step and the forward are each within n·ε·M of the oracle, so within 2·n·ε·M of each other. */
  if (!isParallel(path)) it('stepping token by token from the state equals the forward, outputs and final state', async () => {
    await fc.assert(fc.asyncProperty(cases.filter((s) => s.T <= c + 5), async (s) => {
      const { q, k, v, g, initialState } = tensorsOf(s);
      const whole = withState(q, k, v, g, { initialState });
      let state = initialState ?? tf.zeros([s.B, s.H, s.K, s.V]) as tf.Tensor4D;
      const outs: tf.Tensor[] = [];
      for (let t = 0; t < s.T; t++) {
        const at = (x: tf.Tensor4D) => x.slice([0, t, 0, 0], [-1, 1, -1, -1]);
        const r = gatedLinearAttentionStep(at(q), at(k), at(v), at(g), state, { implementation });
        if (state !== initialState) state.dispose();
        outs.push(r.output);
        state = r.state;
      }
      const stepped = tf.concat(outs, 1);
      const { x } = inputs(s);
      const mag = gatedLinearAttentionMagnitudes(x, dimsOf(s), new Float64Array(s.B * s.T * s.H * s.V));
      const n = roundingsOf(s, x.g);
      expect(worstOverBound(await values(stepped), await values(whole.output), (j) => 2 * n * EPS32 * mag.out[j]! + 4 * EPS32)).toBeLessThanOrEqual(1);
      expect(worstOverBound(await values(state), await values(whole.state), (j) => 2 * n * EPS32 * mag.state[j]! + 4 * EPS32)).toBeLessThanOrEqual(1);
      tf.dispose([q, k, v, g, initialState, whole.output, whole.state, outs, stepped, state].filter((t) => t !== undefined) as tf.Tensor[]);
    }), { numRuns: 6 });
  });

  // the empty path runs no kernel, the same code on every backend; on webgpu the test's own
  // tf.sum of an empty tensor fails in tfjs-backend-webgpu 4.22 (a zero-size buffer upload)
  if (backend !== 'webgpu' && !isParallel(path)) it('T = 0 and B = 0: an empty output, the initial state (or zeros), zero gradients', async () => {
    for (const [B, T] of [[2, 0], [0, 3]]) {
      const s: Case = { ...base, B, T };
      const { q, k, v, g, initialState } = tensorsOf(s);
      const r = withState(q, k, v, g, { initialState });
      expect(r.output.shape).toEqual([B, T, s.H, s.V]);
      expect(Array.from(await values(r.state))).toEqual(Array.from(await values(initialState!)));
      const zero = withState(q, k, v, g);
      expect(maxAbs(await values(zero.state))).toBe(0);
      const dInit = tf.grad((init: tf.Tensor) => tf.sum(withState(q, k, v, g, { initialState: init as tf.Tensor4D }).state))(initialState!);
      expect(Array.from(await values(dInit))).toEqual(new Array(B * s.H * s.K * s.V).fill(1));
      const dq = tf.grad((x: tf.Tensor) => tf.sum(outputOf(x as tf.Tensor4D, k, v, g)))(q);
      expect(dq.shape).toEqual(q.shape);
      tf.dispose([q, k, v, g, initialState!, r.output, r.state, zero.output, zero.state, dInit, dq]);
    }
  });

  it('leaves no tensor behind (forward, with state, gradients, a rejected g)', async () => {
    const { q, k, v, g, initialState } = tensorsOf(base);
    const positive = tf.abs(g) as tf.Tensor4D;
    await expectNoLeaks(() => {
      tf.dispose(outputOf(q, k, v, g));
      tf.dispose(Object.values(withState(q, k, v, g, { initialState, scale: 0.5 })));
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor, c2: tf.Tensor, d: tf.Tensor, e: tf.Tensor) => {
        const r = withState(a as tf.Tensor4D, b as tf.Tensor4D, c2 as tf.Tensor4D, d as tf.Tensor4D, { initialState: e as tf.Tensor4D });
        return tf.add(tf.sum(r.output), tf.sum(r.state));
      })([q, k, v, g, initialState!]));
      // a GPU backend cannot read g back to reject it (see the positive-gate test below)
      if (backend !== 'webgpu' && !isParallel(path)) expect(() => outputOf(q, k, v, positive)).toThrow(/must be ≤ 0/);
    });
    tf.dispose([q, k, v, g, initialState!, positive]);
  });
});

describeOn('cpu', 'gatedLinearAttention errors', () => {
  it('rejects bad shapes, g > 0, a bad scale, unknown options and the webgpu implementation off webgpu, naming what it expected', () => {
    const { q, k, v, g, initialState } = tensorsOf({ ...base, T: 4 });
    const op = gatedLinearAttention;
    const t4 = (shape: number[]) => tf.zeros<tf.Rank>(shape) as tf.Tensor4D;
    expect(() => op(q, t4([2, 4, 2, 2]), v, g)).toThrow(/gatedLinearAttention: argument 'k' must have shape \[B, T, H, K\] = \[2, 4, 2, 3\]; received \[2, 4, 2, 2\]/);
    expect(() => op(q, k, v, t4([2, 3, 2, 3]))).toThrow(/argument 'g' must have shape/);
    expect(() => op(q, k, t4([2, 4, 1, 2]), g)).toThrow(/argument 'v' must have shape \[B, T, H, V\] = \[2, 4, 2, 2\]; received \[2, 4, 1, 2\]/);
    expect(() => op(q.reshape([8, 2, 3]) as unknown as tf.Tensor4D, k, v, g)).toThrow(/argument 'q' must be a float32 tensor of rank 4/);
    expect(() => op(q, k, v, g, { initialState: t4([2, 2, 3, 3]) })).toThrow(/argument 'initialState' must have shape \[B, H, K, V\] = \[2, 2, 3, 2\]/);
    const positive = tf.tidy(() => tf.add(g, tf.oneHot([3], 2 * 4 * 2 * 3).reshape(g.shape).mul(5)) as tf.Tensor4D);
    expect(() => op(q, k, v, positive)).toThrow(/argument 'g' is the log forget gate and must be ≤ 0 everywhere/);
    for (const scale of [0, -1, NaN, Infinity, '1' as unknown as number]) {
      expect(() => op(q, k, v, g, { scale })).toThrow(/option 'scale' must be a finite number > 0/);
    }
    expect(() => op(q, k, v, g, { initalState: initialState } as never)).toThrow(/unknown option 'initalState'; the options are 'scale', 'initialState', 'implementation'/);
    expect(() => op(q, k, v, g, { implementation: 'webgpu' })).toThrow(/gatedLinearAttention: implementation 'webgpu' needs the 'webgpu' backend; the active backend is 'cpu'/);
    expect(() => gatedLinearAttentionWithState(q, k, v, g, { implementation: 'fast' as never })).toThrow(/option 'implementation' must be one of/);
    expect(() => gatedLinearAttentionStep(q, k, v, g, t4([2, 2, 3, 3]))).toThrow(/gatedLinearAttentionStep: argument 'initialState' must have shape \[B, H, K, V\] = \[2, 2, 3, 2\]/);
    tf.dispose([q, k, v, g, initialState!, positive]);
  });
});

describeOn('cpu', 'gatedLinearAttention: memory', () => {
  /** Peak bytes (tf.profile, above those already held) of a forward+backward at [1, T, 1, 8] with V = 8. */
  async function peakOf(T: number): Promise<number> {
    const [q, k, v] = [0, 1, 2].map((n) => tf.tensor(Float32Array.from(uniform(n, T * 8)), [1, T, 1, 8]) as tf.Tensor4D);
    const g = tf.tensor4d(Float32Array.from(uniform(3, T * 8, -1, 0)), [1, T, 1, 8]);
    const held = tf.memory().numBytes;
    const info = await tf.profile(() => {
      tf.dispose(tf.grads((a, b, c2, d) => tf.sum(gatedLinearAttention(a as tf.Tensor4D, b as tf.Tensor4D, c2 as tf.Tensor4D, d as tf.Tensor4D)))([q!, k!, v!, g]));
    });
    tf.dispose([q!, k!, v!, g]);
    return info.peakBytes - held;
  }

  it('peak memory of forward+backward grows linearly in T and stays far below a [T, T] matrix', async () => {
    const small = await peakOf(1024);
    const large = await peakOf(4096);
    // 4× the tokens: the O(T·(K+V)) part grows 4×, a chunk's own terms not at all (a T² part would grow 16×)
    expect(large, `${small} → ${large}`).toBeLessThan(4.5 * small);
    // one float32 [T, T] matrix at T = 4096 is 64 MiB
    expect(large, `${large} bytes`).toBeLessThan((4 * 4096 * 4096) / 4);
  });
});

describeOn('webgpu', 'gatedLinearAttention on its kernels', () => {
  it('gives a non-finite input (or a positive gate) a zero gradient, and every other a finite one, under a loss on every output', async () => {
    const s: Case = { ...base, B: 1, H: 2, T: c + 9, initialState: false };
    const at = ((c - 3) * s.H + 1) * s.K + 1;   // token c − 3, head 1, key channel 1 (v: value channel 1)
    for (const [name, bad] of [['q', NaN], ['k', Infinity], ['v', -Infinity], ['g', NaN], ['g', 0.5]] as const) {
      const clean = tensorsOf(s);
      const poisoned = tf.tidy(() => {
        const data = clean[name].dataSync().slice();
        data[name === 'v' ? ((c - 3) * s.H + 1) * s.V + 1 : at] = bad;
        return tf.tensor(data, clean[name].shape) as tf.Tensor4D;
      });
      const args = { ...clean, [name]: poisoned };
      // the loss is NaN, but its gradient in each output is 1
      const grads = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor) =>
        tf.sum(gatedLinearAttention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, g as tf.Tensor4D, { implementation: 'webgpu' })))(
        [args.q, args.k, args.v, args.g]);
      const index = ['q', 'k', 'v', 'g'].indexOf(name);
      const d = await values(grads[index]!);
      const badAt = name === 'v' ? ((c - 3) * s.H + 1) * s.V + 1 : at;
      expect(d[badAt], `${name}=${bad}: its own gradient`).toBe(0);
      for (const gr of grads) expect((await values(gr)).every(Number.isFinite), `${name}=${bad}: finite gradients`).toBe(true);
      tf.dispose([clean, poisoned, grads]);
    }
  });

  it('runs in four launches, the scan\'s three and the poison\'s one (two where its scan walks); its gradient in four: the scan\'s three and the cut of its buffer', async () => {
    const { q, k, v, g, initialState } = tensorsOf(base);
    const untaped = () => launchedPipelines(async () => {
      const { output, state } = gatedLinearAttentionWithState(q, k, v, g, { initialState });
      await Promise.all([output.data(), state.data()]);
      tf.dispose([output, state]);
    });
    const forward = ['GatedLinearAttentionChunkStates', 'ScanCarry', 'GatedLinearAttentionForward', 'GatedLinearAttentionSeen'];
    expect(await underScan('chunks', untaped)).toEqual(forward);
    expect(await underScan('walk', untaped)).toEqual(['GatedLinearAttentionWalk', 'GatedLinearAttentionSeen']);
    const dy = tf.onesLike(v);
    const taped = await launchedPipelines(async () => {
      const grads = tf.grads((a, b, c, d) => gatedLinearAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, d as tf.Tensor4D))(
        [q, k, v, g], dy);
      await Promise.all(grads.map((t) => t.data()));
      tf.dispose(grads);
    });
    // the forward, then the backward
    expect(taped).toEqual([...forward, 'GatedLinearAttentionBackwardChunkStates', 'ScanCarry',
      'GatedLinearAttentionBackward', 'GatedLinearAttentionSplitGrads']);
    tf.dispose([q, k, v, g, initialState!, dy]);
  });
  it('forms the log gate of its logits in one launch, and its gradient in one, with tfjs ops\' numbers to the bit', async () => {
    // logits across softplus's three branches (|z| past 13.9, between, small), and ±∞ and NaN
    const zs = Float32Array.from([...seededUniform(41, 60, -30, 30), -1e-3, 0, 1e-3, Infinity, -Infinity, NaN]);
    const z = tf.tensor4d(zs, [1, 6, 1, 11]);
    const dg = tf.tensor4d(seededUniform(42, 66, -1, 1), [1, 6, 1, 11]);
    const both = (implementation: Implementation) => {
      const f = (t: tf.Tensor) => logForgetGate(t as tf.Tensor4D, 16, implementation);
      return [f(z), tf.grad(f)(z, dg)];
    };
    let got: tf.Tensor[] = [];
    const ran = await launchedPipelines(async () => {
      got = both('webgpu');
      await Promise.all(got.map((t) => t.data()));
    });
    // the gate, then tf.grad's: the gate again and its gradient
    expect(ran).toEqual(['GatedLinearAttentionLogGate', 'GatedLinearAttentionLogGate', 'GatedLinearAttentionLogGate']);
    const want = both('reference');
    for (let i = 0; i < 2; i++) expect(Array.from(await values(got[i]!))).toEqual(Array.from(await values(want[i]!)));
    tf.dispose([z, dg, ...got, ...want]);
  });

  it('a decode step is one launch, from the log gate or from its low-rank features (the same numbers to the bit), and poisons what the forward poisons', async () => {
    // one token of the base case; the gate's low-rank features (integers) and up projection with
    // its bias (eighths) make every logit z exact in float32 in any order of its sums, so the
    // kernel's z and tfjs's product meet to the bit; the gates run from about −0.5 to −1e-3
    const s: Case = { ...base, T: 1 };
    const { B, H, K, V } = s;
    const r = 3;
    const clean = tensorsOf(s);
    const low = tf.tensor3d(seededUniform(31, B * r, -2.5, 2.5).map(Math.round), [B, 1, r]);
    const up = tf.tensor2d(seededUniform(32, (r + 1) * H * K, -8.5, 8.5).map((x) => Math.round(x) / 8), [r + 1, H * K]);
    const state = clean.initialState!;
    const gateOf = (l: tf.Tensor3D, u: tf.Tensor2D) => tf.tidy(() => logForgetGate(tf.add(tf.matMul(l.reshape([B, r]), u.slice([0, 0], [r, -1])),
      u.slice([r, 0], [1, -1])).reshape([B, 1, H, K]) as tf.Tensor4D, 16));
    const fromLowRank = (a: typeof clean, l: tf.Tensor3D, u: tf.Tensor2D) => gatedLinearAttentionStepFromLowRank(a.q, a.k, a.v, l, u, 16, state);
    let got: tf.Tensor[] = [];
    const ran = await launchedPipelines(async () => {
      const result = fromLowRank(clean, low, up);
      got = [result.output, result.state];
      await Promise.all(got.map((t) => t.data()));
    });
    expect(ran).toEqual(['GatedLinearAttentionStep']);
    const g = gateOf(low, up);
    const plain = gatedLinearAttentionStep(clean.q, clean.k, clean.v, g, state);
    const want = [await values(plain.output), await values(plain.state)];
    expect(Array.from(await values(got[0]!))).toEqual(Array.from(want[0]!));
    expect(Array.from(await values(got[1]!))).toEqual(Array.from(want[1]!));
    // batch row 1, head 1's last channel: k, v, q (its output only) and g > 0; a NaN feature of
    // batch row 1 (every head of the row); a NaN up projection or a bias of −∞ (g = −∞) at head
    // 1's last channel (head 1 of every row). (A bias of +∞ gives g = 0, a gate that keeps all.)
    const spoils = [['k', NaN], ['v', Infinity], ['q', -Infinity], ['g', 0.5], ['low', NaN], ['up', NaN], ['bias', -Infinity]] as const;
    for (const [name, bad] of spoils) {
      const source = name === 'g' ? g : name === 'low' ? low : name === 'up' || name === 'bias' ? up : clean[name];
      const width = name === 'v' ? V : K;
      const at = name === 'low' ? 1 * r + 1 : name === 'up' ? 1 * H * K + 1 * K + K - 1 : name === 'bias' ? r * H * K + 1 * K + K - 1
        : (1 * H + 1) * width + width - 1;
      const data = (await source.data()).slice();
      data[at] = bad;
      const spoilt = tf.tensor(data, source.shape);
      const before = tf.memory().numTensors;
      const result = name === 'g' ? gatedLinearAttentionStep(clean.q, clean.k, clean.v, spoilt as tf.Tensor4D, state)
        : name === 'low' ? fromLowRank(clean, spoilt as tf.Tensor3D, up)
          : name === 'up' || name === 'bias' ? fromLowRank(clean, low, spoilt as tf.Tensor2D)
            : fromLowRank({ ...clean, [name]: spoilt }, low, up);
      // the (b, h) rows that turn NaN
      const poisoned = (bh: number) => name === 'low' ? Math.floor(bh / H) === 1 : name === 'up' || name === 'bias' ? bh % H === 1 : bh === 1 * H + 1;
      const [o, st] = [await values(result.output), await values(result.state)];
      o.forEach((e, j) => {
        if (poisoned(Math.floor(j / V))) expect(e, `${name}=${bad}: output ${j}`).toBeNaN();
        else expect(e, `${name}=${bad}: output ${j}`).toBe(want[0]![j]);
      });
      st.forEach((e, j) => {
        if (name !== 'q' && poisoned(Math.floor(j / (K * V)))) expect(e, `${name}=${bad}: state ${j}`).toBeNaN();
        else expect(e, `${name}=${bad}: state ${j}`).toBe(want[1]![j]);
      });
      tf.dispose([result.output, result.state]);
      expect(tf.memory().numTensors, `${name}=${bad}: tensors left`).toBe(before);
      spoilt.dispose();
    }
    tf.dispose([...Object.values(clean).filter((t) => t !== undefined) as tf.Tensor[], low, up, g, plain.output, plain.state, got]);
  });

  it(`past one seen chunk (${SEEN_CHUNK} tokens: two launches), a bad token in any chunk poisons exactly the outputs and states that see it, in place, leaving no data behind`, async () => {
    const C = SEEN_CHUNK;
    // a last chunk part full, full, and of one token
    for (const T of [2 * C + 37, 2 * C, C + 1]) {
      const s: Case = { ...base, B: 2, T, H: 3 };
      // [b, h, input, token, value], at the input's last channel, those before T; (0, 2) stays clean
      const spoils: Array<[number, number, 'q' | 'k' | 'v' | 'g', number, number]> = [
        [0, 0, 'k', 0, NaN], // the first token: every output of the head
        [0, 1, 'v', C, Infinity], [0, 1, 'k', T - 1, NaN], [0, 1, 'q', 10, NaN], // a middle chunk's first token; q alone before it
        [1, 0, 'g', C - 1, 0.5], [1, 0, 'g', C + 1, NaN], [1, 0, 'q', T - 1, -Infinity], // a g > 0 at the first chunk's last token
        [1, 1, 'k', T - 1, -Infinity], [1, 1, 'q', C - 1, Infinity], // the last token alone; q alone at a chunk's end
        [1, 2, 'q', C, NaN], [1, 2, 'q', 2 * C - 1, NaN], // q alone: its own outputs, not the state
      ];
      const spoil = spoils.filter(([, , , t]) => t < T);
      // the expected placement, from the list: a head's outputs from its first bad k, v or g on, and at each bad q
      const first = (b: number, h: number) =>
        Math.min(T, ...spoil.filter(([bb, hh, n]) => bb === b && hh === h && n !== 'q').map(([, , , t]) => t));
      const ownOnly = (b: number, h: number, t: number) => spoil.some(([bb, hh, n, tt]) => bb === b && hh === h && n === 'q' && tt === t);
      const clean = tensorsOf(s);
      const args = tf.tidy(() => Object.fromEntries((['q', 'k', 'v', 'g'] as const).map((name) => {
        const data = clean[name].dataSync().slice();
        const width = name === 'v' ? s.V : s.K;
        for (const [b, h, n, t, bad] of spoil) if (n === name) data[((b * T + t) * s.H + h) * width + width - 1] = bad;
        return [name, tf.tensor(data, clean[name].shape) as tf.Tensor4D];
      }))) as Record<'q' | 'k' | 'v' | 'g', tf.Tensor4D>;
      const ok = gatedLinearAttentionWithState(clean.q, clean.k, clean.v, clean.g, { initialState: clean.initialState, implementation: 'webgpu' });
      const [o0, st0] = [await values(ok.output), await values(ok.state)];
      const before = { tensors: tf.memory().numTensors, data: tf.backend().numDataIds() };
      let o: Float64Array = new Float64Array();
      let st: Float64Array = new Float64Array();
      const ran = await launchedPipelines(async () => {
        const { output, state } = gatedLinearAttentionWithState(args.q, args.k, args.v, args.g, { initialState: clean.initialState, implementation: 'webgpu' });
        [o, st] = [await values(output), await values(state)];
        tf.dispose([output, state]);
      });
      expect({ tensors: tf.memory().numTensors, data: tf.backend().numDataIds() }, `T = ${T}: memory`).toEqual(before);
      expect(ran.slice(-2), `T = ${T}`).toEqual(['GatedLinearAttentionSeenChunks', 'GatedLinearAttentionSeen']);
      for (let b = 0; b < s.B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < s.H; h++) for (let j = 0; j < s.V; j++) {
        const at = ((b * T + t) * s.H + h) * s.V + j;
        if (t >= first(b, h) || ownOnly(b, h, t)) expect(o[at], `T = ${T}: output ${[b, t, h, j]}`).toBeNaN();
        else expect(o[at], `T = ${T}: output ${[b, t, h, j]}`).toBe(o0[at]);
      }
      for (let b = 0; b < s.B; b++) for (let h = 0; h < s.H; h++) for (let j = 0; j < s.K * s.V; j++) {
        const at = (b * s.H + h) * s.K * s.V + j;
        if (first(b, h) < T) expect(st[at], `T = ${T}: state ${[b, h, j]}`).toBeNaN();
        else expect(st[at], `T = ${T}: state ${[b, h, j]}`).toBe(st0[at]);
      }
      tf.dispose([clean, args, ok.output, ok.state]);
    }
  });
});

// The reference runs on webgpu too (implementation 'reference'); there a positive gate, which the
// op cannot read back, becomes NaN instead of an error, through the kernels and the reference alike
describeOn('webgpu', 'gatedLinearAttention (the reference on the webgpu backend)', () => {
  it('matches the float64 oracle through implementation reference: output, final state and every gradient', async () => {
    for (const s of [{ ...base, T: 5 }, { ...base, B: 1, T: c + 3, initialState: false }, { ...base, T: 1, dState: false }]) {
      await expectMatchesOracle(s, 'reference');
    }
  });

  it('a positive gate makes the outputs from its token on, and the final state, NaN; the earlier outputs are a clean run\'s', async () => {
    const s: Case = { ...base, B: 1, T: 6, H: 1, initialState: false };
    const { q, k, v, g } = tensorsOf(s);
    // token 3, key channel 1: +2
    const positive = tf.tidy(() => tf.add(g, tf.oneHot([3 * s.K + 1], s.T * s.K).reshape(g.shape).mul(2)) as tf.Tensor4D);
    for (const implementation of ['webgpu', 'reference'] as const) {
      const clean = gatedLinearAttentionWithState(q, k, v, g, { implementation });
      const bad = gatedLinearAttentionWithState(q, k, v, positive, { implementation });
      const [o, ok] = [await values(bad.output), await values(clean.output)];
      const before = 3 * s.V;
      expect(Array.from(o.subarray(0, before)), implementation).toEqual(Array.from(ok.subarray(0, before)));
      expect(Array.from(o.subarray(before)).every(Number.isNaN), implementation).toBe(true);
      expect(Array.from(await values(bad.state)).every(Number.isNaN), implementation).toBe(true);
      tf.dispose([clean.output, clean.state, bad.output, bad.state]);
    }
    tf.dispose([q, k, v, g, positive]);
  });
});
