import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Implementation } from '../src/validate.js';
import { expressiveAttentionRecurrentStep } from '../src/mixers/expressive-attention/op.js';
import { EXPRESSIVE_PREFILL_CHUNK_FLAG, expressiveAttention } from '../src/mixers/expressive-attention/layer.js';
import {
  EXPRESSIVE_ATTENTION_RECURRENT_PROMPT_READOUT, EXPRESSIVE_ATTENTION_RECURRENT_SUMS,
} from '../src/mixers/expressive-attention/kernel.js';
import {
  gamma, layerDecodeOracle, recurrentOracle, stateOracle, type AttentionWeights, type RecurrentCase,
} from './oracle/expressive-recurrent.js';
import {
  REFERENCE_BACKENDS, decodeSteps, describeOn, expectNoLeaks, launchedPipelines, mulberry32, seededUniform, stepLaunches, values, type TestBackend,
} from './helpers.js';
import type { ExpressiveAttentionRecurrentState } from '../src/mixers/expressive-attention/layer.js';

/**
 * ExpressiveAttention's recurrent decode against float64 (issue 14; docs/expressive-attention.md,
 * "Precision of the two decodes"). Its readout sums packed products φ(q)_p·φ(k_s)_p that cancel,
 * so a float32 step errs relative to Σ_s c_s² (c_s = scale·Σ_a |q_a·k_sa|) rather than to
 * Σ_s s_s²: condition number κ = Σ c² / Σ s², where the parallel forward, which squares a
 * computed score, has √κ. The bounds are derived in test/oracle/expressive-recurrent.ts.
 */

/**
 * A run of steps: q, k, v uniform in [−1, 1), and at the steps in `orthogonal` a query made
 * nearly orthogonal to every key so far (the Gram–Schmidt residue of a random vector against
 * them, plus `leak` times the first key): the rows whose κ is large, up to about 1/leak².
 */
function stepCase(seed: number, T: number, B: number, H: number, Hkv: number, K: number, epsilon: number,
  orthogonal: number[] = [], leak = 1e-3): RecurrentCase {
  const q = seededUniform(seed, T * B * H * K);
  const k = seededUniform(seed + 1, T * B * Hkv * K);
  const v = seededUniform(seed + 2, T * B * Hkv * K);
  for (const t of orthogonal) {
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor((h * Hkv) / H);
        const key = (s: number) => Array.from({ length: K }, (_, a) => k[((s * B + b) * Hkv + g) * K + a]!);
        const basis: number[][] = [];
        for (let s = 0; s <= t && basis.length < K - 1; s++) {
          const e = key(s);
          for (const u of basis) { const d = e.reduce((acc, x, a) => acc + x * u[a]!, 0); for (let a = 0; a < K; a++) e[a]! -= d * u[a]!; }
          const n = Math.hypot(...e);
          if (n > 1e-6) basis.push(e.map((x) => x / n));
        }
        const qo = ((t * B + b) * H + h) * K;
        const r = Array.from({ length: K }, (_, a) => q[qo + a]!);
        for (const u of basis) { const d = r.reduce((acc, x, a) => acc + x * u[a]!, 0); for (let a = 0; a < K; a++) r[a]! -= d * u[a]!; }
        const first = key(0);
        for (let a = 0; a < K; a++) q[qo + a] = r[a]! + leak * first[a]!;
      }
    }
  }
  return { T, B, H, Hkv, K, scale: 1 / Math.sqrt(K), epsilon, q, k, v };
}

/** Every step's o `[T, B, H, K]` from the zero state, through `implementation`. */
async function stepAll(c: RecurrentCase, implementation: Implementation): Promise<Float64Array> {
  const { T, B, H, Hkv, K } = c;
  const P = (K * (K + 1)) / 2;
  let M = tf.zeros([B, Hkv, P, K]) as tf.Tensor4D;
  let z = tf.zeros([B, Hkv, P]) as tf.Tensor3D;
  const out = new Float64Array(T * B * H * K);
  for (let t = 0; t < T; t++) {
    const token = (xs: ArrayLike<number>, heads: number) =>
      tf.tensor3d(Float32Array.from({ length: B * heads * K }, (_, i) => xs[t * B * heads * K + i]!), [B, heads, K]);
    const [q, k, v] = [token(c.q, H), token(c.k, Hkv), token(c.v, Hkv)];
    const [o, nextM, nextZ] = expressiveAttentionRecurrentStep(q, k, v, M, z, { scale: c.scale, epsilon: c.epsilon, implementation });
    out.set(await o.data(), t * B * H * K);
    tf.dispose([q, k, v, o, M, z]);
    [M, z] = [nextM, nextZ];
  }
  tf.dispose([M, z]);
  return out;
}

