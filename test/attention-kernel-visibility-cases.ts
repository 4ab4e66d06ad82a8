// The attention kernels under MIXERS.md §7's visibility, called directly through their tfjs
// kernels (the inputs and attrs of `visibilityInputs` / `visibilityAttrs`), checked against dense
// masked attention computed here in float64 from the same inputs, forward and gradients: the
// cases (every condition alone and combined, invisible keys and values poisoned with NaN, rows
// that see no key; shapes that cross a 64-row query tile and a 32-key tile, so that whole tiles
// are skipped) and the check, shared by test/attention-kernel-visibility*.test.ts, which run
// them through each build of the kernels.
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { FLASH_ATTENTION } from '../src/mixers/flash-style-tiled-attention/kernel.js';
import { EXPRESSIVE_ATTENTION } from '../src/mixers/expressive-attention/kernel.js';
import { BLOCK_SPARSE_ATTENTION } from '../src/mixers/block-sparse/kernel.js';
import { splitPass } from '../src/attention/split-pass.js';
import { blockSparseMask, type AttentionShape } from './oracle/attention.js';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { EPS32, expectNoLeaks, launchedPipelines, maxAbs, maxAbsDiff, mulberry32, seededUniform } from './helpers.js';

/** §7's conditions as plain arrays; `mask` is `[Bm, Tqm, Tk]` row-major, Bm ∈ {1, B}, Tqm ∈ {1, Tq}. */
type Vis = {
  causal: boolean;
  window?: number;
  kvLengths?: number[];
  queryOffsets?: number[];
  segments?: { query: number[][]; key: number[][] };
  mask?: { shape: [number, number, number]; data: number[] };
  /** BlockSparse's layout mask, and-ed in. */
  layout?: (i: number, j: number) => boolean;
};

/** Key j is visible to query i of row b, straight from MIXERS.md §7. */
function visibleAt(vis: Vis, s: AttentionShape, b: number, i: number, j: number): boolean {
  const p = (vis.queryOffsets ? vis.queryOffsets[b]! : s.Tk - s.Tq) + i;
  if (vis.causal && j > p) return false;
  if (vis.window !== undefined) {
    if (j <= p - vis.window) return false;
    if (!vis.causal && j >= p + vis.window) return false;
  }
  if (vis.kvLengths && j >= vis.kvLengths[b]!) return false;
  if (vis.segments && vis.segments.query[b]![i] !== vis.segments.key[b]![j]) return false;
  if (vis.mask) {
    const [Bm, Tqm, Tk] = vis.mask.shape;
    if (vis.mask.data[((Bm === 1 ? 0 : b) * Tqm + (Tqm === 1 ? 0 : i)) * Tk + j] === 0) return false;
  }
  return !vis.layout || vis.layout(i, j);
}

/** What the adapter-dependent choices (tiledRows, tiledSplits, keysInMemory) read of the adapter. */
type AdapterInfo = { vendor?: string; architecture?: string };
export const SWIFTSHADER: AdapterInfo = { vendor: 'google', architecture: 'swiftshader' };
export const HOPPER: AdapterInfo = { vendor: 'nvidia', architecture: 'hopper' };

/** Runs `body` with the backend reporting `info` as its adapter, then restores the real one. */
export function asAdapter(info: AdapterInfo, body: (gpu: WebGPUBackend) => void): void {
  const backend = tf.backend() as unknown as { adapterInfo: AdapterInfo };
  const real = backend.adapterInfo;
  backend.adapterInfo = info;
  try {
    body(tf.backend() as WebGPUBackend);
  } finally {
    backend.adapterInfo = real;
  }
}

export type Kind = 'softmax' | 'expressive';
type Result = { o: Float64Array; dq: Float64Array; dk: Float64Array; dv: Float64Array };

/**
 * Dense attention over the visible keys of each row, in float64, and its gradients for the
 * cotangent dO: softmax, or ExpressiveAttention's s²-weights over ε + Σ s². A row with no
 * visible key outputs 0 and sends no gradient.
 */
