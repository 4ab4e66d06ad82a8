// The attention layers' KV cache (issue 14): prefill and step from concatenating and
// preallocated caches, ragged rows, the ring of a windowed layer, in-place writes on webgpu,
// the full-cache error and leaks. The expectation is always the layer's own parallel forward
// (`apply`) on each row's real tokens alone, a path that shares no decode code.
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { expect, it } from 'vitest';
import { layers, type KVCacheState } from '../src/index.js';
import type { AttentionLayer } from '../src/attention/attention-layer.js';
import { ownsData } from '../src/webgpu/runtime.js';
import { MIN_GROWN_SLOTS, emptyCache, growthOf, writeKernel, writeReference } from '../src/attention/kv-cache.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, expectNoLeaks, launchedPipelines, maxAbs, maxAbsDiff, mulberry32, recordedStep } from './helpers.js';

const D = 12;
const H = 4;
const HKV = 2;
const K = 4;

type Kind = 'FlashStyleTiledAttention' | 'BlockSparse' | 'ExpressiveAttention';
const KINDS: Kind[] = ['FlashStyleTiledAttention', 'BlockSparse', 'ExpressiveAttention'];

/** A built layer of `kind` (GQA, K = 4), with a window where asked (BlockSparse has none). */
function make(kind: Kind, window?: number): AttentionLayer {
  const heads = { numHeads: H, numKvHeads: HKV, headDim: K };
  const w = window === undefined ? {} : { window };
  const layer: AttentionLayer = kind === 'FlashStyleTiledAttention' ? layers.flashStyleTiledAttention({ ...heads, ...w })
    : kind === 'BlockSparse'
      // sparse at these lengths (up to ~20 tokens): a local block, a sink and a stride
      ? layers.blockSparse({ ...heads, layout: { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 3 } })
      // ε = 1 keeps s² / (ε + Σ s²) well-conditioned, so that `bound` below holds for it as for
      // softmax; at ε = 10⁻⁶ a query nearly orthogonal to a window's few keys amplifies the
      // scores' rounding by √κ (docs/expressive-attention.md, "Precision of the two decodes")
      : layers.expressiveAttention({ ...heads, ...w, decode: 'cache', epsilon: 1 });
  tf.tidy(() => { layer.apply(tf.zeros([1, 1, D])); });
  return layer;
}

/** What a script does to the state: a prefill of T tokens (row b's first lengths[b] real), or a step. */
type Call = { prefill: number[]; T: number; asTensor?: boolean } | { step: true };

/** Each row's real tokens in order and the outputs the decode gave for them. */
interface Rows { tokens: number[][][]; outputs: number[][][] }

/**
 * Runs `calls` from `state` on random tokens, recording per row the real tokens and their
 * outputs; disposes every state it leaves behind (a concatenating cache's previous ones) and
 * returns the last.
 */
async function run(layer: AttentionLayer, B: number, calls: Call[], state: KVCacheState | undefined, seed: number):
Promise<{ rows: Rows; state: KVCacheState }> {
  const next = mulberry32(seed);
  const rows: Rows = { tokens: [...Array(B)].map(() => []), outputs: [...Array(B)].map(() => []) };
  for (const call of calls) {
    const T = 'step' in call ? 1 : call.T;
    const data = Float32Array.from({ length: B * T * D }, () => 2 * next() - 1);
    const lengths = 'step' in call ? new Array<number>(B).fill(1) : call.prefill;
    let y: tf.Tensor;
    let after: KVCacheState;
    if ('step' in call) {
      const x = tf.tensor2d(data, [B, D]);
      [y, after] = layer.step(x, state ?? layer.initState(B));
      x.dispose();
    } else {
      // padding holds NaN: it must reach no real output and no state
      for (let b = 0; b < B; b++) for (let t = lengths[b]!; t < T; t++) data.fill(NaN, (b * T + t) * D, (b * T + t + 1) * D);
      const x = tf.tensor3d(data, [B, T, D]);
      const given = call.asTensor ? tf.tensor1d(lengths, 'int32') : lengths;
      [y, after] = layer.prefill(x, state, { lengths: given });
      tf.dispose([x, given as tf.Tensor]);
    }
    const out = await y.data();
    y.dispose();
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const at = (b * T + t) * D;
        const o = [...out.slice(at, at + D)];
        // outputs at padded positions are unspecified but finite
        expect(o.every(Number.isFinite)).toBe(true);
        if (t < lengths[b]!) {
          rows.tokens[b]!.push([...data.slice(at, at + D)]);
          rows.outputs[b]!.push(o);
        }
      }
    }
    if (state && after !== state) tf.dispose(state);
    state = after;
  }
  return { rows, state: state! };
}

