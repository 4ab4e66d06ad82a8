import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { SelectiveSSM, layers, type Implementation, type SelectiveSSMArgs, type SelectiveSSMState } from '../src/index.js';
import { selectiveScanOracle } from './oracle/selective-ssm.js';
import { causalConv, convolved, convolvedProjection } from '../src/mixers/selective-ssm/conv.js';
import { builtFor, itIsCausal, itLeaksNothing, itRoundTrips, itTrains, matMul64, weightsOf } from './layer-properties.js';
import {
  EPS32, REFERENCE_BACKENDS, decodeSteps, describeOn, underScan, expectWithinDerivedTolerance, launchedPipelines, maxAbs, maxAbsDiff, seededUniform, uploadsDuring,
  values,
} from './helpers.js';

/**
 * The Mamba block of MIXERS.md §6 in float64 from the layer's float32 weights, written from the
 * equations (loops, no tfjs), with the scan by the float64 scan oracle: `[B, T, D]`.
 */
async function layerOracle(layer: SelectiveSSM, xs: Float32Array, B: number, T: number, D: number): Promise<Float64Array> {
  const w = await weightsOf(layer);
  const E = layer.expand * D;
  const N = layer.stateSize;
  const K = layer.convKernel;
  const R = w.get('dtProj')!.length / E;
  const rows = B * T;
  const xz = matMul64(xs, w.get('inProj')!, rows, D, 2 * E);
  const u = new Float64Array(rows * E);
  const z = new Float64Array(rows * E);
  const kernel = w.get('convKernel')!;
  const bias = w.get('convBias')!;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let e = 0; e < E; e++) {
        // causal: tap k reads token t − (K − 1) + k, zero before the sequence
        let acc = bias[e]!;
        for (let k = 0; k < K; k++) {
          const s = t - (K - 1) + k;
          if (s >= 0) acc += kernel[k * E + e]! * xz[(b * T + s) * 2 * E + e]!;
        }
        u[(b * T + t) * E + e] = acc / (1 + Math.exp(-acc));
        z[(b * T + t) * E + e] = xz[(b * T + t) * 2 * E + E + e]!;
      }
    }
  }
  const proj = matMul64(u, w.get('xProj')!, rows, E, R + 2 * N);
  const low = new Float64Array(rows * R);
  const Bm = new Float64Array(rows * N);
  const Cm = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < R; i++) low[r * R + i] = proj[r * (R + 2 * N) + i]!;
    for (let n = 0; n < N; n++) {
      Bm[r * N + n] = proj[r * (R + 2 * N) + R + n]!;
      Cm[r * N + n] = proj[r * (R + 2 * N) + R + N + n]!;
    }
  }
  const delta = matMul64(low, w.get('dtProj')!, rows, R, E);
  const A = Float64Array.from(w.get('ALog')!, (v) => -Math.exp(v));
  const { out } = selectiveScanOracle(
    { u, delta, A, Bm, Cm, D: w.get('D')!, z, deltaBias: w.get('deltaBias')!, deltaSoftplus: true }, { B, T, E, N });
  return matMul64(out, w.get('outProj')!, rows, E, D);
}

/**
 * The floor of the derived tolerance (in ulps of the output's scale, see
 * expectWithinDerivedTolerance): each output is a chain of float32 sums, D terms (inProj),
 * dConv (conv), E and R (xProj, dtProj), T + N (the scan's state and its read-out) and E
 * (outProj), and any order of each is as valid as another.
 */
function chainTerms(layer: SelectiveSSM, T: number, D: number): number {
  const E = layer.expand * D;
  return D + layer.convKernel + E + (layer.dtRank ?? Math.ceil(D / 16)) + T + layer.stateSize + E;
}

const built = (args: SelectiveSSMArgs, D: number) => builtFor(layers.selectiveSSM(args), D);

/**
 * Sizes: B 1..2; T of 1, odd, and past a 32-step kernel chunk; D 8 or 12; R 1 or 3 (a decode
 * step's kernel forms Δ's low-rank product itself); N 1, 4 or 16; dConv 1 (no convolution
 * window), 2 or 4.
 */