/** Checks a run's outputs against the oracle: within its bound, per element; returns the largest error / bound. */
function expectWithinBound(got: Float64Array, c: RecurrentCase, what: string): number {
  const { parallel, recurrent, bound } = recurrentOracle(c);
  const P = (c.K * (c.K + 1)) / 2;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const t = Math.floor(i / (c.B * c.H * c.K));
    const err = Math.abs(got[i]! - parallel[i]!);
    expect(err, `${what}: element ${i} (step ${t}), bound ${bound[i]}`).toBeLessThanOrEqual(bound[i]!);
    worst = Math.max(worst, err / bound[i]!);
    // the two float64 forms are the same function: they differ by float64's rounding of the
    // same sums, uncompensated (P + t + 16 roundings where float32's bound counts t + 16)
    const f64 = bound[i]! * (2 ** -53 / 2 ** -24) * ((P + t + 16) / (t + 16));
    expect(Math.abs(recurrent[i]! - parallel[i]!), `${what}: float64 forms, element ${i}`).toBeLessThanOrEqual(f64);
  }
  return worst;
}

const STEP_BACKENDS: Array<[TestBackend, Implementation]> = [['cpu', 'reference'], ['wasm', 'reference'], ['webgpu', 'webgpu']];

for (const [backend, implementation] of STEP_BACKENDS) {
  describeOn(backend, `ExpressiveAttention recurrent step (${implementation}) against float64`, () => {
    it('long runs: within the compensated bound, per element, the two float64 forms agreeing', async () => {
      // T up to 300 steps; MHA, GQA, MQA and G = 3; K with scalar and vec4 lanes; ε default and large
      const runs: Array<[number, number, number, number, number, number]> = [
        // seed, T, H, Hkv, K, ε
        [1, 300, 1, 1, 4, 1e-6],
        [2, 200, 4, 2, 8, 1e-6],
        [3, 120, 3, 1, 5, 0.3],
        [4, 60, 2, 2, 16, 1e-6],
      ];
      for (const [seed, T, H, Hkv, K, epsilon] of runs) {
        const c = stepCase(seed, T, 1, H, Hkv, K, epsilon);
        expectWithinBound(await stepAll(c, implementation), c, `seed ${seed}, T ${T}, K ${K}`);
      }
    });

    it('ill-conditioned rows (queries nearly orthogonal to every key so far): still within the bound', async () => {
      // κ up to ~10⁶ at the orthogonal steps (the first token's row among them), with K past a
      // state chunk of 64 rows (K = 12: P = 78) so that the kernel adds two chunks' sums
      for (const [seed, K, leak] of [[10, 8, 1e-3], [11, 12, 3e-3], [12, 16, 1e-3]] as const) {
        const c = stepCase(seed, 6, 2, 2, 1, K, 1e-6, [0, 1, 4], leak);
        const { kappa } = recurrentOracle(c);
        expect(Math.max(...kappa), 'the case reaches large κ').toBeGreaterThan(1e4);
        expectWithinBound(await stepAll(c, implementation), c, `seed ${seed}, K ${K}`);
      }
    });
  });
}

/** Random layer weights from a seed: dense `[in, units]` with entries of standard deviation 1/√in, biases 0.1. */
function seededWeights(layer: tf.layers.Layer, seed: number): void {
  const next = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  layer.setWeights(layer.weights.map((w) => {
    const shape = w.shape as number[];
    const std = shape.length === 2 ? 1 / Math.sqrt(shape[0]!) : 0.1;
    return tf.tensor(Float32Array.from({ length: tf.util.sizeFromShape(shape) }, () => std * normal()), shape);
  }));
}