function dense64(kind: Kind, qs: Float32Array, ks: Float32Array, vs: Float32Array, dOs: Float32Array,
  s: AttentionShape, vis: Vis, scale: number, epsilon: number): Result {
  const { B, Tq, Tk, H, Hkv, K } = s;
  const o = new Float64Array(qs.length);
  const dq = new Float64Array(qs.length);
  const dk = new Float64Array(ks.length);
  const dv = new Float64Array(vs.length);
  const dot = (a: ArrayLike<number>, ai: number, c: ArrayLike<number>, ci: number) => {
    let x = 0;
    for (let e = 0; e < K; e++) x += a[ai + e]! * c[ci + e]!;
    return x;
  };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor((h * Hkv) / H);
      for (let i = 0; i < Tq; i++) {
        const qi = ((b * Tq + i) * H + h) * K;
        const js: number[] = [];
        for (let j = 0; j < Tk; j++) if (visibleAt(vis, s, b, i, j)) js.push(j);
        if (js.length === 0) continue;
        const at = (j: number) => ((b * Tk + j) * Hkv + hk) * K;
        const sc = js.map((j) => scale * dot(qs, qi, ks, at(j)));
        let w: number[];
        let z = 1;
        if (kind === 'softmax') {
          const m = Math.max(...sc);
          const e = sc.map((x) => Math.exp(x - m));
          const l = e.reduce((a, c) => a + c, 0);
          w = e.map((x) => x / l);
        } else {
          z = Math.max(epsilon + sc.reduce((a, x) => a + x * x, 0), 2 ** -60);
          w = sc.map((x) => (x * x) / z);
        }
        for (let n = 0; n < js.length; n++) {
          for (let e = 0; e < K; e++) o[qi + e] += w[n]! * vs[at(js[n]!) + e]!;
        }
        const dP = js.map((j) => dot(dOs, qi, vs, at(j)));
        let delta = 0;
        for (let e = 0; e < K; e++) delta += dOs[qi + e]! * o[qi + e]!;
        for (let n = 0; n < js.length; n++) {
          // softmax: dS = P∘(dP − delta); squared scores: dS = 2·s·(dP − delta)/z
          const ds = kind === 'softmax' ? w[n]! * (dP[n]! - delta) : (2 * sc[n]! * (dP[n]! - delta)) / z;
          const kj = at(js[n]!);
          for (let e = 0; e < K; e++) {
            dq[qi + e] += scale * ds * ks[kj + e]!;
            dk[kj + e] += scale * ds * qs[qi + e]!;
            dv[kj + e] += w[n]! * dOs[qi + e]!;
          }
        }
      }
    }
  }
  return { o, dq, dk, dv };
}

/** The tensors of `vis` under the names the kernels take. */
function intInputs(vis: Vis, s: AttentionShape): Record<string, tf.Tensor> {
  const t: Record<string, tf.Tensor> = {};
  if (vis.kvLengths) t.kvLengths = tf.tensor1d(vis.kvLengths, 'int32');
  if (vis.queryOffsets) t.queryOffsets = tf.tensor1d(vis.queryOffsets, 'int32');
  if (vis.segments) {
    t.segmentsQuery = tf.tensor2d(vis.segments.query.flat(), [s.B, s.Tq], 'int32');
    t.segmentsKey = tf.tensor2d(vis.segments.key.flat(), [s.B, s.Tk], 'int32');
  }
  if (vis.mask) t.mask = tf.tensor3d(vis.mask.data, vis.mask.shape, 'int32');
  return t;
}

export type Case = {
  name: string;
  kind: Kind;
  kernel: string;
  attrs: Record<string, unknown>;
  s: AttentionShape;
  vis: Vis;
  /** Keys whose k and v are overwritten with NaN. */
  poisoned?: (b: number, j: number) => boolean;
  /** Queries whose q is overwritten with NaN (besides every query that sees no key). */
  poisonedQueries?: (b: number, i: number) => boolean;
  /** Channels (0 … K − 1) of every output gradient set to 0. */
  zeroGradientChannels?: (c: number) => boolean;
  /** Queries whose output gradient is 0 (rows a loss leaves out, e.g. padding). */
  zeroGradientRows?: (b: number, i: number) => boolean;
};

const SCALE = 0.4;
const EPSILON = 1e-3;

/**
 * Runs the kernel and its gradient on seeded inputs; checks them against {@link dense64}. NaN
 * goes into the case's poisoned keys and queries, and into every query that sees no key. It may
 * reach only what attention connects it to: the rows of the queries that see a poisoned key or
 * are poisoned themselves (and see a key), and the dK and dV of the keys those queries see, unless
 * their output gradient is 0: such a query adds nothing to any key's gradients.
 * Those are not compared (WGSL's max need not propagate NaN, so they need not be NaN either);
 * everything else must match the float64 result of the clean inputs.
 */