const cases = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  T: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 8 }).map((v) => 2 * v + 1), fc.integer({ min: 33, max: 40 })),
  D: fc.constantFrom(8, 12),
  dtRank: fc.constantFrom(1, 3),
  N: fc.constantFrom(1, 4, 16),
  convKernel: fc.constantFrom(1, 2, 4),
  seed: fc.nat(),
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'SelectiveSSM layer', () => {
    const implementations: Implementation[] = backend === 'webgpu' ? ['webgpu', 'reference'] : ['reference'];

    it('maps [B, T, D] to [B, T, D], symbolically and on tensors', () => {
      const layer = layers.selectiveSSM({ stateSize: 4 });
      const symbolic = layer.apply(tf.input({ shape: [null, 12] })) as tf.SymbolicTensor;
      expect(symbolic.shape).toEqual([null, null, 12]);
      expect(layer.computeOutputShape([3, 5, 12])).toEqual([3, 5, 12]);
      const y = layer.apply(tf.randomNormal([3, 5, 12])) as tf.Tensor;
      expect(y.shape).toEqual([3, 5, 12]);
      const shapes = Object.fromEntries(layer.weights.map((w) => [w.originalName.split('/').pop(), w.shape]));
      expect(shapes).toEqual({
        inProj: [12, 48], convKernel: [4, 24], convBias: [24], xProj: [24, 1 + 8], dtProj: [1, 24],
        deltaBias: [24], ALog: [24, 4], D: [24], outProj: [24, 12],
      });
      y.dispose();
      layer.dispose();
    });

    for (const implementation of implementations) {
      // the forward must match the float64 block within the floor of its chain of sums, and the
      // decode's error against the float64 block may be at most twice the forward's (+ floor)
      it(`(${implementation}) the forward matches the float64 block, and step-by-step decode reproduces it`, async () => {
        await fc.assert(fc.asyncProperty(cases, async (c) => {
          const layer = built({ stateSize: c.N, convKernel: c.convKernel, dtRank: c.dtRank, implementation }, c.D);
          const xs = seededUniform(c.seed, c.B * c.T * c.D, -2, 2);
          const x = tf.tensor3d(xs, [c.B, c.T, c.D]);
          const parallel = layer.apply(x) as tf.Tensor3D;
          const stepped = decodeSteps(layer, x);
          const oracle = await layerOracle(layer, xs, c.B, c.T, c.D);
          const terms = chainTerms(layer, c.T, c.D);
          expect(maxAbsDiff(await values(parallel), oracle)).toBeLessThanOrEqual(terms * EPS32 * Math.max(1, maxAbs(oracle)));
          expectWithinDerivedTolerance(await values(stepped), await values(parallel), oracle, 'decode', terms);
          tf.dispose([x, parallel, stepped]);
          layer.dispose();
        }), { numRuns: backend === 'webgpu' ? 4 : 8 });
      });

      itIsCausal(`(${implementation}) `, cases, (c) => built({ stateSize: c.N, convKernel: c.convKernel, dtRank: c.dtRank, implementation }, c.D));

      itLeaksNothing(`(${implementation}) `, () => layers.selectiveSSM({ stateSize: 4, implementation }));
    }

    if (backend === 'webgpu') {
      // both layers run the same float32 projections on this backend; only the scan differs,
      // so the kernel layer's error against the float64 layer may be at most twice the
      // reference layer's, plus the floor of the chain of sums (chainTerms)
      it('a kernel layer matches the reference layer with the same weights, against the float64 layer', async () => {
        await fc.assert(fc.asyncProperty(cases, async (c) => {
          const kernel = built({ stateSize: c.N, convKernel: c.convKernel, dtRank: c.dtRank, implementation: 'webgpu' }, c.D);
          const reference = built({ stateSize: c.N, convKernel: c.convKernel, dtRank: c.dtRank, implementation: 'reference' }, c.D);
          reference.setWeights(kernel.getWeights());
          const xs = seededUniform(c.seed, c.B * c.T * c.D, -2, 2);
          const [yk, yr] = tf.tidy(() => {
            const x = tf.tensor3d(xs, [c.B, c.T, c.D]);
            return [kernel.apply(x) as tf.Tensor, reference.apply(x) as tf.Tensor];
          });
          const oracle = await layerOracle(kernel, xs, c.B, c.T, c.D);
          expectWithinDerivedTolerance(await values(yk!), await values(yr!), oracle, 'forward', chainTerms(kernel, c.T, c.D));
          tf.dispose([yk, yr]);
          kernel.dispose();
          reference.dispose();
        }), { numRuns: 6 });
      });

      // under a tape the kernel layer takes its taped forward (B|C one slice of the x projection,
      // the table formed there), the reference layer its block: the loss Σ y·dy and its gradients
      // in every weight must agree. Each side is within the chain of sums' floor of the exact
      // value (a weight's gradient sums B·T such chains), so the two within twice that
      it('under a tape, a kernel layer\'s output and gradients match the reference layer\'s with the same weights', async () => {
        await fc.assert(fc.asyncProperty(cases, async (c) => {
          const kernel = built({ stateSize: c.N, convKernel: c.convKernel, dtRank: c.dtRank, implementation: 'webgpu' }, c.D);
          const reference = built({ stateSize: c.N, convKernel: c.convKernel, dtRank: c.dtRank, implementation: 'reference' }, c.D);
          reference.setWeights(kernel.getWeights());
          const x = tf.tensor3d(seededUniform(c.seed, c.B * c.T * c.D, -2, 2), [c.B, c.T, c.D]);
          const dy = tf.tensor3d(seededUniform(c.seed + 1, c.B * c.T * c.D, -1, 1), [c.B, c.T, c.D]);
          const run = async (layer: SelectiveSSM) => {
            const vars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
            const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, dy)) as tf.Scalar, vars);
            const out = [await values(value), ...await Promise.all(vars.map((v) => values(grads[v.name]!)))];
            tf.dispose([value, grads]);
            return out;
          };
          const [got, want] = [await run(kernel), await run(reference)];
          const terms = chainTerms(kernel, c.T, c.D);
          got.forEach((g, n) => {
            const tol = 2 * c.B * c.T * terms * EPS32 * Math.max(1, maxAbs(want[n]!));
            expect(maxAbsDiff(g, want[n]!), `${n === 0 ? 'the loss' : kernel.trainableWeights[n - 1]!.originalName}`).toBeLessThanOrEqual(tol);
          });
          tf.dispose([x, dy]);
          kernel.dispose();
          reference.dispose();
        }), { numRuns: 6 });
      });

      // the step keeps its per-channel table of A, D and the Δ bias while those weights stay the
      // same: weights changed by setWeights must reach the next step (the table made again, once,
      // in a launch), and the float64 block with the new weights bounds the decode
      it('a step after setWeights reads the new ALog, D, deltaBias and projections, and makes what it keeps of them once', async () => {
        const c = { B: 2, T: 5, D: 8, N: 4 };
        const layer = built({ stateSize: c.N, implementation: 'webgpu' }, c.D);
        const xs = seededUniform(31, c.B * c.T * c.D, -2, 2);
        const x = tf.tensor3d(xs, [c.B, c.T, c.D]);
        decodeSteps(layer, x).dispose();
        const changed = tf.tidy(() => layer.getWeights().map((w, i) => {
          const name = layer.weights[i]!.originalName.split('/').pop();
          if (name === 'ALog') return tf.add(w, tf.tensor(seededUniform(32, w.size, -0.5, 0.5), w.shape));
          if (name === 'D') return tf.mul(w, -2);
          if (name === 'deltaBias') return tf.sub(w, 0.7);
          if (name === 'inProj' || name === 'xProj') return tf.mul(w, 1.5);
          return w.clone();
        }));
        layer.setWeights(changed);
        tf.dispose(changed);
        const token = tf.tidy(() => x.slice([0, 0, 0], [c.B, 1, c.D]).reshape([c.B, c.D]) as tf.Tensor2D);
        const runs: string[][] = [];
        let state = layer.initState(c.B);
        for (let s = 0; s < 2; s++) {
          runs.push(await launchedPipelines(async () => {
            const [y, next] = layer.step(token, state);
            await y.data();
            tf.dispose([y, state]);
            state = next;
          }));
        }
        expect(runs[0]!.length - runs[1]!.length).toBe(1);
        expect(runs[0]).toContain('SelectiveSSMTable');
        // a step with nothing to make again: the convolution (which also advances the positions)
        // and the scan read x and z in the in projection, not sliced out; the scan reads the x
        // projection's low | B | C (R + 2N = 9 wide here) as it lies and forms Δ; the output's
        expect(runs[1]).toEqual(['DenseVec4', 'SelectiveSSMConv', 'Dense', 'SelectiveScanStep', 'DenseVec4']);
        const parallel = layer.apply(x) as tf.Tensor3D;
        const stepped = decodeSteps(layer, x);
        const oracle = await layerOracle(layer, xs, c.B, c.T, c.D);
        expectWithinDerivedTolerance(await values(stepped), await values(parallel), oracle, 'decode', chainTerms(layer, c.T, c.D));
        tf.dispose([x, token, state, parallel, stepped]);
        layer.dispose();
      });
    }

    itRoundTrips(() => layers.selectiveSSM({ stateSize: 4, convKernel: 3, dtRank: 2 }),
      { expand: 2, stateSize: 4, dtRank: 2, convKernel: 3, dtMin: 1e-3, dtMax: 1e-1, dtInitFloor: 1e-4, implementation: 'auto' });
    // as the other layers, training runs where the kernels' backward does (about 20 s on
    // SwiftShader); the cpu backend's fit is the leak test's
    if (backend === 'webgpu') itTrains(() => layers.selectiveSSM({ stateSize: 4, expand: 1 }));
  });
}

