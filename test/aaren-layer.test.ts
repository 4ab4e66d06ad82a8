// The Aaren layer (MIXERS.md §9): the forward against a float64 block written from the equations
// (the op's float64 oracle inside), step-by-step decode and ragged prefill against the forward,
// serialisation, training, leaks and argument errors.
import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import { Aaren, aaren, type AarenLayerArgs, type AarenLayerState } from '../src/mixers/aaren/layer.js';
import { aarenOracle } from './oracle/aaren.js';
import { builtFor, itIsCausal, itLeaksNothing, itRoundTrips, itTrains, matMul64, weightsOf } from './layer-properties.js';
import {
  EPS32, REFERENCE_BACKENDS, decodeSteps, describeOn, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, seededUniform, stepLaunches,
  values,
} from './helpers.js';

/**
 * The Aaren block of MIXERS.md §9 in float64 from the layer's float32 weights: the output
 * `[B, T, D]`, the final state, and the float32 error bound of the output, derived from its chain:
 * k and v are D-term sums (γ_D of |x|·|W|), a score s = q·k/√K adds K terms, so its error is
 * δs ≤ (D + K + 2)·ε·sAbs (sAbs the largest Σ|q||k| with k's magnitudes); a weight e^{s − m} is
 * then off by a factor e^{±2δs}, which moves a convex average of v by at most 2·2δs·vAbs; the
 * sums u and w of up to T terms and the division add (T + 2)·ε·vAbs; the output projection
 * spreads o's error by its largest column sum and adds its own H·K-term rounding on outAbs.
 * On the WGSL scan kernels (`kernels`) the sums become the kernels' step-by-step chain of
 * test/aaren.test.ts: (6T + 3⌈T/32⌉ + 2)·ε·vAbs, and 40·ε·sAbs more from WGSL's exp of the steps
 * of the running max.
 */
async function layerOracle(layer: Aaren, xs: ArrayLike<number>, B: number, T: number, D: number, kernels = false) {
  const w = await weightsOf(layer);
  const H = layer.numHeads;
  const K = w.get('queries')!.length / H;
  const rows = B * T;
  const q = w.get('queries')!;
  const k = matMul64(xs, w.get('key')!, rows, D, H * K);
  const v = matMul64(xs, w.get('value')!, rows, D, H * K);
  const { o, state } = aarenOracle({ q, k, v }, { B, T, H, K });
  const out = matMul64(o, w.get('output')!, rows, H * K, D);
  const kAbs = matMul64(xs, w.get('key')!, rows, D, H * K, true);
  const vAbs = maxAbs(matMul64(xs, w.get('value')!, rows, D, H * K, true));
  let sAbs = 0;
  for (let r = 0; r < rows; r++) for (let h = 0; h < H; h++) {
    let acc = 0;
    for (let i = 0; i < K; i++) acc += Math.abs(q[h * K + i]!) * kAbs[(r * H + h) * K + i]!;
    sAbs = Math.max(sAbs, acc / Math.sqrt(K));
  }
  const Wo = w.get('output')!;
  let colSum = 0;
  for (let d = 0; d < D; d++) {
    let acc = 0;
    for (let i = 0; i < H * K; i++) acc += Math.abs(Wo[i * D + d]!);
    colSum = Math.max(colSum, acc);
  }
  const outAbs = maxAbs(matMul64(o, Wo, rows, H * K, D, true));
  const oError = kernels
    ? (4 * (D + K + 2) * sAbs + 40 * sAbs + 6 * T + 3 * Math.ceil(T / 32) + 2) * EPS32 * vAbs
    : (4 * (D + K + 2) * sAbs + T + 2) * EPS32 * vAbs;
  const bound = oError * colSum + (H * K + 1) * EPS32 * outAbs;
  return { out, state, bound, sAbs, vAbs };
}

const built = (args: AarenLayerArgs, D: number) => builtFor(aaren(args), D);

/** B 1..2; T of 1, short, and past two of the op's 64-token chunks; D 8 or 12; H 1, 2 or 4. */
const cases = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  T: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 9 }), fc.integer({ min: 129, max: 134 })),
  D: fc.constantFrom(8, 12),
  H: fc.constantFrom(1, 2, 4),
  seed: fc.nat(),
});

const disposeState = (s: AarenLayerState) => tf.dispose([s.m, s.u, s.w, s.positions]);

/** Row b's state after its first n tokens of x, stepped one by one alone: m, u `[H]`, w `[H, K]`. */
async function steppedState(layer: Aaren, x: tf.Tensor3D, b: number, n: number) {
  const D = x.shape[2];
  let state = layer.initState(1);
  for (let t = 0; t < n; t++) {
    const xt = tf.tidy(() => x.slice([b, t, 0], [1, 1, D]).reshape([1, D]) as tf.Tensor2D);
    const [y, next] = layer.step(xt, state);
    tf.dispose([xt, y]);
    disposeState(state);
    state = next;
  }
  const out = { m: await state.m.data(), u: await state.u.data(), w: await state.w.data() };
  disposeState(state);
  return out;
}

