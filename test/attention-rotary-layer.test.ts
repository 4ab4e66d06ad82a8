// The attention layers' `rotary` argument (MIXERS.md §8, "Layers"): the forward rotates q and k
// at positions t (restarting in each packed segment), and every decode path (step, prefill,
// preallocated caches, ExpressiveAttention's recurrent state) continues each row from its state's
// position, so that decoding reproduces the forward. The forward is checked against the layer's
// own projections composed by hand with the float64 rotary oracle; decoding against the forward.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { layers, ops, type Implementation } from '../src/index.js';
import type { AttentionLayer } from '../src/attention/attention-layer.js';
import { rotaryOracle } from './oracle/rotary.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, expectNoLeaks, maxAbs, maxAbsDiff, recordedStep, seededUniform, values } from './helpers.js';

const D = 16;
/** Head width: rotaryDim 6 < K, so channels 6 and 7 are copied. */
const K = 8;
const ROTARY = { base: 100, rotaryDim: 6, interleaved: false };

type Kind = 'flash' | 'expressive' | 'expressiveRecurrent' | 'blockSparse';

function makeLayer(kind: Kind, implementation: Implementation, extra: Record<string, unknown> = {}): AttentionLayer {
  const args = { numHeads: 4, numKvHeads: 2, headDim: K, rotary: ROTARY, implementation, ...extra };
  switch (kind) {
    case 'flash': return layers.flashStyleTiledAttention(args);
    // ε = 1 keeps s² / (ε + Σ s²) well-conditioned, so that decodeTolerance holds for it as for
    // softmax (a row nearly orthogonal to its few keys amplifies the scores' rounding by √κ;
    // docs/expressive-attention.md, "Precision of the two decodes")
    case 'expressive': return layers.expressiveAttention({ ...args, epsilon: 1 });
    case 'expressiveRecurrent': return layers.expressiveAttention({ ...args, decode: 'recurrent' });
    case 'blockSparse': return layers.blockSparse({ ...args, layout: { blockSize: 4, localBlocks: 2, globalBlocks: 1 } });
  }
}

/** The layer's weights by name (`query`, `queryBias`, …) as float32 arrays and shapes. */
function weightsOf(layer: AttentionLayer): Map<string, tf.Tensor> {
  return new Map(layer.weights.map((w) => [w.originalName.split('/').pop()!, w.read()]));
}

/**
 * The layer's forward composed by hand: its projections (tfjs ops), q and k rotated by the
 * float64 oracle at `positions` (`[B·T]`), softmax attention (the op's reference), its output
 * projection. Only the rotation differs from the layer's own path.
 */
async function composed(layer: AttentionLayer, x: tf.Tensor3D, positions: number[], segmentIds?: tf.Tensor2D): Promise<Float64Array> {
  const [B, T] = x.shape;
  const w = weightsOf(layer);
  const dense = (name: string) => tf.add(tf.matMul(x.reshape([B * T, D]), w.get(name)!), w.get(`${name}Bias`)!);
  const rotated = async (name: string, H: number) => {
    const raw = await values(dense(name));
    return tf.tensor4d(Float32Array.from(rotaryOracle(raw, { B, T, H, K }, { ...ROTARY, positions })), [B, T, H, K]);
  };
  const q = await rotated('query', 4);
  const k = await rotated('key', 2);
  const v = dense('value').reshape([B, T, 2, K]) as tf.Tensor4D;
  const o = ops.flashAttention(q, k, v, { causal: true, implementation: 'reference', ...(segmentIds ? { segmentIds } : {}) });
  const y = tf.add(tf.matMul(o.reshape([B * T, 4 * K]), w.get('output')!), w.get('outputBias')!);
  const out = await values(y);
  tf.dispose([q, k, v, o, y]);
  return out;
}

/**
 * Rotating q and k by a float32 rotary (error ≤ 3u per channel at these small positions, see
 * docs/rotary.md) instead of the float64 oracle moves each score s = scale·q·k by at most
 * 6u·scale·Σ_c|q_c||k_c| (plus a rounding of s), each softmax row's weights by at most twice the
 * largest score change in L1, each head's output by that times max|v|, and y by that times the
 * largest column sum of |W_o|. Bounded here with the row norms: Σ|q_c||k_c| ≤ ‖q‖·‖k‖.
 */
async function rotaryBound(layer: AttentionLayer, x: tf.Tensor3D): Promise<number> {
  const [B, T] = x.shape;
  const w = weightsOf(layer);
  const flat = x.reshape([B * T, D]);
  const rowNorm = async (name: string) => maxAbs(await values(tf.norm(tf.add(tf.matMul(flat, w.get(name)!), w.get(`${name}Bias`)!), 2, 1)));
  const vMax = maxAbs(await values(tf.add(tf.matMul(flat, w.get('value')!), w.get('valueBias')!)));
  const colSum = maxAbs(await values(tf.sum(tf.abs(w.get('output')!), 0)));
  const ds = 7 * EPS32 * 0.5 * (await rowNorm('query')) * (await rowNorm('key'));
  return 2 * ds * vMax * colSum + 16 * EPS32;
}

