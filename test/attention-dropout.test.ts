// Attention dropout (MIXERS.md §7, last bullet) on flashAttention, expressiveAttention and
// blockSparseAttention and on the attention layers: the reference and the kernels against the
// float64 oracles given the same keep mask, forward and gradients; the same mask for a seed,
// another for another seed; exactly the plain attention at rate 0; the mean over seeds
// approaching the undropped output; the TypeScript and WGSL hashes agreeing bit for bit; about
// 1 − p of the weights kept; dropout in training only.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { MultiHeadAttention, layers, ops } from '../src/index.js';
import type { AttentionLayer } from '../src/attention/attention-layer.js';
import { dropoutKeeps, dropoutRows, dropoutThreshold, type Dropout } from '../src/attention/dropout.js';
import { ATTENTION_SPLITS_FLAG } from '../src/attention/tile-splits.js';
import { ATTENTION_DKV_FLAG, ATTENTION_DQ_FLAG, ATTENTION_FORWARD_FLAG, dpByBlocks } from '../src/attention/kernel-source.js';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import {
  blockSparseMask, expressiveAttentionGradOracle, expressiveAttentionOracle, softmaxAttentionGradOracle,
  softmaxAttentionOracle, type AttentionShape, type KeepFn,
} from './oracle/attention.js';
import { EPS32, describeOn, expectNoLeaks, launchedPipelines, maxAbs, maxAbsDiff, seededUniform, values } from './helpers.js';

type Family = 'flash' | 'expressive' | 'blockSparse';
const FAMILIES: Family[] = ['flash', 'expressive', 'blockSparse'];
type Impl = 'reference' | 'webgpu';
type Result = { o: Float64Array; dq: Float64Array; dk: Float64Array; dv: Float64Array };

const SCALE = 0.4;
const EPSILON = 1e-3;
const LAYOUT = { blockSize: 4, localBlocks: 2, globalBlocks: 1, stride: 3 };

/** One op call of `family`; `extra` holds visibility and dropout options. */
function attention(family: Family, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, extra: Record<string, unknown>,
  implementation: Impl): tf.Tensor4D {
  if (family === 'flash') return ops.flashAttention(q, k, v, { scale: SCALE, implementation, ...extra });
  if (family === 'expressive') return ops.expressiveAttention(q, k, v, { scale: SCALE, epsilon: EPSILON, implementation, ...extra });
  return ops.blockSparseAttention(q, k, v, { ...LAYOUT, scale: SCALE, implementation, ...extra });
}

/** The multiplier of weight (b, h, i, j) under `d`, from the keep decision alone: 0 or 1/(1 − p). */
function keepFn(d: Dropout): KeepFn {
  return (b, h, i, j) => (dropoutKeeps(d, b, h, i, j) ? 1 / (1 - d.rate) : 0);
}

/** The float64 oracle of `family` (causal, with `kvLengths`), with `d`'s keep mask, and its gradients for dO. */
function oracle(family: Family, qs: Float32Array, ks: Float32Array, vs: Float32Array, dOs: Float32Array,
  s: AttentionShape, d: Dropout | null, kvLengths: number[]): Result {
  const keep = d ? keepFn(d) : undefined;
  const base = { causal: true, scale: SCALE, kvLengths, ...(keep ? { keep } : {}) };
  if (family === 'expressive') {
    const opts = { ...base, epsilon: EPSILON };
    return { o: expressiveAttentionOracle(qs, ks, vs, s, opts).o, ...expressiveAttentionGradOracle(qs, ks, vs, dOs, s, opts) };
  }
  const opts = family === 'blockSparse' ? { ...base, mask: blockSparseMask({ T: s.Tq, ...LAYOUT }) } : base;
  return { o: softmaxAttentionOracle(qs, ks, vs, s, opts).o, ...softmaxAttentionGradOracle(qs, ks, vs, dOs, s, opts) };
}

/** Seeded q, k, v and dO for `s`. */
function inputs(s: AttentionShape, seed: number) {
  return {
    qs: seededUniform(seed, s.B * s.Tq * s.H * s.K),
    ks: seededUniform(seed + 1, s.B * s.Tk * s.Hkv * s.K),
    vs: seededUniform(seed + 2, s.B * s.Tk * s.Hkv * s.K),
    dOs: seededUniform(seed + 3, s.B * s.Tq * s.H * s.K),
  };
}

