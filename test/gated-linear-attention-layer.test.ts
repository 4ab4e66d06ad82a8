// The GatedLinearAttention layer (MIXERS.md §10): the forward against a float64 block written from
// the equations (the op's float64 oracle inside), step-by-step decode and ragged prefill against
// the forward, serialisation, training, leaks and argument errors.
import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import { GatedLinearAttention, gatedLinearAttention, type GatedLinearAttentionArgs } from '../src/mixers/gated-linear-attention/layer.js';
import { gatedLinearAttentionMagnitudes, gatedLinearAttentionOracle } from './oracle/gated-linear-attention.js';
import { builtFor, itIsCausal, itLeaksNothing, itRoundTrips, itTrains, matMul64, weightsOf } from './layer-properties.js';
import {
  EPS32, REFERENCE_BACKENDS, decodeSteps, describeOn, underScan, expectWithinDerivedTolerance, launchedPipelines, maxAbs, maxAbsDiff, seededUniform, stepLaunches, values,
} from './helpers.js';

const logSigmoid = (z: number) => -(Math.max(-z, 0) + Math.log1p(Math.exp(-Math.abs(z))));

/** The layer's weights, and q, k, g `[B, T, H, K]`, v `[B, T, H, V]` of x in float64. */
async function projections64(layer: GatedLinearAttention, xs: Float32Array, B: number, T: number, D: number) {
  const w = await weightsOf(layer);
  const H = layer.numHeads;
  const HK = w.get('query')!.length / D;
  const HV = w.get('value')!.length / D;
  const r = layer.gateLowRankDim;
  const rows = B * T;
  const up = matMul64(matMul64(xs, w.get('forgetDown')!, rows, D, r), w.get('forgetUp')!, rows, r, HK);
  const bias = w.get('forgetUpBias')!;
  return {
    w,
    q: matMul64(xs, w.get('query')!, rows, D, HK),
    k: matMul64(xs, w.get('key')!, rows, D, HK),
    v: matMul64(xs, w.get('value')!, rows, D, HV),
    g: up.map((z, n) => logSigmoid(z + bias[n % HK]!) / 16),
    dims: { B, T, H, K: HK / H, V: HV / H },
  };
}

/**
 * fla's GatedLinearAttention block (MIXERS.md §10) in float64 from the layer's float32 weights:
 * the output `[B, T, D]`, and what its tolerance needs: `outAbs`, the largest output computed with
 * every term's absolute value after the norm (the scale of the output projection's rounding),
 * and `kappa`, the largest ratio over (b, t, h) of the float32 error scale of o (its magnitudes,
 * Σ|terms|) to the RMS that the norm divides by: how much the norm can enlarge o's rounding.
 */
async function layerOracle(layer: GatedLinearAttention, xs: Float32Array, B: number, T: number, D: number) {
  const { w, q, k, v, g, dims } = await projections64(layer, xs, B, T, D);
  const { H, V } = dims;
  const HV = H * V;
  const rows = B * T;
  const { out: o } = gatedLinearAttentionOracle({ q, k, v, g }, dims);
  const mags = gatedLinearAttentionMagnitudes({ q, k, v, g }, dims, new Float64Array(rows * HV)).out;
  const gate = matMul64(xs, w.get('outputGate')!, rows, D, HV);
  const norm = w.get('norm')!;
  const y = new Float64Array(rows * HV);
  let kappa = 0;
  for (let row = 0; row < rows * H; row++) {
    let sq = 0;
    let magSq = 0;
    for (let j = 0; j < V; j++) {
      sq += o[row * V + j]! ** 2;
      magSq += mags[row * V + j]! ** 2;
    }
    const rms = Math.sqrt(sq / V + 1e-5);
    kappa = Math.max(kappa, Math.sqrt(magSq / V) / rms);
    for (let j = 0; j < V; j++) {
      const n = row * V + j;
      y[n] = (o[n]! / rms) * norm[j]! * (gate[n]! / (1 + Math.exp(-gate[n]!)));
    }
  }
  const out = matMul64(y, w.get('output')!, rows, HV, D);
  const outAbs = maxAbs(matMul64(y, w.get('output')!, rows, HV, D, true));
  // A = the largest Σ_t |g_t| over (b, h, key channel): how far the gates move an exponent
  let gateMass = 0;
  for (let b = 0; b < B; b++) for (let n = 0; n < H * dims.K; n++) {
    let sum = 0;
    for (let t = 0; t < T; t++) sum += Math.abs(g[(b * T + t) * H * dims.K + n]!);
    gateMass = Math.max(gateMass, sum);
  }
  return { out, outAbs, kappa, gateMass };
}