/** x `[B, T, D]` from a seed. */
const input = (seed: number, B: number, T: number) => tf.tensor3d(seededUniform(seed, B * T * D), [B, T, D]);

/** Steps a layer through x from initState(B, options), one token of every row at a time: `[B, T, D]`. */
function stepAll(layer: AttentionLayer, x: tf.Tensor3D, options?: { capacity: number }): tf.Tensor3D {
  const [B, T] = x.shape;
  let state = layer.initState(B, options);
  const outs: tf.Tensor2D[] = [];
  for (let t = 0; t < T; t++) {
    const xt = tf.tidy(() => x.slice([0, t, 0], [B, 1, D]).reshape([B, D]) as tf.Tensor2D);
    const [y, next] = layer.step(xt, state);
    xt.dispose();
    if (next !== state) tf.dispose(state);
    outs.push(y);
    state = next;
  }
  const out = tf.stack(outs, 1) as tf.Tensor3D;
  tf.dispose([outs, state]);
  return out;
}

/**
 * Decoding and the forward are float32 computations of the same function whose sums over up to
 * T keys run in different orders: each within γ-style 8·T·u of the output's scale of the other.
 */
const decodeTolerance = (y: ArrayLike<number>, T: number) => 8 * T * EPS32 * Math.max(1, maxAbs(y));
/**
 * ExpressiveAttention's recurrent decode has no such bound: its error grows with u·κ, κ the
 * condition number of a row's Σ s² (docs/expressive-attention.md, up to ~1e-2 relative on
 * near-orthogonal rows). A position off by one moves an output by the order of the output itself.
 */
const recurrentTolerance = (y: ArrayLike<number>) => 2e-2 * maxAbs(y);

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  const impl: Implementation = backend === 'webgpu' ? 'webgpu' : 'reference';
  describeOn(backend, 'attention layers with rotary positions', () => {
    it('FlashStyleTiledAttention rotates q and k at positions t: the hand-composed forward with the float64 rotary', async () => {
      const layer = makeLayer('flash', impl);
      const x = input(1, 2, 9);
      const y = await values(layer.apply(x) as tf.Tensor);
      const want = await composed(layer, x, Array.from({ length: 18 }, (_, i) => i % 9));
      expect(maxAbsDiff(y, want)).toBeLessThanOrEqual(await rotaryBound(layer, x));
      // and rotary changes the output: positions matter
      const plain = makeLayer('flash', impl, { rotary: null });
      plain.apply(x);
      plain.setWeights(layer.getWeights());
      expect(maxAbsDiff(await values(plain.apply(x) as tf.Tensor), y)).toBeGreaterThan(1e-3);
    });

    it('with segmentIds, positions restart in each segment: the hand-composed forward at segment positions', async () => {
      const layer = makeLayer('flash', impl);
      const x = input(2, 1, 10);
      const ids = tf.tensor2d([[0, 0, 0, 0, 1, 1, 1, 2, 2, 2]], [1, 10], 'int32');
      const y = await values(layer.apply(x, { segmentIds: ids }) as tf.Tensor);
      const want = await composed(layer, x, [0, 1, 2, 3, 0, 1, 2, 0, 1, 2], ids);
      expect(maxAbsDiff(y, want)).toBeLessThanOrEqual(await rotaryBound(layer, x));
      // the second segment alone, run as its own sequence, gives the same outputs
      const alone = await values(layer.apply(x.slice([0, 4, 0], [1, 3, D])) as tf.Tensor);
      expect(maxAbsDiff(alone, y.slice(4 * D, 7 * D))).toBeLessThanOrEqual(decodeTolerance(alone, 3));
    });

    for (const kind of ['flash', 'expressive', 'expressiveRecurrent', 'blockSparse'] as const) {
      it(`${kind}: stepping, a preallocated cache, and a ragged prefill then steps continue the positions`, async () => {
        const layer = makeLayer(kind, impl);
        const x = input(3, 2, 12);
        const forward = layer.apply(x) as tf.Tensor3D;
        const want = await values(forward);
        const tol = kind === 'expressiveRecurrent' ? recurrentTolerance(want) : decodeTolerance(want, 12);
        await expectNoLeaks(async () => {
          const stepped = stepAll(layer, x);
          expect(maxAbsDiff(await values(stepped), want), 'step').toBeLessThanOrEqual(tol);
          stepped.dispose();
          if (kind !== 'expressiveRecurrent') {
            const cached = stepAll(layer, x, { capacity: 16 });
            expect(maxAbsDiff(await values(cached), want), 'capacity').toBeLessThanOrEqual(tol);
            cached.dispose();
          }
          // row 0 prefills 7 tokens, row 1 only 3 (then its tokens 3..6 are padding), then both
          // step through tokens 7.. of row 0's sequence and 3.. of row 1's: each row continues
          // from its own position, as each row alone
          const prompt = x.slice([0, 0, 0], [2, 7, D]);
          const [y0, state] = layer.prefill(prompt, undefined, { lengths: [7, 3] });
          prompt.dispose();
          const rows: number[][] = [[], []];
          const yp = await values(y0);
          for (let t = 0; t < 7; t++) rows[0]!.push(...yp.slice(t * D, (t + 1) * D));
          for (let t = 0; t < 3; t++) rows[1]!.push(...yp.slice((7 + t) * D, (8 + t) * D));
          let s = state;
          for (let i = 0; i < 5; i++) {
            const xt = tf.tidy(() => tf.stack([x.slice([0, 7 + i, 0], [1, 1, D]).reshape([D]), x.slice([1, 3 + i, 0], [1, 1, D]).reshape([D])]) as tf.Tensor2D);
            const [yt, next] = layer.step(xt, s as never);
            const v = await values(yt);
            rows[0]!.push(...v.slice(0, D));
            rows[1]!.push(...v.slice(D));
            tf.dispose([xt, yt]);
            if (next !== s) tf.dispose(s as never);
            s = next;
          }
          tf.dispose([y0, s as never]);
          expect(maxAbsDiff(rows[0]!, want.slice(0, 12 * D)), 'row 0').toBeLessThanOrEqual(tol);
          expect(maxAbsDiff(rows[1]!, want.slice(12 * D, 20 * D)), 'row 1').toBeLessThanOrEqual(tol);
        });
        forward.dispose();
      });
    }
  });
}

