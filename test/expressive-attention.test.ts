import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Implementation } from '../src/validate.js';
import { expressiveAttention as attention, expressiveAttentionRecurrentStep } from '../src/mixers/expressive-attention/op.js';
import {
  expressiveAttention, quadraticFeatures, type ExpressiveAttentionDecode,
} from '../src/mixers/expressive-attention/layer.js';
import { itLeaksNothing, itRoundTrips, itTrains } from './layer-properties.js';
import {
  attentionCases, attentionInputs as inputs, itAttentionOpLeaksNothing, itIgnoresKeysItCannotSee, itMatchesRepeatedHeads, type AttentionCase,
} from './attention-op-properties.js';
import {
  expressiveAttentionGradOracle, expressiveAttentionOracle,
} from './oracle/attention.js';
import {
  EPS32, REFERENCE_BACKENDS, decodeSteps, describeOn, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, seededUniform, values,
} from './helpers.js';

/** The attention op tests' cases, with the default ε and a large one, under which a missing or misplaced ε shows. */
const cases = fc.tuple(attentionCases, fc.constantFrom(1e-6, 0.3)).map(([c, epsilon]) => ({ ...c, epsilon }));
type Case = AttentionCase & { epsilon: number };

function run(c: Case, impl: Implementation, spread = 1) {
  const { s, qs, ks, vs, dOs } = inputs(c, spread);
  return tf.tidy(() => {
    const q = tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]);
    const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
    const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
    const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => attention(a as tf.Tensor4D, b as tf.Tensor4D, d as tf.Tensor4D,
      { causal: c.causal, scale: c.scale, epsilon: c.epsilon, implementation: impl });
    const o = f(q, k, v);
    const [dq, dk, dv] = tf.grads(f)([q, k, v], tf.tensor4d(dOs, [s.B, s.Tq, s.H, s.K]));
    return [o, dq!, dk!, dv!];
  });
}

/** The float64 oracle's o, dq, dk, dv, at the case's inputs or at perturbed q and k. */
function oracles(c: Case, spread = 1, perturbed?: { qs: ArrayLike<number>; ks: ArrayLike<number> }) {
  const { s, qs, ks, vs, dOs } = inputs(c, spread);
  const q = perturbed?.qs ?? qs;
  const k = perturbed?.ks ?? ks;
  const opts = { causal: c.causal, scale: c.scale, epsilon: c.epsilon };
  const grads = expressiveAttentionGradOracle(q, k, vs, dOs, s, opts);
  return [expressiveAttentionOracle(q, k, vs, s, opts).o, grads.dq, grads.dk, grads.dv];
}

/**
 * How much o, dq, dk, dv move when every score is rounded as float32 rounds a K-term dot
 * product. Unlike softmax, s² / (ε + Σ s²) is ill-conditioned where a row's scores are all
 * small next to the products they sum (a query nearly orthogonal to its few keys): float32
 * rounds s_ij by about √K ulps of c_ij = scale·Σ_a |q_ia·k_ja|, not of |s_ij|, and the weights
 * amplify that by up to c_ij·|s_ij| / (ε + Σ_l s_il²). Rather than bound it loosely, measure it:
 * the float64 oracle at q and k scaled elementwise by 1 ± K·ε₃₂ (random signs), which moves each
 * score by about √K·ε₃₂·c_ij, minus the oracle at the inputs themselves.
 */
function scoreRoundingResponse(c: Case, wants: Float64Array[], spread: number): number[] {
  const { qs, ks } = inputs(c, spread);
  const signs = seededUniform(c.seed + 4, qs.length + ks.length);
  const u = c.K * EPS32;
  const qp = Float64Array.from(qs, (x, i) => x * (1 + Math.sign(signs[i]!) * u));
  const kp = Float64Array.from(ks, (x, i) => x * (1 + Math.sign(signs[qs.length + i]!) * u));
  return oracles(c, spread, { qs: qp, ks: kp }).map((p, n) => maxAbsDiff(p, wants[n]!));
}

/**
 * What the backward's subtraction dP − D loses, D = dO·o. Both float32 implementations form it
 * (the kernels literally, tfjs's autodiff through ∂L/∂N and ∂L/∂Z), and where a row's weights add
 * up to nearly 1 (few keys, Σ s² ≫ ε) it cancels: a query with one key has dP − D = dO·v·ε/Z.
 * dP and D are K-term dot products, each off by about √K ulps of Σ_a |dO_a|·|v_a| (or |o_a|);
 * dS = 2·s·(dP − D)/Z carries that into dq = scale·Σ_j dS·k and dk = scale·Σ_i dS·q. The
 * problem itself is well-conditioned there (perturbing v or dO moves dP and D together), so no
 * perturbation of the inputs shows it: this is its first-order propagation, in float64.
 */