/**
 * A state's two quantities that do not depend on how (m, u, w) is scaled: each head's
 * log-sum-exp m + ln u and its average w / u, `[H]` and `[H, K]` for one row.
 */
function invariants(m: ArrayLike<number>, u: ArrayLike<number>, w: ArrayLike<number>, H: number, K: number) {
  const lse = Float64Array.from({ length: H }, (_, h) => m[h]! + Math.log(u[h]!));
  const avg = Float64Array.from({ length: H * K }, (_, n) => w[n]! / u[Math.floor(n / K)]!);
  return { lse, avg };
}

for (const backend of REFERENCE_BACKENDS) {
  describeOn(backend, 'Aaren layer', () => {
    it('maps [B, T, D] to [B, T, D] with a learned query per head', () => {
      const layer = aaren({ numHeads: 4 });
      const symbolic = layer.apply(tf.input({ shape: [null, 32] })) as tf.SymbolicTensor;
      expect(symbolic.shape).toEqual([null, null, 32]);
      const y = layer.apply(tf.randomNormal([3, 5, 32])) as tf.Tensor;
      expect(y.shape).toEqual([3, 5, 32]);
      const shapes = Object.fromEntries(layer.weights.map((w) => [w.originalName.split('/').pop(), w.shape]));
      expect(shapes).toEqual({ key: [32, 32], value: [32, 32], queries: [4, 8], output: [32, 32] });
      expect(aaren({ numHeads: 2, headDim: 3 }).computeOutputShape([1, 4, 7])).toEqual([1, 4, 7]);
      y.dispose();
      layer.dispose();
    });

    it('the forward matches the float64 block, and step-by-step decode reproduces it', async () => {
      await fc.assert(fc.asyncProperty(cases, async (c) => {
        const layer = built({ numHeads: c.H }, c.D);
        const xs = seededUniform(c.seed, c.B * c.T * c.D, -2, 2);
        const x = tf.tensor3d(xs, [c.B, c.T, c.D]);
        const parallel = layer.apply(x) as tf.Tensor3D;
        const stepped = decodeSteps(layer, x);
        const { out, bound } = await layerOracle(layer, xs, c.B, c.T, c.D);
        expect(maxAbsDiff(await values(parallel), out)).toBeLessThanOrEqual(bound);
        // the decode merges token by token: at most twice the forward's error, plus the same bound as a floor
        expectWithinDerivedTolerance(await values(stepped), await values(parallel), out, 'decode', bound / (EPS32 * Math.max(1, maxAbs(out))));
        tf.dispose([x, parallel, stepped]);
        layer.dispose();
      }), { numRuns: 8 });
    });

    itIsCausal('', cases, (c) => built({ numHeads: c.H }, c.D));

    it('a ragged prefill leaves each row\'s stepped state, continues an incoming state, and a step continues it', async () => {
      const [B, T, D, H] = [3, 70, 8, 2];
      const K = D / H;
      const layer = built({ numHeads: H }, D);
      const xs = seededUniform(11, B * T * D, -2, 2);
      // a NaN in row 1's padding must reach nothing
      xs[(1 * T + 40) * D + 3] = NaN;
      const x = tf.tensor3d(xs, [B, T, D]);
      const lengths = [T, 23, 0];
      const [y, state] = layer.prefill(x, undefined, { lengths });
      expect(await state.positions.data()).toEqual(Int32Array.from(lengths));
      const [m, u, w] = [await state.m.data(), await state.u.data(), await state.w.data()];
      const { bound, sAbs, vAbs } = await layerOracle(layer, xs.map((a) => (Number.isNaN(a) ? 0 : a)), B, T, D);
      // log-sum-exp: the scores' error (D + K + 2)·ε·sAbs and the T-term sum u; the average w/u:
      // the forward's o error (see layerOracle); each for either path, so twice
      const lseBound = 2 * ((D + K + 2) * sAbs + T + 2) * EPS32;
      const avgBound = 2 * (4 * (D + K + 2) * sAbs + T + 2) * EPS32 * vAbs;
      for (const [b, n] of lengths.entries()) {
        const got = invariants(m.subarray(b * H, (b + 1) * H), u.subarray(b * H, (b + 1) * H), w.subarray(b * H * K, (b + 1) * H * K), H, K);
        const s = await steppedState(layer, x, b, n);
        const want = invariants(s.m, s.u, s.w, H, K);
        if (n === 0) {
          // the empty state, exactly
          expect(Array.from(m.subarray(b * H, (b + 1) * H))).toEqual([-Infinity, -Infinity]);
          expect(maxAbs(u.subarray(b * H, (b + 1) * H)) + maxAbs(w.subarray(b * H * K, (b + 1) * H * K))).toBe(0);
          continue;
        }
        expect(maxAbsDiff(got.lse, want.lse)).toBeLessThanOrEqual(lseBound);
        expect(maxAbsDiff(got.avg, want.avg)).toBeLessThanOrEqual(avgBound);
      }
      // row 0 is whole: its outputs are the forward's
      const full = layer.apply(x.slice([0, 0, 0], [1, T, D])) as tf.Tensor;
      expect(maxAbsDiff(await values(y.slice([0, 0, 0], [1, T, D])), await values(full))).toBeLessThanOrEqual(2 * bound);
      expect((await values(y)).every(Number.isFinite)).toBe(true);
      // a second prefill continues row 1 from token 23 with tokens 23..29: as stepping its first 30
      const rest = x.slice([1, 23, 0], [1, 7, D]);
      const one: AarenLayerState = {
        m: state.m.slice([1, 0], [1, H]), u: state.u.slice([1, 0], [1, H]), w: state.w.slice([1, 0, 0], [1, H, K]), positions: tf.tensor1d([23], 'int32'),
      };
      const [y30, after] = layer.prefill(rest, one);
      expect(await after.positions.data()).toEqual(Int32Array.from([30]));
      const got = invariants(await after.m.data(), await after.u.data(), await after.w.data(), H, K);
      const s = await steppedState(layer, x, 1, 30);
      const want = invariants(s.m, s.u, s.w, H, K);
      expect(maxAbsDiff(got.lse, want.lse)).toBeLessThanOrEqual(lseBound);
      expect(maxAbsDiff(got.avg, want.avg)).toBeLessThanOrEqual(avgBound);
      tf.dispose([x, y, full, rest, y30]);
      [state, one, after].forEach(disposeState);
      layer.dispose();
    });

    itLeaksNothing('', () => aaren({ numHeads: 2 }));

    it('refuses bad arguments and states with errors naming them', () => {
      expect(() => aaren({} as AarenLayerArgs)).toThrow(/Aaren.*'numHeads'.*is required/);
      expect(() => aaren({ numHeads: 0 })).toThrow(/'numHeads'.*positive integer.*received 0/);
      expect(() => aaren({ numHeads: 2, headDim: 2.5 })).toThrow(/'headDim'/);
      expect(() => aaren({ numHeads: 2, heads: 2 } as never)).toThrow(/heads/);
      expect(() => aaren({ numHeads: 3 }).apply(tf.zeros([1, 2, 8]))).toThrow(/D = 8 is not divisible by numHeads = 3; set headDim/);
      expect(() => aaren({ numHeads: 2 }).initState(1)).toThrow(/not built/);
      const layer = built({ numHeads: 2 }, 8);
      const x = tf.zeros([2, 8]) as tf.Tensor2D;
      expect(() => layer.step(x, layer.initState(3))).toThrow(/Aaren\.step.*'state\.m' must have shape \[B, H\] = \[2, 2\]/);
      const s = layer.initState(2);
      expect(() => layer.step(x, { ...s, w: tf.zeros([2, 2, 3]) as tf.Tensor3D })).toThrow(/'state\.w' must have shape \[B, H, K\] = \[2, 2, 4\]/);
      expect(() => layer.step(x, { m: s.m, u: s.u, w: s.w } as never)).toThrow(/'state\.positions' must be an int32 tensor/);
      expect(() => layer.prefill(tf.zeros([2, 3, 8]) as tf.Tensor3D, undefined, { lengths: [4, 1] })).toThrow(/'lengths' must hold 2 integers/);
      x.dispose();
      layer.dispose();
    });
  });
}

