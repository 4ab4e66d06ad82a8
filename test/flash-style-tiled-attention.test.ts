import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { layers, ops, type Implementation } from '../src/index.js';
import { itLeaksNothing, itRoundTrips, itTrains } from './layer-properties.js';
import {
  attentionCases as cases, attentionInputs as inputs, itAttentionOpLeaksNothing, itIgnoresKeysItCannotSee, itMatchesRepeatedHeads,
  type AttentionCase as Case,
} from './attention-op-properties.js';
import { softmaxAttentionGradOracle, softmaxAttentionOracle } from './oracle/attention.js';
import { EPS32, REFERENCE_BACKENDS, decodeSteps, describeOn, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, seededUniform, values } from './helpers.js';

function run(c: Case, impl: Implementation, spread = 1, split: 'auto' | 'never' | 'always' = 'auto') {
  const { s, qs, ks, vs, dOs } = inputs(c, spread);
  return tf.tidy(() => {
    const q = tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]);
    const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
    const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
    const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
      ops.flashAttention(a as tf.Tensor4D, b as tf.Tensor4D, d as tf.Tensor4D, { causal: c.causal, scale: c.scale, split, implementation: impl });
    const o = f(q, k, v);
    const [dq, dk, dv] = tf.grads(f)([q, k, v], tf.tensor4d(dOs, [s.B, s.Tq, s.H, s.K]));
    return [o, dq!, dk!, dv!];
  });
}

for (const backend of REFERENCE_BACKENDS) describeOn(backend, 'flashAttention', () => {
  it('reference matches the float64 oracle, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const { s, qs, ks, vs, dOs } = inputs(c);
      const opts = { causal: c.causal, scale: c.scale };
      const oracle = softmaxAttentionOracle(qs, ks, vs, s, opts);
      const grads = softmaxAttentionGradOracle(qs, ks, vs, dOs, s, opts);
      const got = run(c, 'reference');
      // float32 worst case: every value is a chain of sums over K (scores), Tk (softmax and P·V)
      // and Tq (dK, dV), each adding at most n·ε relative to the magnitudes summed (γ_n); inputs
      // and softmax weights are ≤ 1, so 4·(K + Tk + Tq)·ε of the output's scale bounds them all
      const bound = (want: Float64Array) => 4 * (s.K + s.Tk + s.Tq) * EPS32 * Math.max(1, maxAbs(want));
      expect(maxAbsDiff(await values(got[0]!), oracle.o)).toBeLessThanOrEqual(bound(oracle.o));
      for (const [n, want] of [[1, grads.dq], [2, grads.dk], [3, grads.dv]] as const) {
        expect(maxAbsDiff(await values(got[n]!), want)).toBeLessThanOrEqual(bound(want));
      }
      tf.dispose(got);
    }), { numRuns: 12 });
  });
});