/** The op's output and its gradients for dO, in float64, leaving no tensor behind. */
async function computed(family: Family, impl: Impl, s: AttentionShape, seed: number, extra: Record<string, unknown>): Promise<Result> {
  const { qs, ks, vs, dOs } = inputs(s, seed);
  return expectNoLeaks(async () => {
    const outs = tf.tidy(() => {
      const f = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
        attention(family, q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, extra, impl);
      const q = tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]);
      const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
      const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
      return [f(q, k, v), ...tf.grads(f)([q, k, v], tf.tensor4d(dOs, [s.B, s.Tq, s.H, s.K]))];
    });
    const [o, dq, dk, dv] = await Promise.all(outs.map(async (t) => Float64Array.from(await t.data())));
    tf.dispose(outs);
    return { o: o!, dq: dq!, dk: dk!, dv: dv! };
  });
}

/** Checks `got` against the oracle with the same keep mask, within a float32 bound derived from the sums' lengths. */
function expectMatchesOracle(name: string, got: Result, want: Result, s: AttentionShape): void {
  for (const part of ['o', 'dq', 'dk', 'dv'] as const) {
    // float32 sums of up to Tk (Tq·H/Hkv for dk, dv) products of K-term dots: a γ_n bound
    const terms = (part === 'dk' || part === 'dv' ? s.Tq * (s.H / s.Hkv) : s.Tk) + s.K;
    const tol = 8 * terms * EPS32 * Math.max(1, maxAbs(want[part]));
    const err = maxAbsDiff(got[part], want[part]);
    expect(err, `${name}: ${part} error ${err} > ${tol}`).toBeLessThanOrEqual(tol);
  }
}

/** Whether two results are equal bit for bit. */
function identical(a: Result, b: Result): boolean {
  return (['o', 'dq', 'dk', 'dv'] as const).every((p) => a[p].every((x, n) => Object.is(x, b[p][n])));
}

const SMALL: AttentionShape = { B: 2, Tq: 9, Tk: 9, H: 4, Hkv: 2, K: 4 };
const SMALL_LENGTHS = [9, 6];

function opsBehave(impl: Impl, s: AttentionShape, kvLengths: number[]): void {
  it.each(FAMILIES)('%s: forward and gradients match the float64 oracle given the same keep mask', async (family) => {
    for (const [rate, seed] of [[0.3, 11], [0.75, 4294967295]] as const) {
      const d = { rate, seed };
      const got = await computed(family, impl, s, 5, { kvLengths, dropout: rate, seed });
      const { qs, ks, vs, dOs } = inputs(s, 5);
      expectMatchesOracle(`${family} p=${rate}`, got, oracle(family, qs, ks, vs, dOs, s, d, kvLengths), s);
    }
  });

  it.each(FAMILIES)('%s: a seed gives the same result bit for bit, another seed another; rate 0 is the plain op', async (family) => {
    const extra = { kvLengths };
    const a = await computed(family, impl, s, 9, { ...extra, dropout: 0.4, seed: 123 });
    const b = await computed(family, impl, s, 9, { ...extra, dropout: 0.4, seed: 123 });
    const c = await computed(family, impl, s, 9, { ...extra, dropout: 0.4, seed: 124 });
    expect(identical(a, b)).toBe(true);
    expect(maxAbsDiff(a.o, c.o)).toBeGreaterThan(0);
    const plain = await computed(family, impl, s, 9, extra);
    expect(identical(await computed(family, impl, s, 9, { ...extra, dropout: 0, seed: 7 }), plain)).toBe(true);
    expect(identical(await computed(family, impl, s, 9, { ...extra, dropout: 0 }), plain)).toBe(true);
  });
}