/**
 * The worst difference between the decode's outputs and the layer's parallel forward on each
 * row's real tokens alone, and the scale of the latter.
 */
async function againstForward(layer: AttentionLayer, rows: Rows): Promise<{ diff: number; scale: number }> {
  let diff = 0;
  let scale = 0;
  for (let b = 0; b < rows.tokens.length; b++) {
    const L = rows.tokens[b]!.length;
    if (L === 0) continue;
    const x = tf.tensor3d(rows.tokens[b]!.flat(), [1, L, D]);
    const y = layer.apply(x) as tf.Tensor;
    const want = await y.data();
    tf.dispose([x, y]);
    scale = Math.max(scale, maxAbs(want));
    rows.outputs[b]!.flat().forEach((v, n) => { diff = Math.max(diff, Math.abs(v - want[n]!)); });
  }
  return { diff, scale };
}

/**
 * The decode and the forward compute the same sums in other orders and shapes: the
 * projections of [B, D] or [B, T, D] rows (D terms), the scores (K terms), the softmax or the
 * squared normalisation over at most `n` keys, and Wo (H·K terms). Each float32 sum of m
 * terms may differ by γ_m ≈ m·ε relative to its scale between two orders; the four sums
 * compose, so the bound is their sum, times 4 for the growth of relative errors through the
 * exponential (or the square) and the normalisation, on the output's scale.
 */
function bound(scale: number, n: number): number {
  return 4 * (D + K + n + H * K) * EPS32 * Math.max(1, scale);
}

/** Steps a one-row concatenating cache through `tokens`: the outputs, and the keys and values it holds. */
async function stepAlone(layer: AttentionLayer, tokens: number[][]): Promise<{ outputs: number[]; keys: number[]; values: number[] }> {
  let state = layer.initState(1);
  const outputs: number[] = [];
  for (const token of tokens) {
    const x = tf.tensor2d(token, [1, D]);
    const [y, next] = layer.step(x, state);
    outputs.push(...await y.data());
    tf.dispose([x, y, state]);
    state = next;
  }
  const [keys, values] = [[...await state.keys.data()], [...await state.values.data()]];
  tf.dispose(state);
  return { outputs, keys, values };
}

/** Row b's first `n` cached keys (or values) of `[B, S, Hkv, K]`, in position order (a ring: slot p mod S). */
async function cachedRow(t: tf.Tensor4D, b: number, n: number, ring: boolean): Promise<number[]> {
  const [, S, Hkv, K_] = t.shape;
  const all = await t.data();
  const F = Hkv * K_;
  const out: number[] = [];
  for (let p = ring ? Math.max(0, n - S) : 0; p < n; p++) {
    const slot = ring ? p % S : p;
    out.push(...all.slice((b * S + slot) * F, (b * S + slot + 1) * F));
  }
  return out;
}

const maxDiff = (a: number[], b: number[]) => {
  expect(a.length).toBe(b.length);
  return Math.max(0, ...a.map((v, n) => Math.abs(v - b[n]!)));
};