describeOn('cpu', 'Aaren layer: Keras behaviour', () => {
  itRoundTrips(() => aaren({ numHeads: 2, headDim: 3 }), { numHeads: 2, headDim: 3, implementation: 'auto' });
  itTrains(() => aaren({ numHeads: 2 }));
});

// on webgpu the layer runs the op's WGSL scan kernels, and its decode the step kernel
describeOn('webgpu', 'Aaren layer (the kernels on the webgpu backend)', () => {
  it('the forward matches the float64 block, and step-by-step decode reproduces it', async () => {
    for (const [B, T, D, H] of [[1, 5, 8, 2], [2, 67, 12, 3]] as const) {
      const layer = built({ numHeads: H }, D);
      const xs = seededUniform(B + T, B * T * D, -2, 2);
      const x = tf.tensor3d(xs, [B, T, D]);
      const parallel = layer.apply(x) as tf.Tensor3D;
      const n = Math.min(6, T);
      const stepped = decodeSteps(layer, x.slice([0, 0, 0], [B, n, D]));
      const { out, bound } = await layerOracle(layer, xs, B, T, D, true);
      expect(maxAbsDiff(await values(parallel), out)).toBeLessThanOrEqual(bound);
      const head = await values(tf.tidy(() => parallel.slice([0, 0, 0], [B, n, D])));
      expect(maxAbsDiff(await values(stepped), head)).toBeLessThanOrEqual(2 * bound);
      tf.dispose([x, parallel, stepped]);
      layer.dispose();
    }
  });

  it('decodes a token in four launches: k and v grouped, the step\'s two (the first also advances the positions), the output projection', async () => {
    const layer = built({ numHeads: 4 }, 64);
    expect(await stepLaunches(layer, 2, 64)).toEqual({
      ran: ['DenseGroups', 'AarenStepFrame', 'AarenStepMerge', 'DenseVec4'], positions: [1, 1], uploads: 0,
    });
    layer.dispose();
  });
});