export async function check(c: Case, seed: number): Promise<void> {
  const { s, vis } = c;
  const qs = seededUniform(seed, s.B * s.Tq * s.H * s.K);
  const clean = { k: seededUniform(seed + 1, s.B * s.Tk * s.Hkv * s.K), v: seededUniform(seed + 2, s.B * s.Tk * s.Hkv * s.K) };
  const dOs = seededUniform(seed + 3, qs.length).map((x, e) => {
    const row = Math.floor(e / (s.H * s.K));
    return c.zeroGradientChannels?.(e % s.K) || c.zeroGradientRows?.(Math.floor(row / s.Tq), row % s.Tq) ? 0 : x;
  });
  const want = dense64(c.kind, qs, clean.k, clean.v, dOs, s, vis, SCALE, EPSILON);
  const q32 = qs.slice();
  const ks = clean.k.slice();
  const vs = clean.v.slice();
  const sees = (b: number, i: number) => Array.from({ length: s.Tk }, (_, j) => visibleAt(vis, s, b, i, j));
  // the rows a NaN may reach: of o and dq (by b·Tq + i), of dk and dv (by b·Tk + j)
  const nanQueries = new Set<number>();
  const nanKeys = new Set<number>();
  for (let b = 0; b < s.B; b++) {
    for (let i = 0; i < s.Tq; i++) {
      const seen = sees(b, i);
      if (c.poisonedQueries?.(b, i) || !seen.some((x) => x)) q32.fill(NaN, (b * s.Tq + i) * s.H * s.K, (b * s.Tq + i + 1) * s.H * s.K);
      const tainted = c.poisonedQueries?.(b, i) || seen.some((x, j) => x && c.poisoned?.(b, j));
      if (!tainted || !seen.some((x) => x)) continue;
      nanQueries.add(b * s.Tq + i);
      if (!c.zeroGradientRows?.(b, i)) seen.forEach((x, j) => { if (x) nanKeys.add(b * s.Tk + j); });
    }
    for (let j = 0; j < s.Tk; j++) {
      if (!c.poisoned?.(b, j)) continue;
      ks.fill(NaN, (b * s.Tk + j) * s.Hkv * s.K, (b * s.Tk + j + 1) * s.Hkv * s.K);
      vs.fill(NaN, (b * s.Tk + j) * s.Hkv * s.K, (b * s.Tk + j + 1) * s.Hkv * s.K);
    }
  }
  const got = await expectNoLeaks(async () => {
    const outs = tf.tidy(() => {
      const ints = intInputs(vis, s);
      const f = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
        (tf.engine().runKernel(c.kernel, { q, k, v, ...ints }, { ...c.attrs, scale: SCALE }) as tf.Tensor[])[0]!;
      const q = tf.tensor4d(q32, [s.B, s.Tq, s.H, s.K]);
      const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
      const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
      return [f(q, k, v), ...tf.grads(f)([q, k, v], tf.tensor4d(dOs, [s.B, s.Tq, s.H, s.K]))];
    });
    const data = await Promise.all(outs.map(async (t) => Float64Array.from(await t.data())));
    tf.dispose(outs);
    return data;
  });
  const names = ['o', 'dq', 'dk', 'dv'] as const;
  names.forEach((name, n) => {
    const onKeys = name === 'dk' || name === 'dv';
    const nan = onKeys ? nanKeys : nanQueries;
    const rowOf = (e: number) => Math.floor(e / ((onKeys ? s.Hkv : s.H) * s.K));
    const w = want[name].filter((_, e) => !nan.has(rowOf(e)));
    const g = got[n]!.filter((_, e) => !nan.has(rowOf(e)));
    // float32 sums of up to Tk (Tq·H/Hkv for dk, dv) products of K-term dots: a γ_n bound
    const terms = (onKeys ? s.Tq * (s.H / s.Hkv) : s.Tk) + s.K;
    const tol = 8 * terms * EPS32 * Math.max(1, maxAbs(w));
    const err = maxAbsDiff(g, w);
    expect(err, `${c.name}: ${name} error ${err} > ${tol}`).toBeLessThanOrEqual(tol);
  });
}

/** `n` ids per row, sorted: runs of the given lengths (packed sequences). */
function packed(B: number, runs: number[]): number[][] {
  return Array.from({ length: B }, () => runs.flatMap((len, id) => new Array<number>(len).fill(id)));
}

/** `[B, T]` ids drawn in 0..k−1, unsorted. */
function randomIds(seed: number, B: number, T: number, k: number): number[][] {
  const next = mulberry32(seed);
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(next() * k)));
}