async function positionsOf(state: KVCacheState): Promise<number[]> {
  return [...await state.positions.data()];
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'attention KV cache', () => {
    // cpu and wasm write in JS, webgpu (and any taped call) by tfjs ops: each against the slots
    // computed here, in float64 from the definition
    it('writeReference writes token i < n of row b to slot p + i (mod S in a ring, the latest winning) and keeps the rest', async () => {
      const next = mulberry32(29);
      for (const [Hkv, K_, S, ring] of [[1, 3, 9, false], [2, 2, 4, true]] as const) {
        const [B, T] = [4, 6];
        const positions = ring ? [0, 3, 5, 2] : [0, 3, 2, 1];
        const lengths = [0, 6, 2, 5];
        const row = Hkv * K_;
        const fill = Float32Array.from({ length: B * S * row }, () => next());
        const tokens = Float32Array.from({ length: B * T * row }, () => next());
        const want = Array.from(fill);
        for (let b = 0; b < B; b++) {
          for (let i = 0; i < lengths[b]!; i++) {
            const slot = ring ? (positions[b]! + i) % S : positions[b]! + i;
            if (slot < S) for (let c = 0; c < row; c++) want[(b * S + slot) * row + c] = tokens[(b * T + i) * row + c]!;
          }
        }
        await expectNoLeaks(async () => {
          const inputs = [tf.tensor4d(fill, [B, S, Hkv, K_]), tf.tensor4d(tokens, [B, T, Hkv, K_]),
            tf.tensor1d(positions, 'int32'), tf.tensor1d(lengths, 'int32')] as const;
          const [written] = writeReference([inputs[0]], [inputs[1]], inputs[2], inputs[3], ring);
          expect([...await written!.data()], `${ring ? 'ring' : 'linear'}, S = ${S}`).toEqual(want);
          tf.dispose([written!, ...inputs]);
        });
      }
    });

    for (const kind of KINDS) {
      for (const capacity of [undefined, 32] as const) {
        const what = capacity === undefined ? 'concatenating' : `capacity ${capacity}`;
        it(`${kind} (${what}): ragged prefill from no state, another with the state, then steps, equal each row's forward alone`, async () => {
          const layer = make(kind);
          const B = 4;
          const start = capacity === undefined ? undefined : layer.initState(B, { capacity });
          const { rows, state } = await run(layer, B, [
            { prefill: [5, 0, 3, 1], T: 5 },
            { prefill: [2, 4, 0, 4], T: 4 },
            { step: true }, { step: true },
            { prefill: [1, 1, 1, 0], T: 1 },
            { step: true },
          ], start, 1);
          expect(await positionsOf(state)).toEqual([11, 8, 7, 8]);
          if (capacity !== undefined) expect(state).toBe(start);
          const { diff, scale } = await againstForward(layer, rows);
          expect(diff).toBeLessThanOrEqual(bound(scale, 11));
          tf.dispose(state);
          layer.dispose();
        });
      }

      for (const [capacity, window] of [[undefined, undefined], [24, undefined], [24, 3]] as const) {
        if (kind === 'BlockSparse' && window !== undefined) continue;
        const what = `${capacity === undefined ? 'concatenating' : `capacity ${capacity}`}${window === undefined ? '' : `, window ${window} (a ring)`}`;
        it(`${kind} (${what}): prefill equals stepping each row's real tokens alone, outputs and cache, with and without a state`, async () => {
          const layer = make(kind, window);
          const B = 4;
          const start = capacity === undefined ? undefined : layer.initState(B, { capacity });
          // lengths 0 and T in both prefills; the second continues from the first's ragged state
          const { rows, state } = await run(layer, B, [{ prefill: [0, 3, 6, 1], T: 6 }, { prefill: [5, 0, 5, 2], T: 5 }], start, 5);
          const positions = await positionsOf(state);
          expect(positions).toEqual([5, 3, 11, 3]);
          for (let b = 0; b < B; b++) {
            const alone = await stepAlone(layer, rows.tokens[b]!);
            const scale = Math.max(1, maxAbs(alone.outputs));
            expect(maxDiff(rows.outputs[b]!.flat(), alone.outputs)).toBeLessThanOrEqual(bound(scale, 11));
            // keys and values are the same projections of the same tokens, in [B·T, D] or [1, D]
            // products whose D-term sums may round in another order: γ_D of their scale
            for (const name of ['keys', 'values'] as const) {
              const got = await cachedRow(state[name], b, positions[b]!, state.ring);
              const want = alone[name].slice(window === undefined ? 0 : Math.max(0, positions[b]! - window) * HKV * K);
              expect(maxDiff(got, want)).toBeLessThanOrEqual(2 * D * EPS32 * Math.max(1, maxAbs(want)));
            }
          }
          tf.dispose(state);
          layer.dispose();
        });
      }

      it(`${kind}: a preallocated cache gives the concatenating cache's outputs and positions, and leaks nothing`, async () => {
        const layer = make(kind);
        const calls: Call[] = [{ prefill: [3, 6], T: 6 }, { step: true }, { prefill: [4, 1], T: 4, asTensor: true }, { step: true }];
        const concatenating = await run(layer, 2, calls, undefined, 7);
        const before = tf.memory().numTensors;
        const preallocated = await run(layer, 2, calls, layer.initState(2, { capacity: 20 }), 7);
        expect(await positionsOf(preallocated.state)).toEqual(await positionsOf(concatenating.state));
        expect(await positionsOf(preallocated.state)).toEqual([9, 9]);
        // only the new state's three tensors remain
        expect(tf.memory().numTensors).toBe(before + 3);
        // the same tokens through the same attention over the same keys; the caches differ in
        // their lengths (Tk), which changes only how the kernels cut the keys into tiles
        const a = preallocated.rows.outputs.flat(2);
        const b = concatenating.rows.outputs.flat(2);
        const diff = Math.max(...a.map((v, n) => Math.abs(v - b[n]!)));
        expect(diff).toBeLessThanOrEqual(bound(maxAbs(b), 9));
        tf.dispose([preallocated.state, concatenating.state]);
        layer.dispose();
      });

      it(`${kind}: a batch of rows at different positions steps as each row alone`, async () => {
        const layer = make(kind);
        const B = 3;
        const state = layer.initState(B, { capacity: 24 });
        const { rows } = await run(layer, B, [{ prefill: [7, 2, 0], T: 7 }, ...Array<Call>(6).fill({ step: true })], state, 3);
        expect(await positionsOf(state)).toEqual([13, 8, 6]);
        const { diff, scale } = await againstForward(layer, rows);
        expect(diff).toBeLessThanOrEqual(bound(scale, 13));
        tf.dispose(state);
        layer.dispose();
      });
    }

    for (const kind of ['FlashStyleTiledAttention', 'ExpressiveAttention'] as const) {
      it(`${kind} with a window: the cache is a ring of w slots, and prefill and steps past it equal the forward`, async () => {
        const w = 3;
        const layer = make(kind, w);
        const B = 3;
        const state = layer.initState(B, { capacity: 16 });
        expect(state.ring).toBe(true);
        expect(state.keys.shape).toEqual([B, w, HKV, K]);
        // prompts longer and shorter than the ring, prefills from a ring that has wrapped, and steps past it
        const { rows } = await run(layer, B, [
          { prefill: [5, 1, 0], T: 5 }, { step: true }, { step: true },
          { prefill: [2, 4, 5], T: 5 }, { step: true }, { prefill: [1, 0, 1], T: 1 }, ...Array<Call>(4).fill({ step: true }),
        ], state, 11);
        expect(await positionsOf(state)).toEqual([15, 12, 13]);
        const { diff, scale } = await againstForward(layer, rows);
        expect(diff).toBeLessThanOrEqual(bound(scale, 15));
        // the same as stepping a concatenating cache, whose window reads its last w keys
        const ref = await run(layer, B, [
          { prefill: [5, 1, 0], T: 5 }, { step: true }, { step: true },
          { prefill: [2, 4, 5], T: 5 }, { step: true }, { prefill: [1, 0, 1], T: 1 }, ...Array<Call>(4).fill({ step: true }),
        ], undefined, 11);
        const a = rows.outputs.flat(2);
        const b = ref.rows.outputs.flat(2);
        expect(Math.max(...a.map((v, n) => Math.abs(v - b[n]!)))).toBeLessThanOrEqual(bound(maxAbs(b), w));
        tf.dispose([state, ref.state]);
        layer.dispose();
      });
    }

    it('a full cache throws, naming the layer, the capacity and the row; tensor lengths count as T', async () => {
      const layer = make('FlashStyleTiledAttention');
      const state = layer.initState(2, { capacity: 4 });
      const [y1] = layer.prefill(tf.zeros([2, 3, D]), state, { lengths: [3, 1] });
      const [y2] = layer.step(tf.ones([2, D]), state);
      expect(() => layer.step(tf.ones([2, D]), state)).toThrow(
        /^FlashStyleTiledAttention.step: the key\/value cache is full: it holds capacity = 4 tokens a row, and row 0, at position 4, cannot take 1 more\. Make the state with a larger initState\(2, \{ capacity \}\), or give the layer a window/);
      // the rows hold 1 token each, but a tensor's lengths are not read: the host counts T = 4, and 4 + 1 may not fit
      const other = layer.initState(2, { capacity: 4 });
      const lengths = tf.tensor1d([1, 1], 'int32');
      const [y3] = layer.prefill(tf.zeros([2, 4, D]), other, { lengths });
      expect(() => layer.step(tf.ones([2, D]), other)).toThrow(/may overflow: it holds capacity = 4 tokens a row, and a row may reach 5 \(an earlier prefill took its lengths as a tensor/);
      expect(other.counted).toEqual({ rows: undefined, max: 4 });
      expect(await positionsOf(other)).toEqual([1, 1]);
      const blockSparse = make('BlockSparse');
      const small = blockSparse.initState(1, { capacity: 2 });
      expect(() => blockSparse.prefill(tf.zeros([1, 3, D]), small)).toThrow(
        /^BlockSparse.prefill: the key\/value cache is full: .* row 0, at position 0, cannot take 3 more\. Make the state with a larger initState\(1, \{ capacity \}\)\.$/);
      tf.dispose([y1, y2, y3, state, other, lengths, small]);
      layer.dispose();
      blockSparse.dispose();
    });

    it('initState checks its options; step and prefill check the state', () => {
      const layer = make('FlashStyleTiledAttention');
      expect(() => layer.initState(1, { capacity: 0 })).toThrow(/^FlashStyleTiledAttention.initState: option 'capacity' must be a positive integer; received 0/);
      expect(() => layer.initState(1, { size: 3 } as never)).toThrow(/^FlashStyleTiledAttention.initState: unknown option 'size'; the options are 'capacity'/);
      const state = layer.initState(2, { capacity: 4 });
      expect(() => layer.prefill(tf.zeros([1, 2, D]), state)).toThrow(/^FlashStyleTiledAttention.prefill: argument 'state.keys' must be a live float32 tensor \[B, S, Hkv, K\] = \[1, 4, 2, 4\]/);
      expect(() => layer.prefill(tf.zeros([2, 2, D]), { ...state, positions: tf.zeros([2]) } as never))
        .toThrow(/^FlashStyleTiledAttention.prefill: argument 'state.positions' must be an int32 tensor of shape \[2\]/);
      expect(() => layer.prefill(tf.zeros([2, 2, 5]), state)).toThrow(/^FlashStyleTiledAttention.prefill: argument 'x' must have shape \[B, T, D\] = \[2, 2, 12\]; received \[2, 2, 5\]/);
      expect(() => layer.prefill(tf.zeros([2, 2, D]), state, { lengths: [3, 0] })).toThrow(/^FlashStyleTiledAttention.prefill: option 'lengths' must hold 2 integers/);
      tf.dispose(state);
      expect(() => layer.step(tf.zeros([2, D]), state)).toThrow(/argument 'state.keys' must be a live float32 tensor .* received a disposed tensor/);
      layer.dispose();
    });

    it('prefill and step of every layer leak no tensors, with and without capacity', async () => {
      const cases: Array<[Kind, number | undefined]> = KINDS.flatMap((k): Array<[Kind, number | undefined]> =>
        k === 'BlockSparse' ? [[k, undefined]] : [[k, undefined], [k, 2]]);
      for (const [kind, window] of cases) {
        const layer = make(kind, window);
        await expectNoLeaks(async () => {
          // concatenating; preallocated (a ring with the window); a full linear one
          for (const options of [undefined, { capacity: 8 }, { capacity: 3 }]) {
            const [prompt, token, last, lengths] = [tf.ones([2, 3, D]), tf.ones([2, D]), tf.ones([2, 1, D]), tf.tensor1d([0, 0], 'int32')];
            const s0 = layer.initState(2, options);
            const [y1, s1] = layer.prefill(prompt as tf.Tensor3D, s0, { lengths: options?.capacity === 3 ? [1, 0] : [3, 1] });
            const [y2, s2] = layer.step(token as tf.Tensor2D, s1);
            const [y3, s3] = layer.prefill(last as tf.Tensor3D, s2, { lengths: lengths as tf.Tensor1D });
            await y2.data();
            tf.dispose([s0, s1, s2, s3, y1, y2, y3, prompt, token, last, lengths]);
          }
          const x = tf.ones([2, 2, D]) as tf.Tensor3D;
          const [y, s] = layer.prefill(x);
          tf.dispose([y, s, x]);
        });
        layer.dispose();
      }
    });

    if (backend === 'webgpu') {
      it('on webgpu a preallocated cache is written in place: the same key and value tensors and buffers, a constant tensor count', async () => {
        for (const kind of KINDS) {
          const layer = make(kind);
          const state = layer.initState(2, { capacity: 16 });
          // the positions after a call are a new tensor, formed by the write's launch
          const tensors = [state.keys, state.values];
          const ids = tensors.map((t) => t.dataId);
          const [y0] = layer.prefill(tf.ones([2, 4, D]), state, { lengths: [4, 2] });
          y0.dispose();
          const count = tf.memory().numTensors;
          for (let t = 0; t < 5; t++) {
            const x = tf.ones([2, D]) as tf.Tensor2D;
            const [y, same] = layer.step(x, state);
            expect(same).toBe(state);
            tf.dispose([x, y]);
            expect(tf.memory().numTensors).toBe(count);
          }
          expect([state.keys, state.values].every((t, n) => t === tensors[n] && t.dataId === ids[n])).toBe(true);
          expect(await positionsOf(state)).toEqual([9, 7]);
          tf.dispose(state);
          layer.dispose();
        }
      });

      it('on webgpu a concatenating cache\'s ragged prefill is written by the write kernel into its grown copy; under a tape by tfjs ops', async () => {
        for (const kind of KINDS) {
          const layer = make(kind);
          const x = tf.randomNormal([2, 4, D]) as tf.Tensor3D;
          const [y0, first] = layer.prefill(x, undefined, { lengths: [4, 2] });
          y0.dispose();
          const writes = (labels: string[]) => labels.filter((label) => /KVCacheWrite|Select|Gather/.test(label));
          let next: tf.TensorContainer | undefined;
          const ran = await launchedPipelines(async () => {
            const [y, s] = layer.prefill(x, first, { lengths: [3, 1] });
            await y.data();
            y.dispose();
            next = s;
          });
          expect(writes(ran), kind).toEqual([expect.stringMatching(/^KVCacheWrite/)]);
          // the reference's write under a tape: differentiable in x, so not in place
          const taped = await launchedPipelines(async () => {
            const [dx] = tf.grads((a: tf.Tensor) => layer.prefill(a as tf.Tensor3D, first, { lengths: [3, 1] })[1].keys)([x]);
            await dx!.data();
            dx!.dispose();
          });
          expect(writes(taped).some((label) => label.startsWith('KVCacheWrite')), `${kind} under a tape`).toBe(false);
          tf.dispose([x, first, next!]);
          layer.dispose();
        }
      });

      // without a window, and with one (a ring of 3 slots, stepped past them, each row seeing all three)
      for (const window of [undefined, 3]) {
        it(`on webgpu a step over a preallocated cache of one chunk of keys takes four launches and uploads nothing${window ? ', over a ring too' : ''}`, async () => {
          const layer = make('FlashStyleTiledAttention', window);
          const state = layer.initState(2, { capacity: 16 });
          const x = tf.ones([2, D]) as tf.Tensor2D;
          for (let s = 0; s < (window ?? 0) + 1; s++) tf.dispose(layer.step(x, state)[0]);
          const { ran, uploads } = await recordedStep(() => layer.step(x, state));
          expect(uploads).toBe(0);
          // the q, k, v projections (their biases packed once, with the weights), the cache write
          // (which also forms the positions after the step), the split-K decode in one launch (16
          // keys, one chunk: no merge; its lone query offsets bound as they are, since every token is
          // real and causality alone bounds the keys: no kvLengths; over a ring, whose slots are
          // not in order, its kvLengths the positions the write formed, which the kernel clamps to
          // the slots, where an add and a minimum took two launches), the output projection
          expect(ran).toEqual(['DenseGroups', expect.stringMatching(/^KVCacheWrite/),
            expect.stringMatching(/^FlashAttentionSplit/), expect.stringMatching(/^Dense/)]);
          tf.dispose([x, state]);
          layer.dispose();
        });
      }

      // the layer keeps its q, k, v biases packed for the projections' launch: a bias changed by
      // setWeights must reach the next call, which under a tape packs them afresh in its launch
      it('on webgpu a call after setWeights projects with the new q, k, v biases, as a call under a gradient tape does', async () => {
        const layer = make('FlashStyleTiledAttention');
        const x = tf.randomNormal([2, 5, D]) as tf.Tensor3D;
        const before = layer.apply(x) as tf.Tensor;
        // the variables themselves: what setWeights is given is copied in, and freed after
        const weights = layer.getWeights();
        const changed = layer.weights.map((w, i) => /(query|key|value)Bias/.test(w.originalName)
          ? tf.randomNormal(weights[i]!.shape) : weights[i]!.clone());
        layer.setWeights(changed);
        tf.dispose(changed);
        let after: tf.Tensor | null = null;
        const ran = await launchedPipelines(async () => {
          after = layer.apply(x) as tf.Tensor;
          await after.data();
        });
        expect(ran).not.toContain('DensePackBias');
        let taped: tf.Tensor | null = null;
        const tapedRan = await launchedPipelines(async () => {
          const { value, grad } = tf.valueAndGrad((x1: tf.Tensor) => {
            taped = tf.keep(layer.apply(x1) as tf.Tensor);
            return tf.sum(taped);
          })(x);
          tf.dispose([value, grad]);
          await taped!.data();
        });
        expect(tapedRan).toContain('DensePackBias');
        expect(Array.from(await after!.data())).toEqual(Array.from(await taped!.data()));
        expect(maxAbsDiff(await after!.data(), await before.data())).toBeGreaterThan(0.01);
        tf.dispose([x, before, after!, taped!]);
        layer.dispose();
      });

      it('the write kernel equals its reference: linear and ring, ragged lengths, one lane and vec4', async () => {
        const next = mulberry32(17);
        for (const [Hkv, K_, S, ring] of [[1, 3, 9, false], [2, 4, 9, false], [1, 3, 4, true], [2, 2, 4, true]] as const) {
          const B = 4;
          const T = 6;
          // positions and lengths: 0 and T, a ring wrapping and taking more tokens than it has slots
          const positions = ring ? [0, 3, 5, 2] : [0, 3, 2, 1];
          const lengths = [0, 6, 2, 5];
          await expectNoLeaks(async () => {
            const state = emptyCache(B, Hkv, K_, S, ring);
            const fill = tf.tensor4d(Float32Array.from({ length: B * S * Hkv * K_ }, () => next()), [B, S, Hkv, K_]);
            const keys = tf.tensor4d(Float32Array.from({ length: B * T * Hkv * K_ }, () => next()), [B, T, Hkv, K_]);
            const values = tf.neg(keys) as tf.Tensor4D;
            const [p, n] = [tf.tensor1d(positions, 'int32'), tf.tensor1d(lengths, 'int32')];
            // the cache starts from earlier contents, which the write must keep where it does not write
            const negFill = tf.neg(fill) as tf.Tensor4D;
            tf.dispose([state.keys, state.values, state.positions]);
            // copies of their own (a clone would share the buffer the kernel writes)
            Object.assign(state, tf.tidy(() => ({ keys: tf.add(fill, 0), values: tf.add(negFill, 0), positions: tf.add(p, tf.scalar(0, 'int32')) })));
            const want = writeReference([fill, negFill], [keys, values], p, n, ring);
            const advanced = writeKernel(state, keys, values, n);
            expect([...await state.keys.data()]).toEqual([...await want[0]!.data()]);
            expect([...await state.values.data()]).toEqual([...await want[1]!.data()]);
            expect([...await advanced.data()]).toEqual(positions.map((q, b) => q + lengths[b]!));
            // the call's attention reads the positions before it, which stay
            expect([...await state.positions.data()]).toEqual(positions);
            tf.dispose([state, advanced, fill, negFill, keys, values, p, n, want]);
          });
        }
      });

      it('the write kernel without lengths (a decode step\'s) writes every token of every row, as its reference with lengths T', async () => {
        const next = mulberry32(23);
        for (const [T, S, ring] of [[1, 5, false], [3, 9, false], [1, 4, true], [3, 2, true]] as const) {
          const [B, Hkv, K_] = [3, 2, 4];
          const positions = ring ? [0, 3, 6] : [0, 1, S - T];
          await expectNoLeaks(async () => {
            const state = emptyCache(B, Hkv, K_, S, ring);
            const fill = tf.tensor4d(Float32Array.from({ length: B * S * Hkv * K_ }, () => next()), [B, S, Hkv, K_]);
            const keys = tf.tensor4d(Float32Array.from({ length: B * T * Hkv * K_ }, () => next()), [B, T, Hkv, K_]);
            const values = tf.neg(keys) as tf.Tensor4D;
            const [p, n] = [tf.tensor1d(positions, 'int32'), tf.fill([B], T, 'int32') as tf.Tensor1D];
            const negFill = tf.neg(fill) as tf.Tensor4D;
            tf.dispose([state.keys, state.values, state.positions]);
            Object.assign(state, tf.tidy(() => ({ keys: tf.add(fill, 0), values: tf.add(negFill, 0), positions: tf.add(p, tf.scalar(0, 'int32')) })));
            const want = writeReference([fill, negFill], [keys, values], p, n, ring);
            const advanced = writeKernel(state, keys, values);
            expect([...await state.keys.data()]).toEqual([...await want[0]!.data()]);
            expect([...await state.values.data()]).toEqual([...await want[1]!.data()]);
            expect([...await advanced.data()]).toEqual(positions.map((q) => q + T));
            tf.dispose([state, advanced, fill, negFill, keys, values, p, n, want]);
          });
        }
      });

      it('on webgpu a read before a step does not leave stale values, and a shared buffer is refused', async () => {
        const layer = make('FlashStyleTiledAttention');
        const state = layer.initState(1, { capacity: 4 });
        // the read caches the values on the CPU; the write must drop that copy
        expect([...await state.keys.data()].every((v) => v === 0)).toBe(true);
        expect(await positionsOf(state)).toEqual([0]);
        const [y] = layer.step(tf.ones([1, D]), state);
        const keys = await state.keys.data();
        expect(keys.slice(0, HKV * K).some((v) => v !== 0)).toBe(true);
        expect(keys.slice(HKV * K).every((v) => v === 0)).toBe(true);
        expect(await positionsOf(state)).toEqual([1]);
        // a clone shares the buffer: writing would change it too
        const clone = state.keys.clone();
        expect(ownsData(tf.backend() as WebGPUBackend, state.keys)).toBe(false);
        expect(() => layer.step(tf.ones([1, D]), state)).toThrow(
          /^FlashStyleTiledAttention.step: argument 'state.keys' shares its buffer with another live tensor/);
        clone.dispose();
        const [y2] = layer.step(tf.ones([1, D]), state);
        expect(await positionsOf(state)).toEqual([2]);
        tf.dispose([y, y2, state]);
        layer.dispose();
      });
    }
  });
}