describeOn('webgpu', 'flashAttention', () => {
  it('kernel matches the oracle at least as well as the reference, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const { s, qs, ks, vs, dOs } = inputs(c);
      const opts = { causal: c.causal, scale: c.scale };
      const oracle = softmaxAttentionOracle(qs, ks, vs, s, opts);
      const grads = softmaxAttentionGradOracle(qs, ks, vs, dOs, s, opts);
      const kernel = run(c, 'webgpu');
      const reference = run(c, 'reference');
      const names = ['o', 'dq', 'dk', 'dv'];
      const wants = [oracle.o, grads.dq, grads.dk, grads.dv];
      for (let n = 0; n < 4; n++) {
        expectWithinDerivedTolerance(await values(kernel[n]!), await values(reference[n]!), wants[n]!, names[n]!);
      }
      tf.dispose([kernel, reference]);
    }), { numRuns: 16 });
  });

  it('split-K decode matches the oracle as well as the tiled kernel, forward and gradients', async () => {
    // few queries over a longer cache, the decode shape, with any Tq for coverage; the split
    // path writes the same o and lse as the tiled one, so the backward runs on its lse
    const decode = fc.record({ Tq: fc.integer({ min: 1, max: 9 }), Tk: fc.integer({ min: 1, max: 700 }) });
    await fc.assert(fc.asyncProperty(cases, decode, async (c0, d) => {
      const c = { ...c0, ...d };
      const { s, qs, ks, vs, dOs } = inputs(c);
      const opts = { causal: c.causal, scale: c.scale };
      const oracle = softmaxAttentionOracle(qs, ks, vs, s, opts);
      const grads = softmaxAttentionGradOracle(qs, ks, vs, dOs, s, opts);
      const split = run(c, 'webgpu', 1, 'always');
      const tiled = run(c, 'webgpu', 1, 'never');
      const names = ['o', 'dq', 'dk', 'dv'];
      const wants = [oracle.o, grads.dq, grads.dk, grads.dv];
      for (let n = 0; n < 4; n++) {
        expectWithinDerivedTolerance(await values(split[n]!), await values(tiled[n]!), wants[n]!, `split ${names[n]!}`);
      }
      tf.dispose([split, tiled]);
    }), { numRuns: 10 });
  });

  it('large logits (|s| up to 80) give no overflow and no NaN', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c0) => {
      // q, k in ±spread with scale 1: |s| = |q·k| reaches about spread²·K / 3 on average, 80 at the extremes
      const c = { ...c0, scale: 1 };
      const spread = Math.sqrt(80 / c.K) * 1.7;
      const { s, qs, ks, vs } = inputs(c, spread);
      const oracle = softmaxAttentionOracle(qs, ks, vs, s, { causal: c.causal, scale: 1 });
      const [o, ...g] = run(c, 'webgpu', spread);
      const got = await values(o!);
      expect(got.every(Number.isFinite)).toBe(true);
      for (const t of g) expect((await values(t)).every(Number.isFinite)).toBe(true);
      // softmax in float32 with logits of this size: the inputs' own rounding moves a logit by up
      // to |s|·2⁻²³, which the softmax passes on; 80·2⁻²³·(a few) bounds it
      expect(maxAbsDiff(got, oracle.o)).toBeLessThan(1e-4 * Math.max(1, maxAbs(oracle.o)));
      tf.dispose([o, ...g]);
    }), { numRuns: 8 });
  });

  const kernel = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, c: Case) =>
    ops.flashAttention(q, k, v, { causal: c.causal, scale: c.scale, implementation: 'webgpu' });
  itMatchesRepeatedHeads(cases.filter((c) => c.heads[0] !== c.heads[1]), inputs, kernel);
  itIgnoresKeysItCannotSee(cases, inputs, kernel);
  itAttentionOpLeaksNothing(ops.flashAttention);
});