/** A `[Bm, Tqm, Tk]` 0/1 mask, about `density` ones. */
function randomMask(seed: number, shape: [number, number, number], density: number): Vis['mask'] {
  const next = mulberry32(seed);
  return { shape, data: Array.from({ length: shape[0] * shape[1] * shape[2] }, () => (next() < density ? 1 : 0)) };
}

const dense = (kind: Kind) => ({
  kernel: kind === 'softmax' ? FLASH_ATTENTION : EXPRESSIVE_ATTENTION,
  // the tiled kernel even for the few queries that 'auto' sends to the split-K decode (tested below)
  extra: kind === 'softmax' ? { split: 'never' } : { split: 'never', epsilon: EPSILON },
});

/** The dense families' cases: each condition alone, then combined; head dimension K but in the scalar lanes' case. */
export function denseCases(kind: Kind, K = 8): Case[] {
  const { kernel, extra } = dense(kind);
  const gqa = { B: 2, Tq: 70, Tk: 70, H: 2, Hkv: 1, K };
  const lengths = [70, 33];
  const padMask = randomMask(11, [2, 1, 70], 0.8);
  return [
    {
      name: `${kind} causal window 5 with kvLengths, NaN past the lengths`, kind, kernel, s: gqa,
      attrs: { ...extra, causal: true, window: 5 }, vis: { causal: true, window: 5, kvLengths: lengths },
      poisoned: (b, j) => j >= lengths[b]!,
    },
    {
      name: `${kind} bidirectional window 4, queryOffsets, Tq ≠ Tk, scalar lanes`, kind, kernel,
      s: { B: 2, Tq: 5, Tk: 40, H: 3, Hkv: 1, K: 6 },
      attrs: { ...extra, causal: false, window: 4 }, vis: { causal: false, window: 4, queryOffsets: [3, 37] },
    },
    {
      name: `${kind} packed segments (sorted), causal, NaN in a key nobody sees`, kind, kernel, s: { ...gqa, B: 1, Hkv: 2 },
      attrs: { ...extra, causal: true, window: 0 },
      vis: { causal: true, segments: { query: packed(1, [20, 30, 20]), key: packed(1, [20, 30, 20]) }, mask: { shape: [1, 1, 70], data: Array.from({ length: 70 }, (_, j) => (j === 45 ? 0 : 1)) } },
      poisoned: (_b, j) => j === 45,
    },
    {
      // packed sequences whose edges cut through an invocation's rows (21, 51 are not multiples
      // of 2 or 4): a NaN query (25) and a NaN key (50, seen by query 50 alone) stay in theirs
      name: `${kind} NaN inside one packed sequence, causal`, kind, kernel, s: { ...gqa, B: 1 },
      attrs: { ...extra, causal: true, window: 0 },
      vis: { causal: true, segments: { query: packed(1, [21, 30, 19]), key: packed(1, [21, 30, 19]) } },
      poisoned: (_b, j) => j === 50,
      poisonedQueries: (_b, i) => i === 25,
    },
    {
      // rows a loss leaves out (output gradient 0) that a NaN reaches: a NaN query (row 0's 30),
      // and the queries that see a NaN key (row 1's 50 onwards); the keys they see keep their
      // gradients, and no other query sees key 50, whose gradients are then 0 (kvLengths, as the
      // first case binds them, so that the kernels are those the cases above build)
      name: `${kind} NaN in rows whose output gradient is 0, causal, kvLengths`, kind, kernel, s: gqa,
      attrs: { ...extra, causal: true, window: 0 }, vis: { causal: true, kvLengths: [70, 60] },
      poisoned: (b, j) => b === 1 && j === 50,
      poisonedQueries: (b, i) => b === 0 && i === 30,
      zeroGradientRows: (b, i) => (b === 0 ? i === 30 : i >= 50),
    },
    {
      name: `${kind} unsorted segments, a [B, Tq, Tk] mask with empty rows, bidirectional`, kind, kernel,
      s: { B: 2, Tq: 66, Tk: 35, H: 2, Hkv: 2, K },
      attrs: { ...extra, causal: false, window: 0 },
      vis: { causal: false, segments: { query: randomIds(3, 2, 66, 3), key: randomIds(4, 2, 35, 3) }, mask: randomMask(5, [2, 66, 35], 0.3) },
    },
    {
      // row 0 sorted (gaps, negative ids, segments across the 64-row and 32-key tile edges),
      // row 1 sorted but its last key, row 2 unsorted: only ascending ids may narrow a range
      name: `${kind} many packed segments across tile edges, next to unsorted rows, bidirectional`, kind, kernel,
      s: { B: 3, Tq: 150, Tk: 140, H: 2, Hkv: 1, K },
      attrs: { ...extra, causal: false, window: 0 },
      vis: {
        causal: false,
        segments: {
          query: [
            packed(1, [5, 3, 40, 1, 70, 31])[0]!.map((id) => 3 * id - 5),
            packed(1, [20, 50, 10, 30, 25, 10, 5])[0]!,
            randomIds(12, 1, 150, 4)[0]!,
          ],
          key: [
            packed(1, [7, 2, 38, 3, 60, 30])[0]!.map((id) => 3 * id - 5),
            packed(1, [18, 52, 12, 28, 29, 1])[0]!.map((id, j) => (j === 139 ? 0 : id)),
            randomIds(13, 1, 140, 4)[0]!,
          ],
        },
      },
    },
    {
      name: `${kind} everything at once`, kind, kernel, s: gqa,
      attrs: { ...extra, causal: true, window: 40 },
      vis: {
        causal: true, window: 40, kvLengths: lengths, queryOffsets: [0, 2],
        segments: { query: packed(2, [10, 60]), key: packed(2, [12, 58]) }, mask: padMask,
      },
    },
  ];
}