/**
 * The float32 error of the block, in units of ε·outAbs, derived from its chain of sums: o's
 * rounding (D-term projections, the gate's D + r terms, T state terms and K read-out terms, a
 * γ_n bound each, on o's magnitude scale) enters relative to the norm's RMS, so it is multiplied
 * by kappa; the norm itself (V + 4 operations), the gate (3) and the output projection (H·V
 * terms) add their own. On the WGSL scan kernels (`gateMass` A given) the T state terms become
 * the kernels' count of test/gated-linear-attention.test.ts: 5T + 5⌈T/32⌉ + 36·A (WGSL's exp of
 * each gate and of each chunk's summed gates).
 */
function errorTerms(layer: GatedLinearAttention, T: number, D: number, kappa: number, gateMass?: number): number {
  const H = layer.numHeads;
  const K = Math.floor(layer.expandK * D) / H;
  const V = Math.floor(layer.expandV * D) / H;
  const state = gateMass === undefined ? T : 5 * T + 5 * Math.ceil(T / 32) + 36 * gateMass;
  return (D + layer.gateLowRankDim + D + state + K) * kappa + V + 4 + 3 + H * V;
}

const built = (args: GatedLinearAttentionArgs, D: number) => builtFor(gatedLinearAttention(args), D);

/** B 1..2; T of 1, short, and past two of the op's 32-token chunks; D 8 or 16; H 1, 2 or 4 (K = D/2H, V = D/H). */
const cases = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  T: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 9 }), fc.integer({ min: 65, max: 70 })),
  D: fc.constantFrom(8, 16),
  H: fc.constantFrom(1, 2, 4),
  seed: fc.nat(),
});

/** Row b's state S `[1, H, K, V]` of x `[B, T, D]` after its first n tokens, stepped one by one alone. */
async function steppedState(layer: GatedLinearAttention, x: tf.Tensor3D, b: number, n: number): Promise<Float32Array> {
  const D = x.shape[2];
  let state = layer.initState(1);
  for (let t = 0; t < n; t++) {
    const xt = tf.tidy(() => x.slice([b, t, 0], [1, 1, D]).reshape([1, D]) as tf.Tensor2D);
    const [y, next] = layer.step(xt, state);
    tf.dispose([xt, y, state.S, state.positions]);
    state = next;
  }
  const S = (await state.S.data()) as Float32Array;
  tf.dispose([state.S, state.positions]);
  return S;
}