describeOn('cpu', 'a concatenating cache\'s growth', () => {
  // webgl compiles a shader per shape: there the cache grows to the next power of two (at least
  // 64) only when the host's bound no longer fits; elsewhere by exactly the call's tokens
  it('grows by T off webgl, and on webgl to a power of two only when the tokens no longer fit', () => {
    expect(growthOf(10, 1, 11)).toBe(1);
    expect(growthOf(10, 3, 10, 'wasm')).toBe(3);
    expect(growthOf(0, 6, 6, 'webgl')).toBe(MIN_GROWN_SLOTS);
    expect(growthOf(64, 1, 64, 'webgl')).toBe(0);
    expect(growthOf(64, 1, 65, 'webgl')).toBe(64);
    expect(growthOf(64, 200, 250, 'webgl')).toBe(192);
    expect(growthOf(512, 1, 513, 'webgl')).toBe(512);
  });

  it('holds every call\'s tokens on cpu: prefills of 5 and 4 tokens and two steps make 11 slots', async () => {
    const layer = make('FlashStyleTiledAttention');
    const { state } = await run(layer, 2, [{ prefill: [5, 2], T: 5 }, { prefill: [1, 4], T: 4 }, { step: true }, { step: true }], undefined, 3);
    expect(state.keys.shape[1]).toBe(11);
    expect(await positionsOf(state)).toEqual([8, 8]);
    tf.dispose(state);
    layer.dispose();
  });
});