/** The layer's weights by name, as float32 arrays. */
async function weightsOf(layer: tf.layers.Layer): Promise<AttentionWeights> {
  const byName = new Map(layer.weights.map((w) => [w.originalName.split('/').pop()!, w]));
  const get = async (name: string) => (byName.has(name) ? await byName.get(name)!.read().data() : null);
  return {
    query: (await get('query'))!, queryBias: await get('queryBias'),
    key: (await get('key'))!, keyBias: await get('keyBias'),
    value: (await get('value'))!, valueBias: await get('valueBias'),
    output: (await get('output'))!, outputBias: await get('outputBias'),
  };
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'ExpressiveAttention recurrent decode against apply', () => {
    const implementation: Implementation = backend === 'webgpu' ? 'webgpu' : 'reference';
    it(`(${implementation}) each within its derived bound of the float64 layer, so within their sum of each other`, async () => {
      // B 1..2, T up to a few hundred (fewer on SwiftShader, where a step is a few ms);
      // MHA, GQA, MQA; the default ε and a large one
      const runs: Array<[number, number, number, number, number, number, number]> = backend === 'webgpu'
        ? [[21, 2, 64, 2, 2, 8, 1e-6], [22, 1, 96, 4, 1, 4, 0.3]]
        : [[21, 2, 64, 2, 2, 8, 1e-6], [22, 1, 96, 4, 1, 4, 0.3], [23, 1, 300, 4, 2, 8, 1e-6], [24, 2, 40, 2, 1, 16, 1e-6]];
      for (const [seed, B, T, H, Hkv, K, epsilon] of runs) {
        const D = 16;
        const layer = expressiveAttention({ numHeads: H, numKvHeads: Hkv, headDim: K, epsilon, decode: 'recurrent', implementation });
        const xs = seededUniform(seed, B * T * D);
        const x = tf.tensor3d(xs, [B, T, D]);
        (layer.apply(x) as tf.Tensor).dispose();
        seededWeights(layer, seed);
        const parallel = layer.apply(x) as tf.Tensor3D;
        const decoded = decodeSteps(layer, x);
        const [p, r] = [await values(parallel), await values(decoded)];
        const { y, boundRecurrent, boundParallel } = layerDecodeOracle(xs, B, T, D, H, Hkv, K, epsilon, await weightsOf(layer));
        for (let i = 0; i < y.length; i++) {
          const at = `seed ${seed}, token ${Math.floor(i / D)}, channel ${i % D}`;
          expect(Math.abs(r[i]! - y[i]!), `recurrent decode, ${at}`).toBeLessThanOrEqual(boundRecurrent[i]!);
          expect(Math.abs(p[i]! - y[i]!), `apply, ${at}`).toBeLessThanOrEqual(boundParallel[i]!);
          expect(Math.abs(r[i]! - p[i]!), `decode vs apply, ${at}`).toBeLessThanOrEqual(boundRecurrent[i]! + boundParallel[i]!);
        }
        tf.dispose([x, parallel, decoded]);
        layer.dispose();
      }
    });
  });
}

/**
 * Prefill (issue 14's contract): a prompt run in parallel gives, at its real tokens, what
 * stepping them one by one gives, and the same state; rows of different lengths (0 and T
 * among them) continue from their own positions.
 */
const PREFILL = { H: 4, Hkv: 2, K: 4, D: 12, epsilon: 1e-6 };

/** A built recurrent layer with seeded weights. */
function prefillLayer(implementation: Implementation, seed: number) {
  const { H, Hkv, K, D, epsilon } = PREFILL;
  const layer = expressiveAttention({ numHeads: H, numKvHeads: Hkv, headDim: K, epsilon, decode: 'recurrent', implementation });
  layer.apply(tf.zeros([1, 1, D]));
  seededWeights(layer, seed);
  return layer;
}

/** Row b's first n tokens of x `[B, T, D]` (float32 values). */
function rowTokens(xs: Float32Array, T: number, D: number, b: number, n: number): Float32Array {
  return xs.slice(b * T * D, (b * T + n) * D);
}

// on webgpu, prompts taken whole (the default at these lengths) and in chunks of 4 tokens
const prefillRuns = [...REFERENCE_BACKENDS.map((backend) => ({ backend, chunk: null })),
  { backend: 'webgpu', chunk: 'auto' }, { backend: 'webgpu', chunk: 4 }] as const;