for (const backend of REFERENCE_BACKENDS) {
  describeOn(backend, 'GatedLinearAttention layer', () => {
    it('maps [B, T, D] to [B, T, D] with fla\'s weights and defaults', () => {
      const layer = gatedLinearAttention();
      const symbolic = layer.apply(tf.input({ shape: [null, 32] })) as tf.SymbolicTensor;
      expect(symbolic.shape).toEqual([null, null, 32]);
      const y = layer.apply(tf.randomNormal([3, 5, 32])) as tf.Tensor;
      expect(y.shape).toEqual([3, 5, 32]);
      const shapes = Object.fromEntries(layer.weights.map((w) => [w.originalName.split('/').pop(), w.shape]));
      // 4 heads, H·K = 0.5·32, H·V = 32, rank 16
      expect(shapes).toEqual({
        query: [32, 16], key: [32, 16], value: [32, 32], outputGate: [32, 32], forgetDown: [32, 16], forgetUp: [16, 16],
        forgetUpBias: [16], norm: [8], output: [32, 32],
      });
      y.dispose();
      layer.dispose();
    });

    it('the forward matches the float64 block, and step-by-step decode reproduces it', async () => {
      await fc.assert(fc.asyncProperty(cases, async (c) => {
        const layer = built({ numHeads: c.H, gateLowRankDim: 4 }, c.D);
        const xs = seededUniform(c.seed, c.B * c.T * c.D, -2, 2);
        const x = tf.tensor3d(xs, [c.B, c.T, c.D]);
        const parallel = layer.apply(x) as tf.Tensor3D;
        const stepped = decodeSteps(layer, x);
        const { out, outAbs, kappa } = await layerOracle(layer, xs, c.B, c.T, c.D);
        const terms = errorTerms(layer, c.T, c.D, kappa);
        expect(maxAbsDiff(await values(parallel), out)).toBeLessThanOrEqual(terms * EPS32 * Math.max(1, outAbs));
        // the decode sums S in another order: at most twice the forward's error, plus the same floor
        expectWithinDerivedTolerance(await values(stepped), await values(parallel), out, 'decode', terms * Math.max(1, outAbs) / Math.max(1, maxAbs(out)));
        tf.dispose([x, parallel, stepped]);
        layer.dispose();
      }), { numRuns: 8 });
    });

    itIsCausal('', cases, (c) => built({ numHeads: c.H }, c.D));

    it('a ragged prefill leaves each row\'s stepped state, its real outputs equal the forward\'s, and a step continues it', async () => {
      const [B, T, D] = [3, 37, 8];
      const layer = built({ numHeads: 2 }, D);
      const xs = seededUniform(5, B * T * D, -2, 2);
      // a NaN in row 1's padding must reach nothing
      xs[(1 * T + 30) * D + 3] = NaN;
      const x = tf.tensor3d(xs, [B, T, D]);
      const lengths = [T, 11, 0];
      const [y, state] = layer.prefill(x, undefined, { lengths });
      expect(await state.positions.data()).toEqual(Int32Array.from(lengths));
      const S = (await state.S.data()) as Float32Array;
      const per = S.length / B;
      // S sums at most T gated outer products k_tᵀv_t (gates ≤ 1): each path's error is within
      // γ_(T+2) of Σ_t |k_t|·|v_t| (plus the gates' own rounding, one more term per step), so the
      // two paths differ by at most twice that
      const { k, v, dims } = await projections64(layer, xs.map((a) => (Number.isNaN(a) ? 0 : a)), B, T, D);
      let kvAbs = 0;
      for (let b = 0; b < B; b++) for (let h = 0; h < dims.H; h++) for (let i = 0; i < dims.K; i++) for (let j = 0; j < dims.V; j++) {
        let sum = 0;
        for (let t = 0; t < T; t++) sum += Math.abs(k[((b * T + t) * dims.H + h) * dims.K + i]! * v[((b * T + t) * dims.H + h) * dims.V + j]!);
        kvAbs = Math.max(kvAbs, sum);
      }
      const bound = 2 * (2 * T + 2) * EPS32 * Math.max(1, kvAbs);
      for (const [b, n] of lengths.entries()) {
        expect(maxAbsDiff(S.subarray(b * per, (b + 1) * per), await steppedState(layer, x, b, n))).toBeLessThanOrEqual(bound);
      }
      // row 0 is whole: its outputs are the forward's (same op on the same tokens)
      const full = layer.apply(x.slice([0, 0, 0], [1, T, D])) as tf.Tensor;
      expect(maxAbsDiff(await values(y.slice([0, 0, 0], [1, T, D])), await values(full))).toBe(0);
      expect((await values(y)).every(Number.isFinite)).toBe(true);
      // a step after the prefill continues row 1 from its token 11: as stepping its first 12 tokens
      const x12 = tf.tidy(() => x.slice([1, 11, 0], [1, 1, D]).reshape([1, D]) as tf.Tensor2D);
      const one = { S: state.S.slice([1, 0, 0, 0], [1, 2, 2, 4]) as tf.Tensor4D, positions: tf.tensor1d([11], 'int32') };
      const [y12, after] = layer.step(x12, one);
      expect(maxAbsDiff(await after.S.data(), await steppedState(layer, x, 1, 12))).toBeLessThanOrEqual(bound);
      expect(await after.positions.data()).toEqual(Int32Array.from([12]));
      tf.dispose([x, y, state.S, state.positions, full, x12, one.S, one.positions, y12, after.S, after.positions]);
      layer.dispose();
    });

    itLeaksNothing('', () => gatedLinearAttention({ numHeads: 2 }));

    it('refuses bad arguments and states with errors naming them', () => {
      expect(() => gatedLinearAttention({ numHeads: 0 })).toThrow(/GatedLinearAttention.*'numHeads'.*positive integer.*received 0/);
      expect(() => gatedLinearAttention({ expandK: -1 })).toThrow(/'expandK' must be a finite number > 0; received -1/);
      expect(() => gatedLinearAttention({ expandV: Number.NaN })).toThrow(/'expandV' must be a finite number > 0/);
      expect(() => gatedLinearAttention({ gateLowRankDim: 1.5 })).toThrow(/'gateLowRankDim'/);
      expect(() => gatedLinearAttention({ heads: 2 } as never)).toThrow(/heads/);
      // floor(0.5·12) = 6 keys cannot split into 4 heads
      expect(() => gatedLinearAttention({ numHeads: 4 }).apply(tf.zeros([1, 2, 12]))).toThrow(/floor\(expandK·D\) = floor\(0\.5·12\) = 6 must be a positive multiple of numHeads = 4/);
      expect(() => gatedLinearAttention().initState(1)).toThrow(/not built/);
      const layer = built({ numHeads: 2 }, 8);
      const x = tf.zeros([2, 8]) as tf.Tensor2D;
      expect(() => layer.step(x, layer.initState(3))).toThrow(/GatedLinearAttention\.step.*'state\.S' must have shape \[B, H, K, V\] = \[2, 2, 2, 4\]/);
      expect(() => layer.step(x, { S: tf.zeros([2, 2, 2, 4]) } as never)).toThrow(/'state\.positions' must be an int32 tensor/);
      expect(() => layer.prefill(tf.zeros([2, 3, 8]) as tf.Tensor3D, undefined, { lengths: [4, 1] })).toThrow(/'lengths' must hold 2 integers/);
      x.dispose();
      layer.dispose();
    });
  });
}