for (const backend of ['cpu', 'webgpu'] as const) {
  describeOn(backend, 'SelectiveSSM\'s causal convolution', () => {
    it('depthwiseConv2d and the shifted slices give the same outputs and gradients', async () => {
      // small integers: every product and sum is exact in float32, whatever the order, so the
      // two paths must agree bit for bit
      const int = (seed: number, n: number) => seededUniform(seed, n, -4, 4).map(Math.round);
      const [B, T, E, K] = [2, 9, 5, 4];
      const padded = tf.tensor3d(int(1, B * (T + K - 1) * E), [B, T + K - 1, E]);
      const taps = tf.tensor2d(int(2, K * E), [K, E]);
      const bias = tf.tensor1d(int(3, E));
      const weight = tf.tensor3d(int(4, B * T * E), [B, T, E]);
      const run = (whole: boolean) => tf.grads((p: tf.Tensor, t: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(causalConv(p as tf.Tensor3D, t as tf.Tensor2D, b, whole), weight)))([padded, taps, bias]);
      const outputs = [true, false].map((whole) => causalConv(padded, taps, bias, whole));
      expect(Array.from(await outputs[0]!.data())).toEqual(Array.from(await outputs[1]!.data()));
      const [whole, sliced] = [run(true), run(false)];
      for (let i = 0; i < 3; i++) expect(Array.from(await whole[i]!.data()), `gradient ${i}`).toEqual(Array.from(await sliced[i]!.data()));
      tf.dispose([padded, taps, bias, weight, outputs, whole, sliced]);
    });
  });
}