for (const { backend, chunk } of prefillRuns) {
  describeOn(backend, `ExpressiveAttention recurrent prefill${chunk === null ? '' : ` (chunk: ${chunk})`}`, () => {
    const implementation: Implementation = backend === 'webgpu' ? 'webgpu' : 'reference';
    if (chunk !== null) {
      beforeAll(() => { tf.env().set(EXPRESSIVE_PREFILL_CHUNK_FLAG, chunk); });
      afterAll(() => { tf.env().set(EXPRESSIVE_PREFILL_CHUNK_FLAG, 'auto'); });
    }

    it(`(${implementation}) equals stepping each row alone: ragged lengths, with and without a state, and a step after`, async () => {
      const { H, Hkv, K, D, epsilon } = PREFILL;
      const P = (K * (K + 1)) / 2;
      const layer = prefillLayer(implementation, 31);
      const w = await weightsOf(layer);
      // a first prompt from the empty state (lengths 5, 6, 0 of T = 6), a second one continuing it
      // (lengths 5, 0, 3 of T = 5: all of it, none, part), then one step; in chunks of 4 both
      // prompts read states that part of their rows' tokens made
      const B = 3;
      const [T1, T2] = [6, 5];
      const [len1, len2] = [[5, 6, 0], [5, 0, 3]];
      const [x1s, x2s, x3s] = [seededUniform(32, B * T1 * D), seededUniform(33, B * T2 * D), seededUniform(34, B * D)];
      const x1 = tf.tensor3d(x1s, [B, T1, D]);
      const x2 = tf.tensor3d(x2s, [B, T2, D]);
      const x3 = tf.tensor2d(x3s, [B, D]);
      const [y1, s1] = layer.prefill(x1, undefined, { lengths: len1 }) as [tf.Tensor3D, ExpressiveAttentionRecurrentState];
      // lengths as numbers, then as a tensor (not read back: the ops see them)
      const len2Tensor = tf.tensor1d(len2, 'int32');
      const [y2, s2] = layer.prefill(x2, s1, { lengths: len2Tensor }) as [tf.Tensor3D, ExpressiveAttentionRecurrentState];
      const [y3, s3] = layer.step(x3, s2) as [tf.Tensor2D, ExpressiveAttentionRecurrentState];
      const got = {
        y1: await values(y1), y2: await values(y2), y3: await values(y3), M: await values(s2.M), z: await values(s2.z),
        // s1 read after the second prefill and the step: they leave their input state intact
        positions: [Array.from(await s1.positions.data()), Array.from(await s2.positions.data()), Array.from(await s3.positions.data())],
      };
      expect(got.positions).toEqual([len1, [10, 6, 3], [11, 7, 4]]);
      // padded positions: unspecified but finite
      expect([...got.y1, ...got.y2].every(Number.isFinite)).toBe(true);
      for (let b = 0; b < B; b++) {
        const seq = new Float32Array([...rowTokens(x1s, T1, D, b, len1[b]!), ...rowTokens(x2s, T2, D, b, len2[b]!), ...x3s.slice(b * D, (b + 1) * D)]);
        const n = seq.length / D;
        const stepped = decodeSteps(layer, tf.tensor3d(seq, [1, n, D]));
        const want = await values(stepped);
        stepped.dispose();
        // the stepping side within the step's bound, the prefill side within the parallel forward's
        // plus the state readout's, a matMul over the P rows (uncompensated) and a few roundings
        // more for combining the two (P + t + 24 roundings)
        const tight = layerDecodeOracle(seq, 1, n, D, H, Hkv, K, epsilon, w);
        const wide = layerDecodeOracle(seq, 1, n, D, H, Hkv, K, epsilon, w, (t) => P + t + 24);
        const check = (gotRow: ArrayLike<number>, t: number, what: string) => {
          for (let d = 0; d < D; d++) {
            const i = t * D + d;
            const tol = tight.boundRecurrent[i]! + wide.boundRecurrent[i]! + tight.boundParallel[i]!;
            expect(Math.abs(gotRow[d]! - want[i]!), `row ${b}, ${what}, token ${t}, channel ${d}`).toBeLessThanOrEqual(tol);
          }
        };
        for (let t = 0; t < len1[b]!; t++) check(got.y1.subarray((b * T1 + t) * D, (b * T1 + t + 1) * D), t, 'first prefill');
        for (let t = 0; t < len2[b]!; t++) check(got.y2.subarray((b * T2 + t) * D, (b * T2 + t + 1) * D), len1[b]! + t, 'second prefill');
        check(got.y3.subarray(b * D, (b + 1) * D), n - 1, 'the step after');
        // the state after both prompts against stepping's: both within the state's bound of float64
        const real = seq.subarray(0, (n - 1) * D);
        const oracle = stateOracle(real, n - 1, D, Hkv, K, w);
        let state = layer.initState(1) as ExpressiveAttentionRecurrentState;
        for (let t = 0; t < n - 1; t++) {
          const [y, next] = layer.step(tf.tensor2d(real.subarray(t * D, (t + 1) * D), [1, D]), state) as [tf.Tensor2D, ExpressiveAttentionRecurrentState];
          tf.dispose([y, state]);
          state = next;
        }
        const [Ms, zs] = [await values(state.M), await values(state.z)];
        tf.dispose(state);
        const [mSize, zSize] = [Hkv * P * K, Hkv * P];
        if (implementation === 'webgpu') {
          // the prefill's kernel adds the tokens in order with the step's operations: stepping's state, to the bit
          expect(Array.from(got.M.subarray(b * mSize, (b + 1) * mSize)), `row ${b}, M`).toEqual(Array.from(Ms));
          expect(Array.from(got.z.subarray(b * zSize, (b + 1) * zSize)), `row ${b}, z`).toEqual(Array.from(zs));
        }
        for (let i = 0; i < mSize; i++) {
          expect(Math.abs(got.M[b * mSize + i]! - Ms[i]!), `row ${b}, M[${i}]`).toBeLessThanOrEqual(2 * oracle.boundM[i]!);
        }
        for (let i = 0; i < zSize; i++) {
          expect(Math.abs(got.z[b * zSize + i]! - zs[i]!), `row ${b}, z[${i}]`).toBeLessThanOrEqual(2 * oracle.boundZ[i]!);
        }
      }
      tf.dispose([x1, x2, x3, len2Tensor, y1, s1, y2, s2, y3, s3]);
      layer.dispose();
    });

    it(`(${implementation}) a NaN in the padding reaches no real output and not the state`, async () => {
      const { D } = PREFILL;
      const layer = prefillLayer(implementation, 41);
      const B = 2;
      const T = 6;
      const lengths = [2, 6];
      const clean = seededUniform(42, B * T * D);
      const dirty = clean.slice();
      for (let i = 2 * D; i < T * D; i++) dirty[i] = i % 2 ? NaN : Infinity; // row 0's padded tokens
      const start = layer.initState(B) as ExpressiveAttentionRecurrentState;
      const [s0y, s0] = layer.prefill(tf.tensor3d(seededUniform(43, B * 2 * D), [B, 2, D]), start) as [tf.Tensor3D, ExpressiveAttentionRecurrentState];
      const run = async (xs: Float32Array) => {
        const x = tf.tensor3d(xs, [B, T, D]);
        const [y, s] = layer.prefill(x, s0, { lengths }) as [tf.Tensor3D, ExpressiveAttentionRecurrentState];
        const out = { y: await values(y), M: await values(s.M), z: await values(s.z) };
        tf.dispose([x, y, s]);
        return out;
      };
      const [a, b] = [await run(clean), await run(dirty)];
      // the padding is selected away before anything reads it: the same numbers, bit for bit
      expect(Array.from(b.y.subarray(0, 2 * D))).toEqual(Array.from(a.y.subarray(0, 2 * D)));
      expect(Array.from(b.y.subarray(T * D))).toEqual(Array.from(a.y.subarray(T * D)));
      expect(Array.from(b.M)).toEqual(Array.from(a.M));
      expect(Array.from(b.z)).toEqual(Array.from(a.z));
      tf.dispose([start, s0y, s0]);
      layer.dispose();
    });

    it(`(${implementation}) prefill and step leak no tensors, and an empty prompt copies the state`, async () => {
      const { D } = PREFILL;
      const layer = prefillLayer(implementation, 51);
      const x = tf.randomNormal([2, 6, D]) as tf.Tensor3D;
      const token = tf.randomNormal([2, D]) as tf.Tensor2D;
      const empty = tf.zeros([2, 0, D]) as tf.Tensor3D;
      await expectNoLeaks(async () => {
        const [y1, s1] = layer.prefill(x, undefined, { lengths: [3, 1] });
        const [y2, s2] = layer.prefill(x, s1);
        const [y3, s3] = layer.step(token, s2);
        const [y4, s4] = layer.prefill(empty, s3);
        expect(y4.shape).toEqual([2, 0, D]);
        expect(await s4.positions.array()).toEqual([10, 8]);
        await y3.data();
        tf.dispose([y1, s1, y2, s2, y3, s3, y4, s4]);
      });
      tf.dispose([x, token, empty]);
      layer.dispose();
    });
  });
}