describeOn('cpu', 'GatedLinearAttention layer: Keras behaviour', () => {
  itRoundTrips(() => gatedLinearAttention({ numHeads: 2, expandK: 0.5, expandV: 1, gateLowRankDim: 4 }),
    { numHeads: 2, expandK: 0.5, expandV: 1, gateLowRankDim: 4, implementation: 'auto' });
  itTrains(() => gatedLinearAttention({ numHeads: 2 }));
});

// on webgpu the layer runs the op's WGSL scan kernels, and its decode the step kernel
describeOn('webgpu', 'GatedLinearAttention layer (the kernels on the webgpu backend)', () => {
  // the forget gate's bias, zeros as built, set after the build: the step kernel reads it from
  // what the layer keeps of forgetUp and it, which must be made again
  it('the forward matches the float64 block, and step-by-step decode reproduces it, with a forget-gate bias set after the build', async () => {
    for (const [B, T, D, H] of [[1, 5, 8, 2], [2, 37, 16, 4]] as const) {
      const layer = built({ numHeads: H, gateLowRankDim: 4 }, D);
      const bias = layer.weights.find((w) => w.originalName.endsWith('forgetUpBias'))!;
      const drawn = tf.tensor1d(seededUniform(D + H, bias.shape[0]!, -3, 3));
      bias.write(drawn);
      drawn.dispose();
      const xs = seededUniform(B + T, B * T * D, -2, 2);
      const x = tf.tensor3d(xs, [B, T, D]);
      const parallel = layer.apply(x) as tf.Tensor3D;
      const n = Math.min(6, T);
      const stepped = decodeSteps(layer, x.slice([0, 0, 0], [B, n, D]));
      const { out, outAbs, kappa, gateMass } = await layerOracle(layer, xs, B, T, D);
      const bound = errorTerms(layer, T, D, kappa, gateMass) * EPS32 * Math.max(1, outAbs);
      expect(maxAbsDiff(await values(parallel), out)).toBeLessThanOrEqual(bound);
      const head = await values(tf.tidy(() => parallel.slice([0, 0, 0], [B, n, D])));
      expect(maxAbsDiff(await values(stepped), head)).toBeLessThanOrEqual(2 * bound);
      tf.dispose([x, parallel, stepped]);
      layer.dispose();
    }
  });

  it('runs its forward in 10 launches (8 where its scan walks) and a decode step in 6: the projections of x grouped, the gate one, the readout one, the step one', async () => {
    const layer = built({ numHeads: 4 }, 64);
    const x = tf.randomNormal([2, 64, 64]) as tf.Tensor3D;
    const forward = () => launchedPipelines(async () => {
      const y = layer.apply(x) as tf.Tensor;
      await y.data();
      y.dispose();
    });
    const around = (scan: string[]) => [
      // q, k, v; the forget gate's low rank beside the output gate; its second projection, then −softplus(−z)/16
      'DenseGroups', 'DenseGroups', 'DenseVec4', 'GatedLinearAttentionLogGate', ...scan, 'GatedLinearAttentionSeen',
      // the readout (no gradient recorded): RMSNorm times the output gate's swish in one launch, the projection
      'RmsNormSwishGateForwardVec4', 'DenseVec4',
    ];
    expect(await underScan('chunks', forward)).toEqual(around(['GatedLinearAttentionChunkStates', 'ScanCarry', 'GatedLinearAttentionForward']));
    expect(await underScan('walk', forward)).toEqual(around(['GatedLinearAttentionWalk']));
    // the step kernel forms the log gate from the low-rank features (the kept up projection and
    // bias), and poisons in the same launch; then the positions, uploading nothing
    expect(await stepLaunches(layer, 2, 64)).toEqual({
      ran: ['DenseGroups', 'DenseGroups', 'GatedLinearAttentionStep', 'RmsNormSwishGateForwardVec4', 'DenseVec4', 'AdvancePositions'],
      positions: [1, 1], uploads: 0,
    });
    tf.dispose(x);
    layer.dispose();
  });
});