function subtractionRounding(c: Case, wants: Float64Array[], spread: number): number[] {
  const { s, qs, ks, vs, dOs } = inputs(c, spread);
  const o = wants[0]!;
  const dq = new Float64Array(qs.length);
  const dk = new Float64Array(ks.length);
  for (let b = 0; b < s.B; b++) {
    for (let h = 0; h < s.H; h++) {
      const g = Math.floor((h * s.Hkv) / s.H);
      for (let i = 0; i < s.Tq; i++) {
        const qo = ((b * s.Tq + i) * s.H + h) * s.K;
        const keys = [...Array(s.Tk).keys()].filter((j) => !c.causal || j <= i + s.Tk - s.Tq);
        const kvo = keys.map((j) => ((b * s.Tk + j) * s.Hkv + g) * s.K);
        const scores = kvo.map((ko) => {
          let dot = 0;
          for (let e = 0; e < s.K; e++) dot += qs[qo + e]! * ks[ko + e]!;
          return c.scale * dot;
        });
        const Z = c.epsilon + scores.reduce((a, x) => a + x * x, 0);
        let dOo = 0;
        for (let e = 0; e < s.K; e++) dOo += Math.abs(dOs[qo + e]! * o[qo + e]!);
        kvo.forEach((ko, n) => {
          let dOv = 0;
          for (let e = 0; e < s.K; e++) dOv += Math.abs(dOs[qo + e]! * vs[ko + e]!);
          const w = (c.scale * 2 * Math.abs(scores[n]!) * (dOv + dOo)) / Z;
          for (let e = 0; e < s.K; e++) {
            dq[qo + e] += w * Math.abs(ks[ko + e]!);
            dk[ko + e] += w * Math.abs(qs[qo + e]!);
          }
        });
      }
    }
  }
  const ulps = Math.sqrt(s.K) * EPS32;
  return [0, ulps * maxAbs(dq), ulps * maxAbs(dk), 0];
}

/** The two conditioning terms above, per output o, dq, dk, dv. */
function conditioningFloor(c: Case, wants: Float64Array[], spread = 1): number[] {
  const response = scoreRoundingResponse(c, wants, spread);
  const subtraction = subtractionRounding(c, wants, spread);
  return response.map((r, n) => r + subtraction[n]!);
}

/**
 * The float32 worst case of softmax attention's tests, every value a chain of sums over K, Tk
 * and Tq each adding at most n·ε₃₂ (γ_n) of the output's scale, plus a few times the
 * conditioning floor.
 */
function referenceBound(c: Case, want: Float64Array, floor: number): number {
  return 4 * (c.K + c.Tk + c.Tq) * EPS32 * Math.max(1, maxAbs(want)) + 4 * floor;
}

const NAMES = ['o', 'dq', 'dk', 'dv'];

/**
 * The recurrent step on its own: T tokens stepped from the zero state. K from 1 to 64, with
 * every residue mod 4 (vec4 and scalar lanes) and sizes that leave a state chunk partly filled;
 * query heads per kv head G from 1 to 12 (past the kernel's block of 8 query heads, with a
 * partial second block); the default and a random scale; the default ε and a large one.
 */
const stepCases = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  heads: fc.constantFrom([1, 1], [2, 2], [4, 2], [3, 1], [6, 2], [12, 1]),
  K: fc.constantFrom(1, 2, 3, 5, 7, 8, 12, 17, 32, 33, 64),
  T: fc.integer({ min: 1, max: 4 }),
  scale: fc.option(fc.double({ min: 0.05, max: 1, noNaN: true }), { nil: undefined }),
  epsilon: fc.constantFrom(1e-6, 0.3),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});
type StepCase = { B: number; heads: readonly number[]; K: number; T: number; scale?: number; epsilon: number; seed: number };

/** Sizes of a step case; the tokens' q `[T, B, H, K]`, k and v `[T, B, Hkv, K]`. */
function stepInputs(c: StepCase) {
  const [H, Hkv] = c.heads as [number, number];
  const { B, K, T } = c;
  const P = (K * (K + 1)) / 2;
  return {
    B, H, Hkv, K, T, P, scale: c.scale ?? 1 / Math.sqrt(K),
    qs: seededUniform(c.seed, T * B * H * K),
    ks: seededUniform(c.seed + 1, T * B * Hkv * K),
    vs: seededUniform(c.seed + 2, T * B * Hkv * K),
  };
}