// on webgpu the convolution, its window and silu are one launch (kernels/selective-ssm/conv.wgsl)
describeOn('webgpu', 'SelectiveSSM\'s launches', () => {
  it('runs its forward in 8 launches where no gradient is recorded (6 where its scan walks), and in 11 under a tape, its scan\'s and table\'s gradient in 5, its convolution\'s in 2', async () => {
    const layer = built({}, 64);
    const x = tf.randomNormal([2, 64, 64]) as tf.Tensor3D;
    for (const [scan, passes] of [['chunks', ['SelectiveScanChunkStates', 'ScanCarry', 'SelectiveScanForward']], ['walk', ['SelectiveScanWalk']]] as const) {
      let ran: string[] = [];
      // the convolution's absent window and positions stand on x's data: nothing made on the CPU
      expect(await underScan(scan, () => uploadsDuring(async () => {
        ran = await launchedPipelines(async () => {
          const y = layer.apply(x) as tf.Tensor;
          await y.data();
          y.dispose();
        });
      }, [x]))).toBe(0);
      // the in projection, read in place by the convolution (x) and the scan (z); the x projection's
      // kept blocks grouped, Δ's; the scan with the kept table; the output projection
      expect(ran).toEqual(['DenseVec4', 'SelectiveSSMConv', 'DenseGroups', 'DenseVec4', ...passes, 'DenseVec4']);
    }
    const taped = await launchedPipelines(async () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x) as tf.Tensor) as tf.Scalar);
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
    });
    // the forward first: the convolution of x in the in projection, handing z on; the x
    // projection's output cut into Δ's low rank and B|C, Δ's product, the table, the scan, the
    // output projection
    expect(taped.slice(0, 11)).toEqual(['DenseVec4', 'SelectiveSSMConvProjected', 'DenseVec4',
      'SliceProgram', 'SliceProgram', 'DenseVec4', 'SelectiveSSMTable',
      'SelectiveScanChunkStates', 'ScanCarry', 'SelectiveScanForward', 'DenseVec4']);
    // the scan's backward: its three passes, then one launch that cuts its buffer into the
    // inputs' gradients and finishes the table's and B|C's sums; then the table's, in the weights
    const scan = taped.indexOf('SelectiveScanBackwardChunkStates');
    expect(taped.slice(scan, scan + 5)).toEqual(['SelectiveScanBackwardChunkStates', 'ScanCarry', 'SelectiveScanBackward', 'SelectiveScanSplitGrads',
      'SelectiveSSMTableBackward']);
    // the convolution's: the in projection's gradient whole (dz beside dx) and dPre, then the taps'
    // and the bias's from dPre; then the in projection's own (its weight's and x's)
    const conv = taped.indexOf('SelectiveSSMConvProjectedBackward');
    expect(taped.slice(conv)).toEqual(['SelectiveSSMConvProjectedBackward', 'SelectiveSSMConvWeightsBackward', 'DenseVec4']);
    expect(taped).toHaveLength(29);
    tf.dispose(x);
    layer.dispose();
  });
});