describeOn('cpu', 'attention dropout: the references', () => {
  opsBehave('reference', SMALL, SMALL_LENGTHS);

  it('keeps about 1 − p of the weights, each scaled by 1/(1 − p)', async () => {
    const s = { B: 2, Tq: 64, Tk: 64, H: 4, Hkv: 1, K: 1 };
    const n = s.B * s.H * s.Tq * s.Tk;
    for (const rate of [0.1, 0.5, 0.9]) {
      const data = dropoutRows({ rate, seed: 99 }, s, 0, s.Tq, Int32Array.from({ length: s.Tk }, (_, j) => j));
      const scale = Math.fround(1 / (1 - rate));
      expect(data.every((x) => x === 0 || x === scale)).toBe(true);
      const kept = data.filter((x) => x > 0).length / n;
      // binomial: 6 standard deviations of the fraction of n draws kept with probability 1 − p
      const bound = 6 * Math.sqrt((rate * (1 - rate)) / n);
      expect(Math.abs(kept - (1 - rate)), `p = ${rate}: kept ${kept}`).toBeLessThanOrEqual(bound);
    }
    // the threshold is round(p·2³²), never past the largest u32
    expect(dropoutThreshold(0.5)).toBe(2 ** 31);
    expect(dropoutThreshold(1 - 2 ** -40)).toBe(2 ** 32 - 1);
  });

  it.each(['flash', 'expressive'] as const)('%s: the mean over seeds approaches the undropped output', async (family) => {
    const s: AttentionShape = { B: 1, Tq: 6, Tk: 6, H: 2, Hkv: 1, K: 4 };
    const rate = 0.3;
    const seeds = 400;
    const { qs, ks, vs, dOs } = inputs(s, 21);
    const plain = oracle(family, qs, ks, vs, dOs, s, null, [s.Tk]).o;
    // the variance of one output entry over seeds, were the keep decisions independent draws:
    // o_c = Σ_j a_j·m_j·v_jc, Var m_j = p/(1 − p), so Var o_c = p/(1 − p)·Σ_j a_j²·v_jc²; the
    // undropped weights a_j are the oracle's output for one-hot values
    const variance = new Float64Array(plain.length);
    for (let j = 0; j < s.Tk; j++) {
      const oneHot = new Float32Array(vs.length);
      for (let c = 0; c < s.K; c++) oneHot[j * s.K + c] = 1;
      const a = oracle(family, qs, ks, oneHot, dOs, s, null, [s.Tk]).o;
      for (let n = 0; n < plain.length; n++) variance[n] += (rate / (1 - rate)) * a[n]! ** 2 * vs[j * s.K + (n % s.K)]! ** 2;
    }
    const sum = new Float64Array(plain.length);
    await expectNoLeaks(async () => {
      const q = tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]);
      const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
      const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
      for (let seed = 0; seed < seeds; seed++) {
        const o = attention(family, q, k, v, { dropout: rate, seed }, 'reference');
        (await o.data()).forEach((x, n) => { sum[n] += x; });
        o.dispose();
      }
      tf.dispose([q, k, v]);
    });
    plain.forEach((want, n) => {
      // 6 standard deviations of a mean of `seeds` draws, plus float32 rounding
      const bound = 6 * Math.sqrt(variance[n]! / seeds) + 64 * EPS32;
      expect(Math.abs(sum[n]! / seeds - want), `entry ${n}`).toBeLessThanOrEqual(bound);
    });
  });

  it.each(FAMILIES)('%s: rejects a bad rate or seed, naming the op and the option', (family) => {
    const q = tf.zeros([1, 4, 1, 4]) as tf.Tensor4D;
    const op = { flash: 'flashAttention', expressive: 'expressiveAttention', blockSparse: 'blockSparseAttention' }[family];
    const call = (extra: Record<string, unknown>) => () => attention(family, q, q, q, extra, 'reference');
    for (const dropout of [-0.1, 1, Number.NaN, '0.1']) {
      expect(call({ dropout, seed: 1 })).toThrow(new RegExp(`${op}: option 'dropout' must be a number in \\[0, 1\\); received`));
    }
    for (const seed of [1.5, -1, 2 ** 32, 'a']) {
      expect(call({ dropout: 0.1, seed })).toThrow(new RegExp(`${op}: option 'seed' must be an integer in 0\\.\\.4294967295; received`));
    }
    expect(call({ dropout: 0.1 })).toThrow(new RegExp(`${op}: option 'seed' .* is required when 'dropout' > 0`));
    q.dispose();
  });
});

/** The values of `t`, which is then disposed. */
async function taken(t: tf.Tensor): Promise<Float64Array> {
  const v = await values(t);
  t.dispose();
  return v;
}

const LAYERS = {
  FlashStyleTiledAttention: (dropout: number) => layers.flashStyleTiledAttention({ numHeads: 2, dropout }),
  ExpressiveAttention: (dropout: number) => layers.expressiveAttention({ numHeads: 2, dropout }),
  BlockSparse: (dropout: number) => layers.blockSparse({ numHeads: 2, dropout, layout: { blockSize: 2, localBlocks: 2 } }),
};