describeOn('cpu', 'ExpressiveAttention recurrent prefill input checks', () => {
  it('names the method, the argument, the expectation and what it received', () => {
    const layer = prefillLayer('reference', 61);
    const cached = expressiveAttention({ numHeads: 4, numKvHeads: 2, headDim: 4 });
    cached.apply(tf.zeros([1, 1, 12]));
    const x = tf.zeros([2, 3, 12]) as tf.Tensor3D;
    const state = layer.initState(2);
    expect(() => layer.prefill(x, undefined, { lengths: [4, 1] }))
      .toThrow(/^ExpressiveAttention.prefill: option 'lengths' must hold 2 integers \(one per row of x\) from 0 to T = 3; received/);
    expect(() => layer.prefill(tf.zeros([2, 3, 5]) as tf.Tensor3D))
      .toThrow(/^ExpressiveAttention.prefill: argument 'x' must have shape \[B, T, D\] = \[2, 3, 12\]; received \[2, 3, 5\]/);
    expect(() => layer.prefill(tf.zeros([3, 3, 12]) as tf.Tensor3D, state))
      .toThrow(/^ExpressiveAttention.prefill: argument 'state.M' must have shape \[B, Hkv, P, K\] = \[3, 2, 10, 4\]; received \[2, 2, 10, 4\]/);
    expect(() => layer.prefill(x, { ...(state as ExpressiveAttentionRecurrentState), positions: tf.zeros([2]) as tf.Tensor1D }))
      .toThrow(/^ExpressiveAttention.prefill: argument 'state.positions' must be an int32 tensor of shape \[2\]/);
    expect(() => layer.prefill(x, cached.initState(2)))
      .toThrow(/^ExpressiveAttention.prefill: this layer decodes with decode = 'recurrent', but argument 'state' is a key\/value cache/);
    expect(() => cached.prefill(x, state))
      .toThrow(/^ExpressiveAttention.prefill: this layer decodes with decode = 'cache', but argument 'state' is a recurrent state/);
    expect(() => layer.initState(2, { capacity: 8 }))
      .toThrow(/^ExpressiveAttention.initState: option 'capacity' needs decode: 'cache'.*received capacity = 8 with decode: 'recurrent'/);
    tf.dispose([x, state]);
    layer.dispose();
    cached.dispose();
  });
});