/** Steps `implementation` through the case's tokens: every step's o `[T, B, H, K]`, then M and z after the last. */
function runSteps(c: StepCase, implementation: Implementation): tf.Tensor[] {
  const { B, H, Hkv, K, T, P, qs, ks, vs } = stepInputs(c);
  return tf.tidy(() => {
    let M = tf.zeros([B, Hkv, P, K]) as tf.Tensor4D;
    let z = tf.zeros([B, Hkv, P]) as tf.Tensor3D;
    const outs: tf.Tensor[] = [];
    for (let t = 0; t < T; t++) {
      const token = (xs: Float32Array, heads: number) => tf.tensor3d(xs.subarray(t * B * heads * K, (t + 1) * B * heads * K), [B, heads, K]);
      const [o, nextM, nextZ] = expressiveAttentionRecurrentStep(token(qs, H), token(ks, Hkv), token(vs, Hkv), M, z,
        { scale: c.scale, epsilon: c.epsilon, implementation });
      outs.push(o);
      [M, z] = [nextM, nextZ];
    }
    return [tf.stack(outs), M, z];
  });
}

/**
 * The float64 oracle of a step case: every step's o (the attention itself, Σ s²·v / (ε + Σ s²)
 * from the dot products, not through the state), and M, z after the last step, as `wants`
 * = `[o, M, z]`; and the pieces to compare, each o row (step, b, h) on its own and M and z
 * whole, with a floor in ulps of the piece's scale (`expectWithinDerivedTolerance`).
 *
 * The floors are the γ_n bound of the sums each value is, for any summation order, which the
 * kernel is as entitled to as the reference (whose error can be small by luck):
 * - M and z are sums over the t tokens of products of three (two) rounded factors,
 *   φ(k)_p = (k_a·k_b)·√2 times v_c: within (t + 3)·ε₃₂ of Σ_s |φ(k_s)_p·v_sc|.
 * - o = N / D with N_c = Σ_p φ(scale·q)_p·M'_pc and D = ε + Σ_p φ(scale·q)_p·z'_p, sums over P
 *   packed products of rounded features and rounded state: n = P + t + 8 roundings deep,
 *   relative to Σ_p Σ_s |φ(scale·q)_p·φ(k_s)_p·v_sc| = Σ_s c_s²·|v_sc| with
 *   c_s = scale·Σ_a |q_a·k_sa| (⟨|φ(x)|, |φ(y)|⟩ = (Σ_a |x_a·y_a|)²), not to Σ_s s_s²·|v_sc|:
 *   the packed sum cancels, so a query nearly orthogonal to every key is ill-conditioned (the
 *   layer test's κ). Through the division:
 *   |ΔN| / D + |o_c|·|ΔD| / D ≤ n·ε₃₂·(Σ_s c_s²·|v_sc| + |o_c|·Σ_s c_s²) / D.
 *   That bound is per row: one ill-conditioned row must not loosen the test of the others.
 */