describeOn('cpu', 'attention dropout: the layers', () => {
  it.each(Object.keys(LAYERS) as (keyof typeof LAYERS)[])('%s drops only in training, with a fresh mask per call', async (name) => {
    const x = tf.tensor3d(seededUniform(3, 2 * 6 * 8), [2, 6, 8]);
    const layer = LAYERS[name](0.5) as AttentionLayer;
    const plain = LAYERS[name](0) as AttentionLayer;
    tf.dispose([layer.apply(x) as tf.Tensor, plain.apply(x) as tf.Tensor]);
    plain.setWeights(layer.getWeights());
    await expectNoLeaks(async () => {
      const inference = await taken(tf.tidy(() => layer.apply(x) as tf.Tensor));
      expect(maxAbsDiff(inference, await taken(tf.tidy(() => plain.apply(x) as tf.Tensor)))).toBe(0);
      const first = await taken(tf.tidy(() => layer.apply(x, { training: true }) as tf.Tensor));
      const second = await taken(tf.tidy(() => layer.apply(x, { training: true }) as tf.Tensor));
      expect(maxAbsDiff(first, inference)).toBeGreaterThan(0);
      expect(maxAbsDiff(first, second)).toBeGreaterThan(0);
      expect(first.every(Number.isFinite)).toBe(true);
    });
    expect(layer.getConfig().dropout).toBe(0.5);
    expect(() => LAYERS[name](1)).toThrow(/argument 'dropout' must be a number in \[0, 1\); received 1/);
    tf.dispose([x, layer.getWeights(), plain.getWeights()]);
  });

  it('MultiHeadAttention trains with dropout: a seeded run repeats, gradients flow, inference is unchanged', async () => {
    const x = tf.tensor3d(seededUniform(8, 2 * 5 * 6), [2, 5, 6]);
    const make = () => new MultiHeadAttention({ numHeads: 2, keyDim: 3, dropout: 0.5, seed: 17 });
    const a = make();
    const b = make();
    tf.dispose([a.apply(x, { value: x }) as tf.Tensor, b.apply(x, { value: x }) as tf.Tensor]);
    b.setWeights(a.getWeights());
    await expectNoLeaks(async () => {
      const inference = await taken(tf.tidy(() => a.apply(x, { value: x }) as tf.Tensor));
      const trainA = await taken(tf.tidy(() => a.apply(x, { value: x, training: true }) as tf.Tensor));
      const trainB = await taken(tf.tidy(() => b.apply(x, { value: x, training: true }) as tf.Tensor));
      expect(maxAbsDiff(trainA, trainB)).toBe(0);
      expect(maxAbsDiff(trainA, inference)).toBeGreaterThan(0);
      // the next call steps the seed
      const again = await taken(tf.tidy(() => a.apply(x, { value: x, training: true }) as tf.Tensor));
      expect(maxAbsDiff(again, trainA)).toBeGreaterThan(0);
      const { value, grads } = tf.variableGrads(() => tf.sum(a.apply(x, { value: x, training: true }) as tf.Tensor) as tf.Scalar,
        a.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val));
      const gradValues = await Promise.all(Object.values(grads).map((g) => values(g)));
      expect(gradValues.every((g) => g.every(Number.isFinite)) && gradValues.some((g) => maxAbs(g) > 0)).toBe(true);
      tf.dispose([value, ...Object.values(grads)]);
    });
    tf.dispose([x, a.getWeights(), b.getWeights()]);
  });
});