/** φ(x) in float64: x_a² for a < K, then √2·x_a·x_b for a < b, row-major (features.wgsl). */
function phi64(x: ArrayLike<number>, at: number, K: number, scale = 1): number[] {
  const f: number[] = [];
  for (let a = 0; a < K; a++) f.push((scale * x[at + a]!) ** 2);
  for (let a = 0; a < K; a++) for (let b = a + 1; b < K; b++) f.push(Math.SQRT2 * scale * x[at + a]! * scale * x[at + b]!);
  return f;
}

describeOn('webgpu', 'ExpressiveAttention recurrent prefill kernels against float64', () => {
  const u = 2 ** -24;
  for (const K of [1, 2, 3, 5, 8, 16, 17, 33]) {
    it(`K = ${K}: the states along the prompt, in chunks and whole, within their rounding bounds`, async () => {
      const [B, T, Hkv] = [2, 9, 2];
      const P = (K * (K + 1)) / 2;
      const lengths = [9, 6];
      const [k, v] = [seededUniform(K + 1, B * T * Hkv * K), seededUniform(K + 2, B * T * Hkv * K)];
      const [M, z] = [seededUniform(K + 3, B * Hkv * P * K), seededUniform(K + 4, B * Hkv * P)];
      const [tk, tv] = [tf.tensor4d(k, [B, T, Hkv, K]), tf.tensor4d(v, [B, T, Hkv, K])];
      const [tM, tz, tLengths] = [tf.tensor4d(M, [B, Hkv, P, K]), tf.tensor3d(z, [B, Hkv, P]), tf.tensor1d(lengths, 'int32')];
      // chunks of 4: the states after 0, 4, 8 tokens and the prompt (E = ⌈9/4⌉ + 1); chunk 0: after the prompt
      const misses: string[] = [];
      for (const [chunk, E] of [[4, 4], [0, 1]] as const) {
        const [gotMs, gotZs] = tf.engine().runKernel(EXPRESSIVE_ATTENTION_RECURRENT_SUMS, { k: tk, v: tv, lengths: tLengths, M: tM, z: tz }, { chunk }) as tf.Tensor[];
        expect([gotMs!.shape, gotZs!.shape]).toEqual([[B * Hkv, E, P, K], [B * Hkv, E, P]]);
        const [ms, zs] = [await values(gotMs!), await values(gotZs!)];
        tf.dispose([gotMs!, gotZs!]);
        for (let b = 0; b < B; b++) {
          for (let hk = 0; hk < Hkv; hk++) {
            const feats = Array.from({ length: lengths[b]! }, (_, t) => phi64(k, ((b * T + t) * Hkv + hk) * K, K));
            for (let j = 0; j < E; j++) {
              // entry j adds the first n real tokens to the state: a float32 sum of n + 1 terms (the
              // state's and each token's φ(k)·v, φ off by 3 roundings): (n + 4)·u of the sum of magnitudes
              const n = chunk === 0 ? lengths[b]! : Math.min(j * chunk, lengths[b]!);
              for (let p = 0; p < P; p++) {
                const row = (b * Hkv + hk) * P + p;
                const at = ((b * Hkv + hk) * E + j) * P + p;
                let [want, size] = [z[row]!, Math.abs(z[row]!)];
                feats.slice(0, n).forEach((f) => { want += f[p]!; size += Math.abs(f[p]!); });
                if (Math.abs(zs[at]! - want) > (n + 4) * u * size) misses.push(`chunk ${chunk}, entry ${j}, z row ${row}`);
                for (let c = 0; c < K; c++) {
                  let [wantM, sizeM] = [M[row * K + c]!, Math.abs(M[row * K + c]!)];
                  feats.slice(0, n).forEach((f, t) => {
                    const term = f[p]! * v[((b * T + t) * Hkv + hk) * K + c]!;
                    wantM += term;
                    sizeM += Math.abs(term);
                  });
                  if (Math.abs(ms[at * K + c]! - wantM) > (n + 4) * u * sizeM) misses.push(`chunk ${chunk}, entry ${j}, M row ${row}, channel ${c}`);
                }
              }
            }
          }
        }
      }
      expect(misses, 'entries outside their bound').toEqual([]);
      tf.dispose([tk, tv, tM, tz, tLengths]);
    });

    it(`K = ${K}: each query's output from its chunk's attention and the state entering the chunk, within its rounding bound`, async () => {
      // T = 9 in chunks of 4 (the last block of four tokens runs past T), E = 3 states per kv head
      const [B, T, H, Hkv, C, E] = [2, 9, 4, 2, 4, 3];
      const P = (K * (K + 1)) / 2;
      const scale = 1 / Math.sqrt(K);
      const floor = 1e-6;
      const q = seededUniform(K, B * T * H * K);
      const M = seededUniform(K + 5, B * Hkv * E * P * K);
      // z as a state's: the features of a few keys summed, so φ(scale·q)·z = Σ (scale·q·k)² > 0
      const keys = seededUniform(K + 6, B * Hkv * E * 3 * K);
      const z = new Float32Array(B * Hkv * E * P);
      for (let e = 0; e < B * Hkv * E; e++) {
        for (let s = 0; s < 3; s++) phi64(keys, (e * 3 + s) * K, K).forEach((f, p) => { z[e * P + p]! += f; });
      }
      const own = seededUniform(K + 7, B * T * H * K);
      const denominators = seededUniform(K + 8, B * H * T, 0.5, 2);
      const [got] = tf.engine().runKernel(EXPRESSIVE_ATTENTION_RECURRENT_PROMPT_READOUT, {
        q: tf.tensor4d(q, [B, T, H, K]), M: tf.tensor4d(M, [B * Hkv, E, P, K]), z: tf.tensor3d(z, [B * Hkv, E, P]),
        o: tf.tensor4d(own, [B, T, H, K]), denominators: tf.tensor3d(denominators, [B, H, T]),
      }, { scale, chunk: C, floor }) as tf.Tensor[];
      const out = await values(got!);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          for (let h = 0; h < H; h++) {
            const query = (b * T + t) * H + h;
            const entry = (b * Hkv + Math.floor((h * Hkv) / H)) * E + Math.floor(t / C);
            const f = phi64(q, query * K, K, scale);
            // N₀ and S₀ as the step's readout: φ(scale·q) off by five roundings and each product by
            // one, summed compensated: γ₈ of the sum of magnitudes
            let [S, sizeS] = [0, 0];
            f.forEach((x, p) => { S += x * z[entry * P + p]!; sizeS += Math.abs(x * z[entry * P + p]!); });
            const S0 = Math.max(S, 0);
            const dS = gamma(8) * sizeS;
            const d = Math.max(S0 + denominators[(b * H + h) * T + t]!, floor);
            for (let c = 0; c < K; c++) {
              let [N, sizeN] = [0, 0];
              f.forEach((x, p) => { const term = x * M[(entry * P + p) * K + c]!; N += term; sizeN += Math.abs(term); });
              const op = own[query * K + c]!;
              const num = N - S0 * op;
              const want = op + num / d;
              // then S₀·o_p, the difference and S₀ + d round once each, the quotient and the sum
              // once more: first order in the sums' errors, the denominator bounded below by d − Δd
              const dNum = gamma(8) * sizeN + Math.abs(op) * dS + gamma(2) * (Math.abs(N) + Math.abs(S0 * op));
              const dDen = dS + gamma(1) * d;
              const bound = (dNum + Math.abs(num / d) * dDen) / (d - dDen) + gamma(2) * (Math.abs(num / d) + Math.abs(want));
              expect(Math.abs(out[query * K + c]! - want), `token ${t}, head ${h}, row ${b}, channel ${c}`).toBeLessThanOrEqual(bound);
            }
          }
        }
      }
      tf.dispose(got!);
    });
  }
});