function stepOracle(c: StepCase) {
  const { B, H, Hkv, K, T, P, scale, qs, ks, vs } = stepInputs(c);
  const G = H / Hkv;
  const o = new Float64Array(T * B * H * K);
  const pieces: Array<{ what: string; n: number; start: number; end: number; floorUlps: number }> = [];
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / G);
        const qo = ((t * B + b) * H + h) * K;
        let Z = c.epsilon;
        let C = 0;
        const num = new Float64Array(K);
        const numAbs = new Float64Array(K);
        for (let s = 0; s <= t; s++) {
          const ko = ((s * B + b) * Hkv + g) * K;
          let dot = 0;
          let abs = 0;
          for (let a = 0; a < K; a++) { dot += qs[qo + a]! * ks[ko + a]!; abs += Math.abs(qs[qo + a]! * ks[ko + a]!); }
          const [s2, c2] = [(scale * dot) ** 2, (scale * abs) ** 2];
          Z += s2;
          C += c2;
          for (let e = 0; e < K; e++) { num[e] += s2 * vs[ko + e]!; numAbs[e] += c2 * Math.abs(vs[ko + e]!); }
        }
        const D = Math.max(Z, 2 ** -60);
        let bound = 0;
        for (let e = 0; e < K; e++) {
          o[qo + e] = num[e]! / D;
          bound = Math.max(bound, ((P + t + 8) * (numAbs[e]! + Math.abs(o[qo + e]!) * C)) / D);
        }
        const floorUlps = bound / Math.max(1, maxAbs(o.subarray(qo, qo + K)));
        pieces.push({ what: `o, step ${t}, b ${b}, h ${h}`, n: 0, start: qo, end: qo + K, floorUlps });
      }
    }
  }
  const M = new Float64Array(B * Hkv * P * K);
  const z = new Float64Array(B * Hkv * P);
  const mAbs = new Float64Array(M.length);
  const zAbs = new Float64Array(z.length);
  for (let t = 0; t < T; t++) {
    for (let bh = 0; bh < B * Hkv; bh++) {
      const ko = (t * B * Hkv + bh) * K;
      const phi: number[] = [];
      for (let a = 0; a < K; a++) phi.push(ks[ko + a]! * ks[ko + a]!);
      for (let a = 0; a < K; a++) for (let d = a + 1; d < K; d++) phi.push(Math.SQRT2 * ks[ko + a]! * ks[ko + d]!);
      for (let p = 0; p < P; p++) {
        z[bh * P + p] += phi[p]!;
        zAbs[bh * P + p] += Math.abs(phi[p]!);
        for (let e = 0, i = (bh * P + p) * K; e < K; e++, i++) {
          const term = phi[p]! * vs[ko + e]!;
          M[i] += term;
          mAbs[i] += Math.abs(term);
        }
      }
    }
  }
  pieces.push({ what: 'M', n: 1, start: 0, end: M.length, floorUlps: ((T + 3) * maxAbs(mAbs)) / Math.max(1, maxAbs(M)) });
  pieces.push({ what: 'z', n: 2, start: 0, end: z.length, floorUlps: ((T + 2) * maxAbs(zAbs)) / Math.max(1, maxAbs(z)) });
  return { wants: [o, M, z], pieces };
}

for (const backend of REFERENCE_BACKENDS) describeOn(backend, 'expressiveAttention', () => {
  it('reference matches the float64 oracle, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const wants = oracles(c);
      const conditioning = conditioningFloor(c, wants);
      const got = run(c, 'reference');
      for (let n = 0; n < 4; n++) {
        expect(maxAbsDiff(await values(got[n]!), wants[n]!), NAMES[n]).toBeLessThanOrEqual(referenceBound(c, wants[n]!, conditioning[n]!));
      }
      tf.dispose(got);
    }), { numRuns: 12 });
  });

  it('φ packs x⊗x so that ⟨φ(q), φ(k)⟩ = (q·k)²', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.nat(), async (K, seed) => {
      const qs = seededUniform(seed, K);
      const ks = seededUniform(seed + 1, K);
      const got = tf.tidy(() => tf.sum(tf.mul(quadraticFeatures(tf.tensor1d(qs)), quadraticFeatures(tf.tensor1d(ks)))));
      const phi = tf.tidy(() => quadraticFeatures(tf.tensor2d(qs, [1, K])));
      expect(phi.shape).toEqual([1, (K * (K + 1)) / 2]);
      const dot = qs.reduce((a, x, i) => a + x * ks[i]!, 0);
      // a sum of K(K+1)/2 products, each within a few ulps of its exact value
      expect(Math.abs((await got.data())[0]! - dot * dot)).toBeLessThanOrEqual(4 * K * K * EPS32);
      tf.dispose([got, phi]);
    }), { numRuns: 8 });
  });

  it('recurrent step (reference) matches the float64 oracle within its γ_n bound, output and state', async () => {
    await fc.assert(fc.asyncProperty(stepCases, async (c) => {
      const { wants, pieces } = stepOracle(c);
      const got = runSteps(c, 'reference');
      const reference = await Promise.all(got.map(values));
      for (const { what, n, start, end, floorUlps } of pieces) {
        const want = wants[n]!.subarray(start, end);
        expect(maxAbsDiff(reference[n]!.subarray(start, end), want), what)
          .toBeLessThanOrEqual(floorUlps * EPS32 * Math.max(1, maxAbs(want)));
      }
      tf.dispose(got);
    }), { numRuns: 8 });
  });
});