describeOn('webgpu', 'attention layers with rotary positions, decoding', () => {
  it('a step rotates q and k at the state\'s positions uploading nothing', async () => {
    const layer = makeLayer('flash', 'auto');
    tf.tidy(() => void layer.apply(tf.zeros([1, 1, D])));
    const x = tf.randomNormal([2, D]) as tf.Tensor2D;
    let state = layer.initState(2, { capacity: 8 });
    for (let s = 0; s < 3; s++) {
      const [y, next] = layer.step(x, state);
      y.dispose();
      if (next !== state) tf.dispose(state);
      state = next;
    }
    const { ran, uploads } = await recordedStep(() => layer.step(x, state), [x]);
    expect(ran).toContain('Rotary');
    expect(uploads).toBe(0);
    tf.dispose([x, state]);
    layer.dispose();
  });
});

describeOn('cpu', 'attention layers: the rotary argument', () => {
  it('is checked, saved in the config, and restored', () => {
    expect(() => layers.flashStyleTiledAttention({ numHeads: 2, rotary: { rotaryDim: 3 } }))
      .toThrow(/^FlashStyleTiledAttention: argument 'rotary': option 'rotaryDim' must be an even integer ≥ 2; received 3/);
    expect(() => layers.blockSparse({ numHeads: 2, rotary: { base: -1 } }))
      .toThrow(/argument 'rotary': option 'base' must be a positive finite number; received -1/);
    expect(() => layers.flashStyleTiledAttention({ numHeads: 2, rotary: { thetaBase: 10 } as never }))
      .toThrow(/unknown option 'thetaBase'/);
    // rotaryDim past K is known only once the layer is built: D = 16, 2 heads, K = 8
    const wide = layers.flashStyleTiledAttention({ numHeads: 2, rotary: { rotaryDim: 10 } });
    expect(() => wide.apply(tf.zeros([1, 2, D]))).toThrow(/rotaryDim' must be an even integer ≥ 2 and at most the head dimension K = 8; received 10/);
    const cross = layers.flashStyleTiledAttention({ numHeads: 2, rotary: {} });
    expect(() => cross.apply([tf.zeros([1, 2, D]), tf.zeros([1, 3, D])]))
      .toThrow(/argument 'rotary' applies to self-attention/);

    const layer = makeLayer('expressive', 'reference');
    const config = layer.getConfig();
    expect(config.rotary).toEqual({ base: 100, rotaryDim: 6, interleaved: false });
    const copy = new (layer.constructor as new (args: unknown) => AttentionLayer)(config);
    expect(copy.rotary).toEqual(layer.rotary);
    expect(makeLayer('flash', 'reference', { rotary: null }).getConfig().rotary).toBeNull();
  });
});