describeOn('webgpu', 'SelectiveSSM\'s convolution kernel', () => {
  /** float64: pre = bias + Σ_k taps[k]·(window ++ x)[t + k], u = silu(pre), and the gradients of Σ weight·u. */
  function oracle(x: Float32Array, window: Float32Array | null, taps: Float32Array, bias: Float32Array, weight: Float32Array,
    [B, T, E, K]: number[]) {
    const before = K - 1;
    const joined = (b: number, c: number, e: number) =>
      (c >= before ? x[(b * T + c - before) * E + e]! : window ? window[(b * before + c) * E + e]! : 0);
    const u = new Float64Array(B * T * E);
    const pres = new Float64Array(B * T * E);
    const dx = new Float64Array(B * T * E);
    const dWindow = new Float64Array(B * before * E);
    const dTaps = new Float64Array(K * E);
    const dBias = new Float64Array(E);
    // Σ|term| of each gradient element, for its bound
    const [xMass, windowMass, tapsMass, biasMass] = [dx, dWindow, dTaps, dBias].map((a) => new Float64Array(a.length));
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) {
      const n = (b * T + t) * E + e;
      let pre = bias[e]!;
      for (let k = 0; k < K; k++) pre += taps[k * E + e]! * joined(b, t + k, e);
      const s = 1 / (1 + Math.exp(-pre));
      pres[n] = pre;
      u[n] = pre * s;
      const dPre = weight[n]! * s * (1 + pre * (1 - s));
      dBias[e] += dPre;
      biasMass[e] += Math.abs(dPre);
      for (let k = 0; k < K; k++) {
        dTaps[k * E + e] += dPre * joined(b, t + k, e);
        tapsMass[k * E + e] += Math.abs(dPre * joined(b, t + k, e));
        const c = t + k;
        const [into, mass, at] = c >= before ? [dx, xMass, (b * T + c - before) * E + e] : [dWindow, windowMass, (b * before + c) * E + e];
        into[at] += dPre * taps[k * E + e]!;
        mass[at] += Math.abs(dPre * taps[k * E + e]!);
      }
    }
    return { u, pres, grads: [dx, dWindow, dTaps, dBias], masses: [xMass, windowMass, tapsMass, biasMass] };
  }

  it('matches the float64 oracle, output, next window and gradients in x, the window, the taps and the bias, in one launch', async () => {
    // small integers: every pre-activation is exact in float32
    const int = (seed: number, n: number) => Float32Array.from(seededUniform(seed, n, -2, 2), Math.round);
    for (const [B, T, E, K, withWindow] of [[2, 9, 5, 4, false], [2, 9, 8, 4, true], [3, 1, 6, 4, true], [1, 2, 4, 2, true]] as const) {
      const dims = [B, T, E, K];
      const [xs, ws, ts, bs, weights] = [int(1, B * T * E), int(2, B * (K - 1) * E), int(3, K * E), int(4, E), int(5, B * T * E)];
      const want = oracle(xs, withWindow ? ws : null, ts, bs, weights, dims);
      const [x, window, taps, bias, weight] = [tf.tensor3d(xs, [B, T, E]), tf.tensor3d(ws, [B, K - 1, E]), tf.tensor2d(ts, [K, E]),
        tf.tensor1d(bs), tf.tensor3d(weights, [B, T, E])];
      const ran = await launchedPipelines(async () => {
        const { u } = convolved(x, taps, bias, 'auto', withWindow ? window : undefined);
        await u.data();
        u.dispose();
      });
      expect(ran).toEqual(['SelectiveSSMConv']);
      const { u, next } = convolved(x, taps, bias, 'auto', withWindow ? window : undefined, true);
      // WGSL's exp is within 3 + 2·|x| ulp, the σ and the product within a few more: 64 + 2·|pre| ulp of |pre|
      const got = await values(u);
      for (let n = 0; n < got.length; n++) {
        const pre = Math.abs(want.pres[n]!);
        expect(Math.abs(got[n]! - want.u[n]!), `u ${n}`).toBeLessThanOrEqual((64 + 2 * pre) * 2 ** -23 * Math.max(1, pre));
      }
      // the next window: the last K − 1 of the window (zeros without one) followed by x, exactly
      const joinedRows = Array.from({ length: B }, (_, b) => [
        ...Array.from({ length: (K - 1) * E }, (_, i) => (withWindow ? ws[b * (K - 1) * E + i]! : 0)),
        ...Array.from(xs.subarray(b * T * E, (b + 1) * T * E)),
      ].slice(T * E));
      expect(Array.from(await next!.data())).toEqual(joinedRows.flat());
      const loss = (a: tf.Tensor, t: tf.Tensor, c: tf.Tensor, w?: tf.Tensor) =>
        tf.sum(tf.mul(convolved(a as tf.Tensor3D, t as tf.Tensor2D, c as tf.Tensor1D, 'auto', w as tf.Tensor3D | undefined).u, weight));
      // the gradients in the oracle's order (x, the window, the taps, the bias), the window's where it is given
      const order = withWindow ? [0, 1, 2, 3] : [0, 2, 3];
      const grads = tf.grads((...a: tf.Tensor[]) => (withWindow ? loss(a[0]!, a[2]!, a[3]!, a[1]) : loss(a[0]!, a[1]!, a[2]!)))(
        withWindow ? [x, window, taps, bias] : [x, taps, bias]);
      // σ (WGSL's exp within 3 + 2·|pre| ulp) and products in each term, then sums of up to B·T
      // terms: (64 + 2·max|pre| + B·T) ulp of the terms' Σ|term|
      const maxPre = Math.max(...Array.from(want.pres, Math.abs));
      for (const [j, grad] of grads.entries()) {
        const i = order[j]!;
        const g = await values(grad);
        for (let n = 0; n < g.length; n++) {
          const bound = (64 + 2 * maxPre + B * T) * 2 ** -23 * want.masses[i]![n]!;
          expect(Math.abs(g[n]! - want.grads[i]![n]!), `gradient ${i} at ${n}`).toBeLessThanOrEqual(bound);
        }
      }
      tf.dispose([x, window, taps, bias, weight, u, next!, grads]);
    }
  });

  it('of the in projection under a tape: u and z, and the gradients in the projection (dx beside dz), the taps and the bias, against the oracle', async () => {
    const int = (seed: number, n: number) => Float32Array.from(seededUniform(seed, n, -2, 2), Math.round);
    for (const [B, T, E, K] of [[2, 9, 5, 4], [1, 3, 20, 2], [3, 1, 6, 3]] as const) {
      const dims = [B, T, E, K];
      const [xs, zs, ts, bs, weights, zWeights] = [int(6, B * T * E), int(7, B * T * E), int(8, K * E), int(9, E), int(10, B * T * E),
        int(11, B * T * E)];
      const want = oracle(xs, null, ts, bs, weights, dims);
      // the in projection: each row x then z
      const rows = (a: Float32Array, r: number) => Array.from(a.subarray(r * E, (r + 1) * E));
      const projectedValues = Array.from({ length: B * T }, (_, r) => [...rows(xs, r), ...rows(zs, r)]).flat();
      const [projected, taps, bias, weight, zWeight] = [tf.tensor3d(projectedValues, [B, T, 2 * E]), tf.tensor2d(ts, [K, E]), tf.tensor1d(bs),
        tf.tensor3d(weights, [B, T, E]), tf.tensor3d(zWeights, [B, T, E])];
      const ran = await launchedPipelines(async () => {
        const { u, z } = convolvedProjection(projected, taps, bias, 'auto');
        await Promise.all([u.data(), z.data()]);
        tf.dispose([u, z]);
      });
      expect(ran).toEqual(['SelectiveSSMConvProjected']);
      const { u, z } = convolvedProjection(projected, taps, bias, 'auto');
      const got = await values(u);
      // as the convolution of x alone (the test above): 64 + 2·|pre| ulp of |pre|
      for (let n = 0; n < got.length; n++) {
        const pre = Math.abs(want.pres[n]!);
        expect(Math.abs(got[n]! - want.u[n]!), `u ${n}`).toBeLessThanOrEqual((64 + 2 * pre) * 2 ** -23 * Math.max(1, pre));
      }
      expect(Array.from(await z.data())).toEqual(Array.from(zs));
      const grads = tf.grads((p: tf.Tensor, t: tf.Tensor, c: tf.Tensor) => {
        const out = convolvedProjection(p as tf.Tensor3D, t as tf.Tensor2D, c as tf.Tensor1D, 'auto');
        return tf.add(tf.sum(tf.mul(out.u, weight)), tf.sum(tf.mul(out.z, zWeight)));
      })([projected, taps, bias]);
      // the projection's gradient: each row dx (the oracle's) then dz = the z weights, exactly
      const dProjected = await values(grads[0]!);
      const maxPre = Math.max(...Array.from(want.pres, Math.abs));
      const bound = (i: number, n: number) => (64 + 2 * maxPre + B * T) * 2 ** -23 * want.masses[i]![n]!;
      for (let r = 0; r < B * T; r++) {
        for (let e = 0; e < E; e++) {
          const n = r * E + e;
          expect(Math.abs(dProjected[r * 2 * E + e]! - want.grads[0]![n]!), `dx ${n}`).toBeLessThanOrEqual(bound(0, n));
          expect(dProjected[r * 2 * E + E + e], `dz ${n}`).toBe(zWeights[n]);
        }
      }
      // the taps' and the bias's, as the oracle's order has them (2 and 3)
      for (const [j, i] of [[1, 2], [2, 3]] as const) {
        const g = await values(grads[j]!);
        for (let n = 0; n < g.length; n++) expect(Math.abs(g[n]! - want.grads[i]![n]!), `gradient ${i} at ${n}`).toBeLessThanOrEqual(bound(i, n));
      }
      tf.dispose([projected, taps, bias, weight, zWeight, u, z, grads]);
    }
  });

  it('±∞ and NaN give what tfjs\'s ops give: silu(∞) = ∞, silu(−∞) = NaN, silu(NaN) = NaN, and a NaN gradient at each', async () => {
    const x = tf.tensor3d([Infinity, -Infinity, Number.NaN, 1], [1, 1, 4]);
    const taps = tf.tensor2d([0, 0, 0, 0, 1, 1, 1, 1], [2, 4]);
    const bias = tf.zeros([4]) as tf.Tensor1D;
    const [kernel, ops] = (['auto', 'reference'] as const).map((implementation) => convolved(x, taps, bias, implementation).u);
    const got = Array.from(await kernel!.data());
    expect(got.slice(0, 3)).toEqual([Infinity, Number.NaN, Number.NaN]);
    expect(got).toEqual(Array.from(await ops!.data()).map((v, i) => (i === 3 ? expect.closeTo(v, 6) : v)));
    // silu'(±∞) = σ + pre·σ·(1 − σ) is ∞·0 in tfjs's ops: NaN
    const [dKernel, dOps] = (['auto', 'reference'] as const).map((implementation) =>
      tf.grad((a: tf.Tensor) => tf.sum(convolved(a as tf.Tensor3D, taps, bias, implementation).u))(x));
    const gotGrad = Array.from(await dKernel!.data());
    expect(gotGrad.slice(0, 3)).toEqual([Number.NaN, Number.NaN, Number.NaN]);
    expect(gotGrad).toEqual(Array.from(await dOps!.data()).map((v, i) => (i === 3 ? expect.closeTo(v, 6) : v)));
    tf.dispose([x, taps, bias, kernel!, ops!, dKernel!, dOps!]);
  });
});