describeOn('webgpu', 'attention dropout: the kernels', () => {
  // crosses a 64-row query tile and a 32-key tile
  opsBehave('webgpu', { B: 2, Tq: 70, Tk: 70, H: 2, Hkv: 1, K: 8 }, [70, 41]);

  // each workgroup of a split pass drops by the pair's hash, whatever chunk it holds
  it.each(FAMILIES)('%s: with the tiled passes split into 3 chunks, forward and gradients match the oracle', async (family) => {
    const s = { B: 2, Tq: 70, Tk: 70, H: 2, Hkv: 1, K: 8 };
    const kvLengths = [70, 41];
    const d = { rate: 0.3, seed: 17 };
    tf.env().set(ATTENTION_SPLITS_FLAG, 3);
    try {
      const got = await computed(family, 'webgpu', s, 6, { kvLengths, dropout: d.rate, seed: d.seed });
      const { qs, ks, vs, dOs } = inputs(s, 6);
      expectMatchesOracle(`${family} split`, got, oracle(family, qs, ks, vs, dOs, s, d, kvLengths), s);
    } finally {
      tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
    }
  });

  // the passes by blocks of scores (which 'auto' does not take yet), all three at once (each is
  // checked against the oracle whatever builds the others): the forward weighs each row's keys as
  // the rows' forward does, then multiplies in the pair's hash; dQ multiplies each dP by it, dK/dV
  // each dP and weight. K = 16, the least they take, and 64, where a 32 KB adapter has dQ and
  // dK/dV form dP by rows (dpByBlocks)
  const blockFlags = [ATTENTION_FORWARD_FLAG, ATTENTION_DQ_FLAG, ATTENTION_DKV_FLAG];
  for (const K of [16, 64]) {
    it.each(FAMILIES)(`%s: with every pass by blocks of scores at K = ${K}, forward and gradients match the oracle`, async (family) => {
      const s = { B: 2, Tq: 70, Tk: 70, H: 2, Hkv: 1, K };
      const kvLengths = [70, 41];
      const d = { rate: 0.3, seed: 19 };
      for (const flag of blockFlags) tf.env().set(flag, 'blocks');
      try {
        let got: Result | undefined;
        const ran = await launchedPipelines(async () => { got = await computed(family, 'webgpu', s, 7, { kvLengths, dropout: d.rate, seed: d.seed }); });
        const { qs, ks, vs, dOs } = inputs(s, 7);
        expectMatchesOracle(`${family} by blocks`, got!, oracle(family, qs, ks, vs, dOs, s, d, kvLengths), s);
        // (the forward runs twice: once alone, once under tf.grads)
        const tiled = new Set(ran.filter((label) => /(Forward|BackwardDq|BackwardDkv)/.test(label)));
        const dp = (pass: 'dq' | 'dkv') => (dpByBlocks(tf.backend() as WebGPUBackend, pass, K) ? 'Dp' : '');
        expect([...tiled].map((label) => label.replace(/^.*?(Forward|BackwardDq|BackwardDkv)/, '$1')).sort()).toEqual(
          [`BackwardDkvBlocks${dp('dkv')}K${K}R4`, `BackwardDqBlocks${dp('dq')}K${K}R4`, `ForwardBlocksK${K}R4`]);
      } finally {
        for (const flag of blockFlags) tf.env().set(flag, 'auto');
      }
    });
  }

  it('the WGSL hash keeps exactly the weights the TypeScript hash keeps', async () => {
    // q = 0 makes every weight 1/Tk, and one-hot values v_j = e_j read o_i[j] = m_ij/Tk: the mask itself
    const s = { B: 2, Tq: 16, Tk: 16, H: 2, Hkv: 2, K: 16 };
    const q = tf.zeros([s.B, s.Tq, s.H, s.K]) as tf.Tensor4D;
    const v = tf.tidy(() => tf.tile(tf.eye(s.Tk).reshape([1, s.Tk, 1, s.K]), [s.B, 1, s.Hkv, 1])) as tf.Tensor4D;
    for (const [rate, seed] of [[0.5, 0], [0.2, 3], [0.9, 2 ** 32 - 1], [0.05, 2 ** 31 + 12345]] as const) {
      const o = await taken(tf.tidy(() => ops.flashAttention(q, q, v, { causal: false, dropout: rate, seed, implementation: 'webgpu' })));
      let mismatches = 0;
      for (let b = 0; b < s.B; b++) for (let i = 0; i < s.Tq; i++) for (let h = 0; h < s.H; h++) for (let j = 0; j < s.Tk; j++) {
        const kept = o[((b * s.Tq + i) * s.H + h) * s.K + j]! > 0.5 / s.Tk;
        if (kept !== dropoutKeeps({ rate, seed }, b, h, i, j)) mismatches++;
      }
      expect(mismatches, `p = ${rate}, seed ${seed}`).toBe(0);
    }
    tf.dispose([q, v]);
  });

  it('flashAttention with dropout takes the tiled path whatever the split', async () => {
    const s: AttentionShape = { B: 1, Tq: 2, Tk: 600, H: 2, Hkv: 1, K: 8 };
    const tiled = await computed('flash', 'webgpu', s, 31, { dropout: 0.2, seed: 5, split: 'never' });
    for (const split of ['always', 'auto']) {
      expect(identical(await computed('flash', 'webgpu', s, 31, { dropout: 0.2, seed: 5, split }), tiled)).toBe(true);
    }
  });

  it('a layer trains with dropout on the kernels', async () => {
    const x = tf.tensor3d(seededUniform(4, 2 * 40 * 8), [2, 40, 8]);
    const layer = layers.flashStyleTiledAttention({ numHeads: 2, dropout: 0.3, implementation: 'webgpu' });
    tf.dispose(layer.apply(x) as tf.Tensor);
    await expectNoLeaks(async () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
        layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val));
      const gradValues = await Promise.all(Object.values(grads).map((g) => values(g)));
      expect(gradValues.every((g) => g.every(Number.isFinite))).toBe(true);
      tf.dispose([value, ...Object.values(grads)]);
    });
    x.dispose();
  });
});