describeOn('webgpu', 'ExpressiveAttention recurrent step launches', () => {
  it('decodes a token in five launches, uploading nothing: q|k|v, the step\'s two, the positions, the output', async () => {
    const layer = prefillLayer('webgpu', 71);
    expect(await stepLaunches(layer, 2, PREFILL.D)).toEqual({
      ran: ['DenseGroups', 'ExpressiveAttentionRecurrentStepK4G2', 'ExpressiveAttentionRecurrentReadout', 'AdvancePositions', 'DenseVec4'],
      positions: [1, 1], uploads: 0,
    });
    layer.dispose();
  });

  it('a prefill forms its states in one launch and its outputs in one attention pass and one readout, with no tfjs features', async () => {
    const layer = prefillLayer('webgpu', 72);
    const x = tf.tensor3d(seededUniform(73, 2 * 5 * PREFILL.D), [2, 5, PREFILL.D]);
    const prefill = (state?: ExpressiveAttentionRecurrentState) => launchedPipelines(async () => {
      const [y, next] = layer.prefill(x, state, { lengths: [5, 3] });
      await y.data();
      tf.dispose([y, next]);
    });
    const [, given] = layer.prefill(x, undefined, { lengths: [5, 3] }) as [tf.Tensor3D, ExpressiveAttentionRecurrentState];
    await prefill(given);
    // after the padding's zeros and q|k|v: the prompt taken whole (5 tokens, the default), from the
    // empty state the state and the attention, then the output projection and the positions' add
    const whole = ['ExpressiveAttentionRecurrentSumsK4', 'ExpressiveAttentionSplitK4'];
    const tail = ['DenseVec4', 'BinaryOpProgram'];
    expect(await prefill()).toEqual(['FillPadding', 'DenseGroups', ...whole, ...tail]);
    // continuing a state: its readout adds the state's share to the attention's outputs, which
    // return their denominators beside them
    const readout = 'ExpressiveAttentionRecurrentPromptReadoutK4';
    expect(await prefill(given)).toEqual(['FillPadding', 'DenseGroups', ...whole, readout, ...tail]);
    // in chunks of 4: the states entering each chunk with the one after the prompt, which two slices
    // take out, and the attention within each chunk (segment ids: packed, then their order)
    tf.env().set(EXPRESSIVE_PREFILL_CHUNK_FLAG, 4);
    try {
      const chunked = ['ExpressiveAttentionRecurrentSumsK4', 'SliceProgram', 'SliceProgram', 'PackInts', 'SegmentOrder',
        'ExpressiveAttentionSplitK4', readout];
      expect(await prefill()).toEqual(['FillPadding', 'DenseGroups', ...chunked, ...tail]);
      expect(await prefill(given)).toEqual(['FillPadding', 'DenseGroups', ...chunked, ...tail]);
    } finally {
      tf.env().set(EXPRESSIVE_PREFILL_CHUNK_FLAG, 'auto');
    }
    // rows all whole: no padding to zero
    const full = await launchedPipelines(async () => {
      const [y, next] = layer.prefill(x, undefined, { lengths: [5, 5] });
      await y.data();
      tf.dispose([y, next]);
    });
    expect(full).toEqual(['DenseGroups', ...whole, ...tail]);
    // a chunk the readout cannot take is named
    for (const bad of [6, 0, '4']) {
      tf.env().set(EXPRESSIVE_PREFILL_CHUNK_FLAG, bad as number);
      try {
        expect(() => layer.prefill(x)).toThrow(/flag MIXERS_EXPRESSIVE_PREFILL_CHUNK must be 'auto' or a number of tokens that is a positive multiple of 4; received/);
      } finally {
        tf.env().set(EXPRESSIVE_PREFILL_CHUNK_FLAG, 'auto');
      }
    }
    tf.dispose([x, given]);
    layer.dispose();
  });
});