describeOn('webgpu', 'expressiveAttention', () => {
  it('kernel matches the oracle at least as well as the reference, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const wants = oracles(c);
      const conditioning = conditioningFloor(c, wants);
      const kernel = run(c, 'webgpu');
      const reference = run(c, 'reference');
      for (let n = 0; n < 4; n++) {
        const [k, r] = [await values(kernel[n]!), await values(reference[n]!)];
        // the derived rule (helpers.ts): at most twice the reference's error plus a few ulps. Where
        // one ill-conditioned term dominates both errors, each is a single draw of its rounding,
        // and the reference's may happen to be small: one typical such rounding (the conditioning
        // floor) joins the ulps, as the ulps stand for one rounding of a well-conditioned output
        const kernelErr = maxAbsDiff(k, wants[n]!);
        const referenceErr = maxAbsDiff(r, wants[n]!);
        const floor = 4 * EPS32 * Math.max(1, maxAbs(wants[n]!)) + conditioning[n]!;
        expect(kernelErr, `${NAMES[n]}: kernel error ${kernelErr} vs reference error ${referenceErr}, conditioning ${conditioning[n]}`)
          .toBeLessThanOrEqual(2 * referenceErr + floor);
      }
      tf.dispose([kernel, reference]);
    }), { numRuns: 12 });
  });

  it('large logits (|s| up to 80) give no overflow and no NaN', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c0) => {
      // q, k in ±spread with scale 1: |s| = |q·k| reaches about spread²·K / 3 on average, 80 at the extremes
      const c = { ...c0, scale: 1 };
      const spread = Math.sqrt(80 / c.K) * 1.7;
      const wants = oracles(c, spread);
      const conditioning = conditioningFloor(c, wants, spread);
      const got = run(c, 'webgpu', spread);
      for (let n = 0; n < 4; n++) {
        const g = await values(got[n]!);
        expect(g.every(Number.isFinite), NAMES[n]).toBe(true);
        // no exponential: large scores only scale the squares, so the reference test's bound holds
        expect(maxAbsDiff(g, wants[n]!), NAMES[n]).toBeLessThanOrEqual(referenceBound(c, wants[n]!, conditioning[n]!));
      }
      tf.dispose(got);
    }), { numRuns: 8 });
  });

  const kernel = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, c: Case) =>
    attention(q, k, v, { causal: c.causal, scale: c.scale, epsilon: c.epsilon, implementation: 'webgpu' });
  itMatchesRepeatedHeads(cases.filter((c) => c.heads[0] !== c.heads[1]), inputs, kernel);
  itIgnoresKeysItCannotSee(cases, inputs, kernel);

  it('recurrent step kernel matches the oracle at least as well as the tfjs-ops step, output and state', async () => {
    await fc.assert(fc.asyncProperty(stepCases, async (c) => {
      const { wants, pieces } = stepOracle(c);
      // no leaks: of tensors, nor of the buffer of partial sums the kernel frees itself
      const before = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number };
      const kernelOut = runSteps(c, 'webgpu');
      const kernel = await Promise.all(kernelOut.map(values));
      tf.dispose(kernelOut);
      const after = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number };
      expect([after.numTensors, after.numBytesInGPU], 'tensors and GPU bytes after the steps').toEqual([before.numTensors, before.numBytesInGPU]);
      const referenceOut = runSteps(c, 'reference');
      const reference = await Promise.all(referenceOut.map(values));
      // the derived rule (helpers.ts): at most twice the tfjs-ops step's error against the oracle
      // plus the floor stepOracle derives, the γ_n bound of the sums that both are free to order
      // as they like (the kernel adds chunks of 64 rows, then the chunks; tfjs's matMul tiles)
      for (const { what, n, start, end, floorUlps } of pieces) {
        expectWithinDerivedTolerance(kernel[n]!.subarray(start, end), reference[n]!.subarray(start, end),
          wants[n]!.subarray(start, end), what, floorUlps);
      }
      tf.dispose(referenceOut);
    }), { numRuns: 12 });
  });

  it('recurrent step kernel at the largest head dimensions is within the float32 bound of the oracle', async () => {
    // the tfjs-ops step takes seconds a token at K = 256 on SwiftShader, so the kernel meets the
    // γ_n bound itself, the one the reference meets on cpu. K = 256 is the layer's limit (three
    // chunks of 65 vec4 columns a workgroup); K = 131 fills a workgroup with one chunk of 132
    // scalar columns, as every scalar K from 128 to 255 does
    for (const K of [131, 256]) {
      const c: StepCase = { B: 1, heads: [2, 1], K, T: 2, epsilon: 1e-6, seed: K };
      const { wants, pieces } = stepOracle(c);
      const got = runSteps(c, 'webgpu');
      const kernel = await Promise.all(got.map(values));
      for (const { what, n, start, end, floorUlps } of pieces) {
        const want = wants[n]!.subarray(start, end);
        expect(maxAbsDiff(kernel[n]!.subarray(start, end), want), `K = ${K}, ${what}`)
          .toBeLessThanOrEqual(floorUlps * EPS32 * Math.max(1, maxAbs(want)));
      }
      tf.dispose(got);
    }
  });

  itAttentionOpLeaksNothing(attention);
});