/**
 * The split-K decode (forced) under every condition, and with a row that sees no key: over 300
 * keys, several chunks of 128 and their merge (an invocation per chunk; one chunk of 300 where
 * a subgroup or workgroup shares each chunk, whose 4500 keys make three); over 99, one chunk
 * that finishes its rows itself.
 */
export async function checkSplit(kind: Kind, lengths = [300, 99], K = 8): Promise<void> {
  const { kernel, extra } = dense(kind);
  for (const Tk of lengths) {
    const s = { B: 2, Tq: 2, Tk, H: 2, Hkv: 1, K };
    const lengths = [Tk, Tk / 2 | 0];
    const window = Tk / 3 | 0;
    const first = Math.round(Tk * 0.43);
    const ran = await launchedPipelines(() => check({
      name: `${kind} split-K over ${Tk} keys: window, kvLengths, queryOffsets, segments, mask; NaN past the lengths`, kind, kernel, s,
      attrs: { ...extra, causal: true, window, split: 'always' },
      vis: {
        causal: true, window, kvLengths: lengths, queryOffsets: [Tk - 2, lengths[1]! - 10],
        segments: { query: [[1, 1], [0, 1]], key: packed(2, [first, Tk - first]) }, mask: randomMask(7, [1, 1, Tk], 0.9),
      },
      poisoned: (b, j) => j >= lengths[b]!,
    }, 200));
    expect(ran.some((label) => label.includes('Merge'))).toBe(Tk > splitPass(tf.backend() as WebGPUBackend, s.K).chunk);
    // a row that sees no key: o = 0 and zero gradients from every split
    await check({
      name: `${kind} split-K over ${Tk} keys: a row with no visible key`, kind, kernel, s,
      attrs: { ...extra, causal: true, window: 0, split: 'always' }, vis: { causal: true, kvLengths: [0, lengths[1]! + 20] },
      poisoned: (b) => b === 0,
    }, 300);
  }
}

/** BlockSparse's kernels under kvLengths, segments and a mask, with its layout, at head dimension K. */
export async function checkBlockSparse(K = 8): Promise<void> {
  const T = 70;
  const layout = { blockSize: 8, localBlocks: 2, globalBlocks: 1, stride: 3 };
  const lengths = [70, 41];
  await check({
    name: 'blockSparse with kvLengths, unsorted segments and a key mask', kind: 'softmax', kernel: BLOCK_SPARSE_ATTENTION,
    s: { B: 2, Tq: T, Tk: T, H: 2, Hkv: 1, K }, attrs: { ...layout, causal: true, window: 0 },
    vis: {
      causal: true, kvLengths: lengths, segments: { query: randomIds(8, 2, T, 2), key: randomIds(8, 2, T, 2) },
      mask: randomMask(9, [2, 1, T], 0.85), layout: blockSparseMask({ T, ...layout }),
    },
    poisoned: (b, j) => j >= lengths[b]!,
  }, 400);
  await check({
    name: 'blockSparse with packed segments', kind: 'softmax', kernel: BLOCK_SPARSE_ATTENTION,
    s: { B: 1, Tq: T, Tk: T, H: 1, Hkv: 1, K }, attrs: { ...layout, causal: true, window: 0 },
    vis: { causal: true, segments: { query: packed(1, [33, 37]), key: packed(1, [33, 37]) }, layout: blockSparseMask({ T, ...layout }) },
  }, 500);
}