describe('flashAttention input checks', () => {
  let q: tf.Tensor4D;
  let kv: tf.Tensor4D;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    q = tf.zeros([1, 4, 6, 8]);
    kv = tf.zeros([1, 5, 4, 8]);
  });

  it('names the argument, the expectation and what it received', () => {
    const kv3 = tf.zeros([1, 5, 3, 8]) as tf.Tensor4D;
    expect(() => ops.flashAttention(q, kv, kv)).toThrow(/the query heads H = 6 must be a multiple of the key\/value heads Hkv = 4/);
    expect(ops.flashAttention(q, kv3, kv3).shape).toEqual([1, 4, 6, 8]);
    expect(() => ops.flashAttention(q, tf.zeros([1, 5, 3, 4]) as tf.Tensor4D, tf.zeros([1, 5, 3, 4]) as tf.Tensor4D))
      .toThrow(/arguments 'q' and 'k' must have the same head dimension K; received 8 and 4/);
    expect(() => ops.flashAttention(q, kv3, tf.zeros([1, 6, 3, 8]) as tf.Tensor4D))
      .toThrow(/argument 'v' must have the shape of 'k' \[B, Tk, Hkv, K\] = \[1, 5, 3, 8\]; received \[1, 6, 3, 8\]/);
    expect(() => ops.flashAttention(tf.zeros([4, 6, 8]) as unknown as tf.Tensor4D, kv3, kv3))
      .toThrow(/argument 'q' must be a float32 tensor of rank 4 \[B, Tq, H, K\]; received a float32 tensor of shape \[4, 6, 8\]/);
    expect(() => ops.flashAttention(q, kv3, kv3, { causal: true, dropoutRate: 0.1 } as never))
      .toThrow(/unknown option 'dropoutRate'; the options are 'causal', 'window', 'kvLengths', 'queryOffsets', 'segmentIds', 'mask', 'dropout', 'seed', 'scale', 'split', 'implementation'/);
    expect(() => ops.flashAttention(q, kv3, kv3, { scale: NaN })).toThrow(/option 'scale' must be a finite number; received NaN/);
    expect(() => ops.flashAttention(tf.zeros([1, 2, 1, 300]) as tf.Tensor4D, tf.zeros([1, 2, 1, 300]) as tf.Tensor4D, tf.zeros([1, 2, 1, 300]) as tf.Tensor4D))
      .toThrow(/the head dimension K of 'q', 'k' and 'v' must be at most 256; received 300/);
  });
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'FlashStyleTiledAttention layer', () => {
    itRoundTrips(() => layers.flashStyleTiledAttention({ numHeads: 4, numKvHeads: 2 }),
      { numHeads: 4, numKvHeads: 2, headDim: null, useBias: true, implementation: 'auto' });
    itRoundTrips(() => layers.flashStyleTiledAttention({ numHeads: 2, headDim: 5, useBias: false }), { numHeads: 2, headDim: 5, useBias: false });
    if (backend === 'webgpu') itTrains(() => layers.flashStyleTiledAttention({ numHeads: 2 }));

    const implementations: Implementation[] = backend === 'webgpu' ? ['webgpu', 'reference'] : ['reference'];
    for (const implementation of implementations) {
      it(`(${implementation}) step decoding through the key/value cache reproduces the parallel forward`, async () => {
        await fc.assert(fc.asyncProperty(
          fc.record({ B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 12 }), heads: fc.constantFrom([2, 2], [4, 2], [4, 1]),
            K: fc.constantFrom(4, 6, 8), seed: fc.nat() }),
          async (c) => {
            const [H, Hkv] = c.heads as [number, number];
            const D = 12;
            const layer = layers.flashStyleTiledAttention({ numHeads: H, numKvHeads: Hkv, headDim: c.K, implementation });
            const x = tf.tensor3d(seededUniform(c.seed, c.B * c.T * D), [c.B, c.T, D]);
            const parallel = layer.apply(x) as tf.Tensor;
            const stepped = decodeSteps(layer, x);
            // the same sums in the same kernels, over a cache instead of the sequence: the
            // projections run on [B, D] instead of [B·T, D] and may round differently,
            // by a few ulps of the activations, which the attention and Wo pass on
            expect(maxAbsDiff(await values(stepped), await values(parallel)))
              .toBeLessThanOrEqual(64 * EPS32 * Math.max(1, maxAbs(await values(parallel))) * D);
            tf.dispose([x, parallel, stepped]);
            layer.dispose();
          }), { numRuns: 8 });
      });
    }

    itLeaksNothing('(grouped-query heads) ', () => layers.flashStyleTiledAttention({ numHeads: 2, numKvHeads: 1 }) as never);
  });
}

describe('FlashStyleTiledAttention layer arguments', () => {
  beforeAll(async () => { await tf.setBackend('cpu'); });
  it('names the argument, the expectation and what it received', () => {
    expect(() => layers.flashStyleTiledAttention({ numHeads: 4, numKvHeads: 3 }))
      .toThrow(/numHeads = 4 must be a multiple of numKvHeads = 3/);
    expect(() => layers.flashStyleTiledAttention({ numHeads: 0 })).toThrow(/argument 'numHeads' must be a positive integer; received 0/);
    expect(() => layers.flashStyleTiledAttention({ numHeads: 3 }).apply(tf.zeros([1, 2, 8])))
      .toThrow(/the input width D = 8 is not divisible by numHeads = 3; set headDim/);
    expect(() => layers.flashStyleTiledAttention({ numHeads: 2 }).apply(tf.zeros([2, 8])))
      .toThrow(/expects input of shape \[B, T, D\].*Received: \[2, 8\]/);
    const layer = layers.flashStyleTiledAttention({ numHeads: 2 });
    expect(() => layer.initState(1)).toThrow(/not built yet/);
    layer.apply(tf.zeros([1, 2, 8]));
    expect(() => layer.step(tf.zeros([1, 6]) as tf.Tensor2D, layer.initState(1)))
      .toThrow(/step: argument 'x' must be a float32 tensor \[B, D\] = \[B, 8\]; received a float32 tensor of shape \[1, 6\]/);
  });
});