describe('expressiveAttention input checks', () => {
  let q: tf.Tensor4D;
  let kv: tf.Tensor4D;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    q = tf.zeros([1, 4, 6, 8]);
    kv = tf.zeros([1, 5, 3, 8]);
  });

  it('names the argument, the expectation and what it received', () => {
    const kv4 = tf.zeros([1, 5, 4, 8]) as tf.Tensor4D;
    expect(() => attention(q, kv4, kv4)).toThrow(/the query heads H = 6 must be a multiple of the key\/value heads Hkv = 4/);
    expect(attention(q, kv, kv).shape).toEqual([1, 4, 6, 8]);
    expect(() => attention(q, tf.zeros([1, 5, 3, 4]) as tf.Tensor4D, tf.zeros([1, 5, 3, 4]) as tf.Tensor4D))
      .toThrow(/arguments 'q' and 'k' must have the same head dimension K; received 8 and 4/);
    expect(() => attention(q, kv, kv, { epsilon: -1e-3 })).toThrow(/option 'epsilon' must be a finite number ≥ 0; received -0.001/);
    expect(() => attention(q, kv, kv, { epsilon: Infinity })).toThrow(/option 'epsilon' must be a finite number ≥ 0; received Infinity/);
    expect(() => attention(q, kv, kv, { causal: true, dropoutRate: 0.1 } as never))
      .toThrow(/unknown option 'dropoutRate'; the options are 'causal', 'window', 'kvLengths', 'queryOffsets', 'segmentIds', 'mask', 'dropout', 'seed', 'scale', 'epsilon', 'split', 'implementation'/);
    expect(() => attention(q, kv, kv, { scale: NaN })).toThrow(/option 'scale' must be a finite number; received NaN/);
    expect(() => attention(q, kv, kv, { causal: 1 as never })).toThrow(/option 'causal' must be a boolean; received 1/);
  });

  it('recurrent step: names the argument, the expectation and what it received', () => {
    tf.tidy(() => {
      const [qt, kt] = [tf.zeros([1, 6, 4]) as tf.Tensor3D, tf.zeros([1, 3, 4]) as tf.Tensor3D];
      const [M, z] = [tf.zeros([1, 3, 10, 4]) as tf.Tensor4D, tf.zeros([1, 3, 10]) as tf.Tensor3D];
      const step = expressiveAttentionRecurrentStep;
      expect(step(qt, kt, kt, M, z).map((t) => t.shape)).toEqual([[1, 6, 4], [1, 3, 10, 4], [1, 3, 10]]);
      expect(() => step(qt, kt, kt, tf.zeros([1, 3, 9, 4]) as tf.Tensor4D, z))
        .toThrow(/argument 'M' must have shape \[B, Hkv, P, K\] = \[1, 3, 10, 4\]; received \[1, 3, 9, 4\]/);
      expect(() => step(qt, tf.zeros([1, 4, 4]) as tf.Tensor3D, tf.zeros([1, 4, 4]) as tf.Tensor3D, M, z))
        .toThrow(/the query heads H = 6 must be a multiple of the key\/value heads Hkv = 4/);
      expect(() => step(qt, kt, tf.zeros([1, 3, 5]) as tf.Tensor3D, M, z)).toThrow(/argument 'v' must have shape \[B, Hkv, K\] = \[1, 3, 4\]/);
      expect(() => step(qt, kt, kt, M, z, { implementation: 'webgpu' })).toThrow(/implementation 'webgpu' needs the 'webgpu' backend/);
      expect(() => step(qt, kt, kt, M, z, { causal: true } as never)).toThrow(/unknown option 'causal'; the options are 'scale', 'epsilon', 'implementation'/);
    });
  });

  it('ε = 0: a row whose scores are all 0 outputs 0, with a finite gradient', async () => {
    const [o, dq] = tf.tidy(() => {
      const f = (a: tf.Tensor) => attention(a as tf.Tensor4D, kv, kv, { epsilon: 0 });
      return [f(q), tf.grad(f)(q)];
    });
    expect(maxAbs(await values(o!))).toBe(0);
    expect((await values(dq!)).every(Number.isFinite)).toBe(true);
    tf.dispose([o, dq]);
  });
});