describeOn('cpu', 'SelectiveSSM initialisation', () => {
  it('A = −(1..N) in every channel, D = 1, softplus(deltaBias) in [dtInitFloor, dtMax], dtProj in ±R^−1/2', async () => {
    const D = 64;
    const layer = built({ stateSize: 16, dtRank: 4 }, D);
    const w = await weightsOf(layer);
    const E = 2 * D;
    const A = await values(tf.tidy(() => tf.neg(tf.exp(tf.tensor(w.get('ALog')!)))));
    for (let e = 0; e < E; e++) {
      for (let n = 0; n < 16; n++) expect(A[e * 16 + n]).toBeCloseTo(-(n + 1), 5);
    }
    expect([...w.get('D')!].every((v) => v === 1)).toBe(true);
    // softplus in float64 of the float32 bias: one float32 rounding of the bias is the slack
    const dt = [...w.get('deltaBias')!].map((v) => Math.log1p(Math.exp(v)));
    const slack = 1 + 4 * EPS32 * Math.abs(Math.log(1e-4));
    expect(Math.min(...dt)).toBeGreaterThanOrEqual(1e-4 / slack);
    expect(Math.max(...dt)).toBeLessThanOrEqual(1e-1 * slack);
    // log-uniform over two decades: 128 draws land on both sides of the geometric middle
    expect(dt.some((v) => v < 1e-2) && dt.some((v) => v > 1e-2)).toBe(true);
    expect(Math.max(...[...w.get('dtProj')!].map(Math.abs))).toBeLessThanOrEqual(0.5);
    expect(Math.max(...[...w.get('convKernel')!].map(Math.abs))).toBeLessThanOrEqual(0.5);
    layer.dispose();
  });

  it('initial step sizes below dtInitFloor are raised to it', async () => {
    const layer = built({ stateSize: 2, dtMin: 1e-6, dtMax: 1e-5, dtInitFloor: 1e-3 }, 8);
    const dt = [...(await weightsOf(layer)).get('deltaBias')!].map((v) => Math.log1p(Math.exp(v)));
    for (const v of dt) expect(v).toBeCloseTo(1e-3, 8);
    layer.dispose();
  });
});