/** `x [B, T, D]` through a built layer's projection `name`, in float64: `[B, T, units]`. */
async function project64(layer: tf.layers.Layer, x: Float32Array, rows: number, name: string): Promise<Float64Array> {
  const byName = new Map(layer.weights.map((w) => [w.originalName.split('/').pop()!, w]));
  const w = byName.get(name)!;
  const [D, units] = w.shape as [number, number];
  const W = await w.read().data();
  const bias = byName.has(`${name}Bias`) ? await byName.get(`${name}Bias`)!.read().data() : new Float32Array(units);
  const out = new Float64Array(rows * units);
  for (let r = 0; r < rows; r++) {
    for (let u = 0; u < units; u++) {
      let acc = bias[u]!;
      for (let d = 0; d < D; d++) acc += x[r * D + d]! * W[d * units + u]!;
      out[r * units + u] = acc;
    }
  }
  return out;
}

/**
 * Per token (b, t), how far two float32 evaluations of the layer may differ: the recurrent form
 * sums φ(q)·M and φ(q)·z over P = K(K+1)/2 packed products and M, z over the t tokens seen, the
 * parallel one sums s over K and s²·v over t; the projections sum over D. Each such sum is
 * within γ_n = n·ε₃₂ of its exact value relative to the sum of its terms' magnitudes, which is
 * c² = (scale·Σ_a |q_a·k_a|)² for a score squared, not s². So the numerator and denominator of a
 * row err by γ_n·(ε + Σ c²)·max|v|, and o = N/Z by twice that over Z: γ_n·2κ·max|v| with κ the
 * row's condition number. Wo sums H·K of those per output channel (‖Wo‖₁ = max_d Σ_c |Wo_cd|)
 * and rounds its own sum; both sides err, hence 2× the lot.
 */
async function decodeTolerance(layer: tf.layers.Layer, x: Float32Array, B: number, T: number, D: number, H: number, Hkv: number, K: number, epsilon: number) {
  const q = await project64(layer, x, B * T, 'query');
  const k = await project64(layer, x, B * T, 'key');
  const v = await project64(layer, x, B * T, 'value');
  const byName = new Map(layer.weights.map((w) => [w.originalName.split('/').pop()!, w]));
  const Wo = await byName.get('output')!.read().data();
  let woNorm = 0;
  for (let d = 0; d < D; d++) {
    let col = 0;
    for (let c = 0; c < H * K; c++) col += Math.abs(Wo[c * D + d]!);
    woNorm = Math.max(woNorm, col);
  }
  const scale = 1 / Math.sqrt(K);
  const P = (K * (K + 1)) / 2;
  const tol = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let vMax = 0;
    for (let t = 0; t < T; t++) {
      for (let e = 0; e < Hkv * K; e++) vMax = Math.max(vMax, Math.abs(v[(b * T + t) * Hkv * K + e]!));
      let kappa = 1;
      for (let h = 0; h < H; h++) {
        const g = Math.floor((h * Hkv) / H);
        let z = epsilon;
        let zAbs = epsilon;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          let abs = 0;
          for (let a = 0; a < K; a++) {
            const p = q[((b * T + t) * H + h) * K + a]! * k[((b * T + s) * Hkv + g) * K + a]!;
            dot += p;
            abs += Math.abs(p);
          }
          z += (scale * dot) ** 2;
          zAbs += (scale * abs) ** 2;
        }
        if (z > 0) kappa = Math.max(kappa, zAbs / z);
      }
      const n = P + K + t + D + 4;
      tol[b * T + t] = 2 * (2 * n * kappa + H * K + 1) * EPS32 * Math.max(1, vMax) * woNorm;
    }
  }
  return tol;
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'ExpressiveAttention layer', () => {
    itRoundTrips(() => expressiveAttention({ numHeads: 4, numKvHeads: 2, epsilon: 0.01, decode: 'recurrent' }),
      { numHeads: 4, numKvHeads: 2, headDim: null, useBias: true, implementation: 'auto', epsilon: 0.01, decode: 'recurrent' });
    if (backend === 'webgpu') itTrains(() => expressiveAttention({ numHeads: 2 }));

    const implementation: Implementation = backend === 'webgpu' ? 'webgpu' : 'reference';
    // on webgpu the recurrent step is the WGSL kernel, checked here also against the tfjs-ops
    // step; the kernel-backed cache and forward take about a second a run on SwiftShader, hence
    // fewer runs there
    it(`(${implementation}) recurrent decode equals the cached decode and the parallel forward`, async () => {
      await fc.assert(fc.asyncProperty(
        fc.record({ B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 10 }), heads: fc.constantFrom([2, 2], [4, 2], [4, 1]),
          K: fc.constantFrom(3, 4, 6, 8), epsilon: fc.constantFrom(1e-6, 0.3), seed: fc.nat() }),
        async (c) => {
          const [H, Hkv] = c.heads as [number, number];
          const D = 12;
          const make = (decodeMode: ExpressiveAttentionDecode, impl = implementation) =>
            expressiveAttention({ numHeads: H, numKvHeads: Hkv, headDim: c.K, epsilon: c.epsilon, decode: decodeMode, implementation: impl });
          const cached = make('cache');
          const recurrent = make('recurrent');
          // the tfjs-ops step on the same backend (the same layer as `recurrent` on cpu)
          const opsStep = make('recurrent', 'reference');
          const xs = seededUniform(c.seed, c.B * c.T * D);
          const x = tf.tensor3d(xs, [c.B, c.T, D]);
          const parallel = cached.apply(x) as tf.Tensor3D;
          for (const layer of [recurrent, opsStep]) {
            (layer.apply(x) as tf.Tensor).dispose();
            layer.setWeights(cached.getWeights());
          }
          const [yc, yr, yo] = [decodeSteps(cached, x), decodeSteps(recurrent, x), decodeSteps(opsStep, x)];
          // two float32 evaluations of the same token, each within half of it of the exact one
          const tol = await decodeTolerance(cached, xs, c.B, c.T, D, H, Hkv, c.K, c.epsilon);
          const [p, a, r, o] = [await values(parallel), await values(yc), await values(yr), await values(yo)];
          for (let bt = 0; bt < c.B * c.T; bt++) {
            const row = (y: Float64Array) => y.subarray(bt * D, (bt + 1) * D);
            expect(maxAbsDiff(row(r), row(p)), `recurrent vs parallel, token ${bt}`).toBeLessThanOrEqual(tol[bt]!);
            expect(maxAbsDiff(row(r), row(a)), `recurrent vs cached, token ${bt}`).toBeLessThanOrEqual(tol[bt]!);
            expect(maxAbsDiff(row(a), row(p)), `cached vs parallel, token ${bt}`).toBeLessThanOrEqual(tol[bt]!);
            expect(maxAbsDiff(row(r), row(o)), `recurrent vs the tfjs-ops recurrent step, token ${bt}`).toBeLessThanOrEqual(tol[bt]!);
          }
          tf.dispose([x, parallel, yc, yr, yo]);
          for (const layer of [cached, recurrent, opsStep]) layer.dispose();
        }), { numRuns: backend === 'webgpu' ? 4 : 8 });
    });

    for (const decode of ['cache', 'recurrent'] as const) {
      itLeaksNothing(`(decode '${decode}', grouped-query heads) `, () => expressiveAttention({ numHeads: 2, numKvHeads: 1, decode }) as never);
    }
  });
}

describe('ExpressiveAttention layer arguments', () => {
  beforeAll(async () => { await tf.setBackend('cpu'); });
  it('names the argument, the expectation and what it received', () => {
    expect(() => expressiveAttention({ numHeads: 4, numKvHeads: 3 })).toThrow(/numHeads = 4 must be a multiple of numKvHeads = 3/);
    expect(() => expressiveAttention({ numHeads: 2, epsilon: -1 })).toThrow(/ExpressiveAttention: option 'epsilon' must be a finite number ≥ 0; received -1/);
    expect(() => expressiveAttention({ numHeads: 2, decode: 'rnn' as never }))
      .toThrow(/ExpressiveAttention: option 'decode' must be one of 'cache', 'recurrent'; received 'rnn'/);
    const recurrent = expressiveAttention({ numHeads: 2, decode: 'recurrent' });
    expect(() => recurrent.initState(1)).toThrow(/not built yet/);
    recurrent.apply(tf.zeros([1, 2, 8]));
    const state = recurrent.initState(1);
    expect('M' in state && [state.M.shape, state.z.shape]).toEqual([[1, 2, 10, 4], [1, 2, 10]]);
    expect(() => recurrent.step(tf.zeros([1, 6]) as tf.Tensor2D, state))
      .toThrow(/step: argument 'x' must be a float32 tensor \[B, D\] = \[B, 8\]; received a float32 tensor of shape \[1, 6\]/);
    const cached = expressiveAttention({ numHeads: 2 });
    cached.apply(tf.zeros([1, 2, 8]));
    expect(() => cached.step(tf.zeros([1, 8]) as tf.Tensor2D, state))
      .toThrow(/decodes with decode = 'cache', but argument 'state' is a recurrent state; use the state from this layer's initState\(\)/);
    expect(() => recurrent.step(tf.zeros([1, 8]) as tf.Tensor2D, cached.initState(1))).toThrow(/decode = 'recurrent', but argument 'state' is a key\/value cache/);
  });
});