describe('SelectiveSSM argument and input checks', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('names the argument, the expectation and what it received', () => {
    const make = (args: Record<string, unknown>) => () => layers.selectiveSSM(args as SelectiveSSMArgs);
    expect(make({ expand: 0 })).toThrow(/SelectiveSSM: argument 'expand' must be a positive integer; received 0 \(a number\)\./);
    expect(make({ stateSize: 1.5 })).toThrow(/argument 'stateSize' must be a positive integer; received 1.5/);
    expect(make({ dtRank: -1 })).toThrow(/argument 'dtRank' must be a positive integer; received -1/);
    expect(make({ convKernel: '4' })).toThrow(/argument 'convKernel' must be a positive integer; received '4' \(a string\)/);
    expect(make({ dtMin: 0 })).toThrow(/argument 'dtMin' must be a finite number > 0; received 0/);
    expect(make({ dtMin: 0.1, dtMax: 0.01 })).toThrow(/argument 'dtMax' must be a finite number ≥ 0.1; received 0.01/);
    expect(make({ dtInitFloor: NaN })).toThrow(/argument 'dtInitFloor' must be a finite number ≥ 0; received NaN/);
    expect(make({ implementation: 'gpu' })).toThrow(/option 'implementation' must be one of 'auto', 'webgpu', 'reference'; received 'gpu'/);
  });

  it('refuses inputs of the wrong rank, width or dtype, and decoding before it is built', () => {
    expect(() => layers.selectiveSSM().apply(tf.zeros([2, 8]))).toThrow(/SelectiveSSM expects input of shape \[B, T, D\] with a known D. Received: \[2, 8\]/);
    expect(() => layers.selectiveSSM().initState(1)).toThrow(/the layer is not built yet/);
    const layer = built({ stateSize: 2 }, 8);
    expect(() => layer.apply(tf.zeros([1, 5, 6])))
      .toThrow(/SelectiveSSM: argument 'inputs' must have shape \[B, T, D\] = \[1, 5, 8\]; received \[1, 5, 6\]/);
    expect(() => layer.apply(tf.zeros([1, 5, 8], 'int32'))).toThrow(/argument 'inputs' .* received an int32 tensor of shape \[1, 5, 8\]/);
    const state = layer.initState(2);
    expect(() => layer.step(tf.zeros([2, 6]) as tf.Tensor2D, state))
      .toThrow(/SelectiveSSM.step: argument 'x' must be a float32 tensor \[B, D\] = \[B, 8\]; received a float32 tensor of shape \[2, 6\]/);
    expect(() => layer.step(tf.zeros([2, 8], 'int32') as tf.Tensor2D, state)).toThrow(/received an int32 tensor/);
    expect(() => layer.step(tf.zeros([3, 8]) as tf.Tensor2D, state))
      .toThrow(/SelectiveSSM.step: argument 'state.conv' must have shape \[B, dConv − 1, E\] = \[3, 3, 16\]; received \[2, 3, 16\]/);
    expect(() => layer.step(tf.zeros([2, 8]) as tf.Tensor2D, { conv: state.conv } as SelectiveSSMState))
      .toThrow(/argument 'state.ssm' must be a float32 tensor of rank 3 \[B, E, N\]; received undefined/);
    expect(() => layer.initState(-1)).toThrow(/SelectiveSSM.initState: argument 'batch' must be a non-negative integer; received -1/);
    tf.dispose(state);
    layer.dispose();
  });
});
