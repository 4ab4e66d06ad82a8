// The attention kernels under MIXERS.md §7's visibility, called directly through their tfjs
// kernels (the inputs and attrs of `visibilityInputs` / `visibilityAttrs`): every condition
// alone and combined, against dense masked attention computed here in float64 from the same
// inputs, forward and gradients; invisible keys and values poisoned with NaN; rows that see no
// key. Shapes cross a 64-row query tile and a 32-key tile, so that whole tiles are skipped.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FLASH_ATTENTION } from '../src/mixers/flash-style-tiled-attention/kernel.js';
import { EXPRESSIVE_ATTENTION } from '../src/mixers/expressive-attention/kernel.js';
import { BLOCK_SPARSE_ATTENTION } from '../src/mixers/block-sparse/kernel.js';
import {
  ATTENTION_DKV_KEYS_FLAG, ATTENTION_FORWARD_FLAG, ATTENTION_ROW_LANES_FLAG, ATTENTION_ROWS_FLAG, ATTENTION_DQ_FLAG, ATTENTION_DKV_FLAG, byBlocks, dpByBlocks, keysInMemory, rowsFillingSubgroups,
  tiledRows,
} from '../src/attention/kernel-source.js';
import { ATTENTION_SPLIT_PASS_FLAG, splitPass } from '../src/attention/split-pass.js';
import { ATTENTION_SPLITS_FLAG, tiledSplits } from '../src/attention/tile-splits.js';
import { blockSparseMask, type AttentionShape } from './oracle/attention.js';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import {
  EPS32, describeOn, describeOnSubgroups, expectNoLeaks, launchedPipelines, maxAbs, maxAbsDiff, mulberry32, seededUniform,
} from './helpers.js';

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
const SWIFTSHADER: AdapterInfo = { vendor: 'google', architecture: 'swiftshader' };
const HOPPER: AdapterInfo = { vendor: 'nvidia', architecture: 'hopper' };

/** Runs `body` with the backend reporting `info` as its adapter, then restores the real one. */
function asAdapter(info: AdapterInfo, body: (gpu: WebGPUBackend) => void): void {
  const backend = tf.backend() as unknown as { adapterInfo: AdapterInfo };
  const real = backend.adapterInfo;
  backend.adapterInfo = info;
  try {
    body(tf.backend() as WebGPUBackend);
  } finally {
    backend.adapterInfo = real;
  }
}

type Kind = 'softmax' | 'expressive';
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

type Case = {
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
async function check(c: Case, seed: number): Promise<void> {
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
function denseCases(kind: Kind, K = 8): Case[] {
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
async function checkSplit(kind: Kind, lengths = [300, 99], K = 8): Promise<void> {
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
async function checkBlockSparse(K = 8): Promise<void> {
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

// The tiled passes give each invocation RQ rows (query rows in the forward and dQ, key rows in
// dK/dV), RQ by adapter (tiledRows: 4 on SwiftShader, fewer on a GPU); every choice the flag
// allows runs here, forward and gradients, so each row count's build is checked whatever the
// adapter picks. Rows past a tile's end (Tq = 70,
// 5, 66, 150 are not multiples of 4) and scalar lanes (K = 6) are among the cases. First in the
// file, so that each count's pipelines are made in its own test, where their labels are checked.
describeOn('webgpu', 'attention kernels under visibility, at every forward row count', () => {
  const pipelines: string[] = [];
  let create: GPUDevice['createComputePipeline'];
  beforeAll(() => {
    const device = (tf.backend() as WebGPUBackend).device;
    create = device.createComputePipeline.bind(device);
    device.createComputePipeline = (d) => {
      pipelines.push(d.label ?? '');
      return create(d);
    };
  });
  afterAll(() => {
    (tf.backend() as WebGPUBackend).device.createComputePipeline = create;
    tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
  });

  for (const rows of [1, 2, 4]) {
    it(`with ${rows} row${rows > 1 ? 's' : ''} per invocation, every family's kernels equal dense masked attention, forward and gradients`, async () => {
      tf.env().set(ATTENTION_ROWS_FLAG, rows);
      pipelines.length = 0;
      try {
        for (const kind of ['softmax', 'expressive'] as const) {
          for (const c of denseCases(kind)) await check(c, 600 + rows);
        }
        await checkBlockSparse();
      } finally {
        tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
      }
      // each tiled pass once per family and K, named by its rows: FlashAttentionForwardK8R2, …K8 for
      // one; a forward once more where a lone kvLengths or queryOffsets was bound as it is (no tape)
      const tiled = pipelines.filter((label) => /Forward|BackwardDq|BackwardDkv/.test(label));
      expect(new Set(tiled).size).toBe(15);
      for (const label of new Set(tiled)) {
        expect(tiled.filter((t) => t === label).length, label).toBeLessThanOrEqual(label.includes('Forward') ? 2 : 1);
      }
      for (const label of tiled) expect(label).toMatch(rows > 1 ? new RegExp(`K\\d+R${rows}$`) : /K\d+$/);
    });
  }

  it("'auto' takes 4 rows on SwiftShader and, on a GPU, as many as keep a row's registers within 192 floats", () => {
    const rows = (gpu: WebGPUBackend, pass: 'forward' | 'dq' | 'dkv', Ks: number[], RL = 1) => Ks.map((K) => tiledRows(gpu, pass, K, RL));
    asAdapter(SWIFTSHADER, (gpu) => {
      expect(rows(gpu, 'forward', [8, 64, 256])).toEqual([4, 4, 4]);
      expect(rows(gpu, 'dkv', [8, 64, 256])).toEqual([4, 4, 4]);
    });
    asAdapter(HOPPER, (gpu) => {
      // a forward row holds 2·K + BC floats: 16 + 32, 64 + 32, 128 + 28 and 512 + 4
      expect(rows(gpu, 'forward', [8, 32, 64, 256])).toEqual([4, 2, 1, 1]);
      // dQ 3·K: 24, 96, 192, 768; dK/dV 4·K: 32, 64, 128, 256
      expect(rows(gpu, 'dq', [8, 32, 64, 256])).toEqual([4, 2, 1, 1]);
      expect(rows(gpu, 'dkv', [8, 16, 32, 64])).toEqual([4, 2, 1, 1]);
      // four lanes per row, each holding a quarter of those K-float registers: forward 8 + 32,
      // 32 + 32, 128 + 4; dQ 12, 48, 192; dK/dV 16, 64, 256
      expect(rows(gpu, 'forward', [16, 64, 256], 4)).toEqual([4, 2, 1]);
      expect(rows(gpu, 'dq', [16, 64, 256], 4)).toEqual([4, 4, 1]);
      expect(rows(gpu, 'dkv', [16, 64, 256], 4)).toEqual([4, 2, 1]);
    });
  });

  it('with four lanes per row, takes fewer rows where the workgroup would not be whole subgroups', () => {
    // 4·64 / rows invocations: 64 at 4 rows, a whole number of subgroups of 4 to 64, not of 128
    expect([4, 16, 32, 64, 128].map((lanes) => rowsFillingSubgroups(4, lanes))).toEqual([4, 4, 4, 4, 2]);
    // 128 at 2 rows and 256 at 1: whole for every size WebGPU allows
    expect([rowsFillingSubgroups(2, 128), rowsFillingSubgroups(1, 128)]).toEqual([2, 1]);
  });

  it('refuses a row count the forward has no build for', () => {
    tf.env().set(ATTENTION_ROWS_FLAG, 3);
    const q = tf.ones([1, 4, 1, 4]);
    // four queries: 'auto' would take the split-K decode, which has no rows per invocation
    expect(() => tf.engine().runKernel(FLASH_ATTENTION, { q, k: q, v: q }, { scale: 1, causal: true, window: 0, split: 'never' }))
      .toThrow(`tfjs-mixers: flag ${ATTENTION_ROWS_FLAG} must be 'auto', 1, 2 or 4; received 3.`);
    tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
    q.dispose();
  });
});

// A split tiled pass cuts the other side (keys in the forward and dQ, queries in dK/dV) into
// chunks of whole tiles, a workgroup per (tile, chunk), then merges the forward's partial rows
// and sums the gradients' parts. 'auto' splits only on a GPU, so the flag forces it here: 2 and
// 3 chunks of the 70, 140 and 150 rows of the cases (32-row tiles at K = 8 and 6), so chunks
// start inside a window, a segment, past a row's kvLengths, and some hold no visible key.
describeOn('webgpu', 'attention kernels under visibility, split into chunks of the other side', () => {
  afterAll(() => { tf.env().set(ATTENTION_SPLITS_FLAG, 'auto'); });
  for (const splits of [2, 3]) {
    it(`in ${splits} chunks, every family's kernels equal dense masked attention, forward and gradients`, async () => {
      tf.env().set(ATTENTION_SPLITS_FLAG, splits);
      try {
        const ran = await launchedPipelines(async () => {
          for (const kind of ['softmax', 'expressive'] as const) {
            for (const c of denseCases(kind)) await check(c, 900 + splits);
          }
        });
        const sparse = await launchedPipelines(() => checkBlockSparse());
        for (const family of ['FlashAttention', 'ExpressiveAttention']) {
          expect(ran).toContain(`${family}ForwardK8R4`);
          expect(ran).toContain(`${family}MergeK8`);
        }
        // BlockSparse's merge is FlashAttention's code, whose pipeline (and label) it shares
        expect(sparse).toContain('BlockSparseForwardK8R4');
        expect(sparse).toContain('FlashAttentionMergeK8');
        // the scalar lanes' case, K = 6
        expect(ran).toContain('FlashAttentionMergeK6');
        // the gradients' parts, by vec4 (K = 8) and by float (K = 6)
        expect(ran).toContain('AttentionSumPartsVec4');
        expect(ran).toContain('AttentionSumParts');
        expect(sparse).toContain('AttentionSumPartsVec4');
      } finally {
        tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
      }
    });
  }

  it("'auto' keeps one chunk on SwiftShader and, on a GPU, cuts a launch of few workgroups into chunks of at least four tiles", () => {
    asAdapter(SWIFTSHADER, (gpu) => expect(tiledSplits(gpu, 4096, 64, 256, 64)).toBeNull());
    asAdapter(HOPPER, (gpu) => {
      // 4096 / 256 workgroups: 16 chunks of ⌈4096 / 16⌉ keys rounded up to whole 28-key tiles, so 15
      expect(tiledSplits(gpu, 4096, 64, 256, 64)).toEqual({ chunk: 280, splits: 15 });
      // 1024 workgroups: 4 chunks; 4096 or more: one
      expect(tiledSplits(gpu, 16384, 256, 1024, 64)).toEqual({ chunk: 4116, splits: 4 });
      expect(tiledSplits(gpu, 16384, 256, 4096, 64)).toBeNull();
      // few keys: chunks of at least 4 tiles (112 keys), so 300 keys make 3
      expect(tiledSplits(gpu, 300, 1, 4, 64)).toEqual({ chunk: 112, splits: 3 });
      try {
        // a forced count: chunks of whole tiles (32 keys at K = 8), so 70 keys in 3 make 3 of 32
        tf.env().set(ATTENTION_SPLITS_FLAG, 3);
        expect(tiledSplits(gpu, 70, 2, 8, 8)).toEqual({ chunk: 32, splits: 3 });
        // workgroup x = tile·chunks + chunk stays within 65535
        tf.env().set(ATTENTION_SPLITS_FLAG, 1000);
        expect(tiledSplits(gpu, 1 << 20, 16384, 16384, 64)).toEqual({ chunk: 349552, splits: 3 });
        tf.env().set(ATTENTION_SPLITS_FLAG, 0);
        expect(() => tiledSplits(gpu, 70, 2, 8, 8)).toThrow(`tfjs-mixers: flag ${ATTENTION_SPLITS_FLAG} must be 'auto' or a whole number ≥ 1; received 0.`);
      } finally {
        tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
      }
    });
  });
});

// dK/dV's invocations read their key rows' keys and values from k and v where those would take
// too many registers on a GPU ('auto' holds them on SwiftShader): the flag forces it here, at
// every row count (each row's key base is its own) and with the other side split.
describeOn('webgpu', 'attention kernels under visibility, dK/dV reading keys from memory', () => {
  afterAll(() => {
    tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'auto');
    tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
    tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
  });
  for (const [rows, splits] of [[1, 1], [4, 3]] as const) {
    it(`with ${rows} key row${rows > 1 ? 's' : ''} per invocation in ${splits} chunk${splits > 1 ? 's' : ''}, every family's gradients equal dense masked attention's`, async () => {
      tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'memory');
      tf.env().set(ATTENTION_ROWS_FLAG, rows);
      tf.env().set(ATTENTION_SPLITS_FLAG, splits);
      try {
        for (const kind of ['softmax', 'expressive'] as const) {
          for (const c of denseCases(kind)) await check(c, 960 + rows);
        }
        await checkBlockSparse();
      } finally {
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'auto');
        tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
        tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
      }
    });
  }

  it("'auto' reads them from memory on a GPU where the rows' registers pass 192 floats", () => {
    asAdapter(SWIFTSHADER, (gpu) => expect(keysInMemory(gpu, 64, 1)).toBe(false));
    asAdapter(HOPPER, (gpu) => {
      // 4·K floats a row: 256 at K = 64, 128 at 32 (two rows 256); a quarter with four lanes
      expect([keysInMemory(gpu, 64, 1), keysInMemory(gpu, 32, 1), keysInMemory(gpu, 32, 2)]).toEqual([true, false, true]);
      expect([keysInMemory(gpu, 64, 2, 4), keysInMemory(gpu, 256, 1, 4)]).toEqual([false, true]);
      try {
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'registers');
        expect(keysInMemory(gpu, 64, 1)).toBe(false);
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'cache');
        expect(() => keysInMemory(gpu, 64, 1)).toThrow(`tfjs-mixers: flag ${ATTENTION_DKV_KEYS_FLAG} must be 'auto', 'registers' or 'memory'; received "cache".`);
      } finally {
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'auto');
      }
    });
  });
});

// The passes by blocks of scores (score-blocks.wgsl: tiles of 16 of the other side, a block of 4×4
// scores, then a row, then a quad of rows' outputs an invocation; the forward's,
// attention-forward-blocks.wgsl, dQ's, attention-backward-dq-blocks.wgsl, and dK/dV's, whose rows
// are keys, attention-backward-dkv-blocks.wgsl), which 'auto' does not take yet: each flag forces
// its pass, at K = 16 (one channel group an output quarter) and 32 (two, interleaved), whole and
// split into 3 chunks; dQ and dK/dV at K = 64 too, where they form dP by rows on an adapter of 32 KB
// (common/dq-dp-rows.wgsl, dkv-dp-rows.wgsl), as against by blocks at K ≤ 32 (dq-dp-blocks.wgsl,
// dkv-dp-blocks.wgsl). The 70 and 150 query rows leave a tile's last quads partly or wholly past
// its end; 35, 70 and 140 keys end inside a 16-key tile (and 70 and 150 queries inside dK/dV's). The backward reads the forward's
// statistic, so the gradients check the forward's too. K = 6 (the scalar lanes' case) keeps the
// rows.
describeOn('webgpu', 'attention kernels under visibility: the passes by blocks of scores', () => {
  afterAll(() => {
    for (const flag of [ATTENTION_FORWARD_FLAG, ATTENTION_DQ_FLAG, ATTENTION_DKV_FLAG, ATTENTION_SPLITS_FLAG]) tf.env().set(flag, 'auto');
  });
  const passes = [
    ['forward', ATTENTION_FORWARD_FLAG, 'Forward'], ['dQ', ATTENTION_DQ_FLAG, 'BackwardDq'], ['dK/dV', ATTENTION_DKV_FLAG, 'BackwardDkv'],
  ] as const;
  for (const [pass, flag, kernel] of passes) {
    // dQ and dK/dV at K = 64 too: dO or the values staged (dpByBlocks) only where 47 KB fit, so
    // that on a 32 KB adapter both builds of each run; and at K = 16 with dP by rows as asked
    const sizes = pass === 'forward' ? [[16, 1, 'blocks'], [32, 1, 'blocks'], [16, 3, 'blocks']] as const
      : [[16, 1, 'blocks'], [32, 1, 'blocks'], [16, 3, 'blocks'], [64, 1, 'blocks'], [16, 1, 'blocks-dp-rows']] as const;
    for (const [K, splits, value] of sizes) {
      it(`${pass} at K = ${K}${splits > 1 ? `, in ${splits} chunks of the ${pass === 'dK/dV' ? 'queries' : 'keys'}` : ''}${value === 'blocks' ? '' : `, ${value}`}: every family's forward equals dense masked attention, and its gradients`, async () => {
        tf.env().set(flag, value);
        tf.env().set(ATTENTION_SPLITS_FLAG, splits);
        try {
          const ran = await launchedPipelines(async () => {
            for (const kind of ['softmax', 'expressive'] as const) {
              for (const c of denseCases(kind, K)) await check(c, 1100 + K + splits + 50 * passes.findIndex(([p]) => p === pass));
            }
            await checkBlockSparse(K);
          });
          const built = pass !== 'forward' && dpByBlocks(tf.backend() as WebGPUBackend, pass === 'dQ' ? 'dq' : 'dkv', K) ? 'BlocksDp' : 'Blocks';
          // 'blocks' stages dP's other factor at K = 16 on any adapter; 'blocks-dp-rows' never
          if (K === 16) expect(built).toBe(value === 'blocks' && pass !== 'forward' ? 'BlocksDp' : 'Blocks');
          for (const family of ['FlashAttention', 'ExpressiveAttention', 'BlockSparse']) {
            expect(ran).toContain(`${family}${kernel}${built}K${K}R4`);
            expect(ran.filter((label) => label.startsWith(`${family}${kernel}K${K}`))).toEqual([]);
          }
          expect(ran.some((label) => label.startsWith(`FlashAttention${kernel}K6`))).toBe(true);
          // a split forward merges its chunks' rows; a split dQ's parts are summed as the rows' are
          if (pass === 'forward') expect(ran.includes('FlashAttentionMergeK16')).toBe(splits > 1);
        } finally {
          tf.env().set(flag, 'auto');
          tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
        }
      });
    }
  }

  it("are taken where their flag asks for them and the workgroup memory fits; 'auto' keeps the rows", () => {
    const gpu = tf.backend() as WebGPUBackend;
    const limit = gpu.device.limits.maxComputeWorkgroupStorageSize;
    const Ks = [16, 64, 8, 40, 128];
    const none = [false, false, false, false, false];
    try {
      const flags = { forward: ATTENTION_FORWARD_FLAG, dq: ATTENTION_DQ_FLAG, dkv: ATTENTION_DKV_FLAG } as const;
      for (const [pass, flag] of Object.entries(flags) as [keyof typeof flags, string][]) {
        expect(Ks.map((K) => byBlocks(gpu, pass, K))).toEqual(none);
        tf.env().set(flag, 'blocks');
        // 4·(64·K + 32·K + 64·20 + 128) + 16 bytes: 11 792 at K = 16, 30 224 at 64, 54 800 at 128;
        // 8 and 40 are not multiples of 16
        expect(Ks.map((K) => byBlocks(gpu, pass, K))).toEqual([true, limit >= 30224, false, false, limit >= 54800]);
        // dK/dV's values staged beside its keys: 4·64·K bytes more, 15 888 at K = 16, 46 608 at 64;
        // dQ's output gradients, and 8 bytes a row more: 16 400 and 47 120
        if (pass !== 'forward') expect([16, 64].map((K) => dpByBlocks(gpu, pass, K))).toEqual([true, limit >= (pass === 'dq' ? 47120 : 46608)]);
        // one flag chooses one pass
        for (const other of Object.keys(flags) as (keyof typeof flags)[]) expect(byBlocks(gpu, other, 16)).toBe(other === pass);
        tf.env().set(flag, 'blocks-dp-rows');
        if (pass !== 'forward') {
          // by blocks as 'blocks', dP by rows wherever the memory would hold it by blocks
          expect(Ks.map((K) => byBlocks(gpu, pass, K))).toEqual([true, limit >= 30224, false, false, limit >= 54800]);
          expect([16, 64].map((K) => dpByBlocks(gpu, pass, K))).toEqual([false, false]);
        } else {
          // the forward has no dP
          expect(() => byBlocks(gpu, pass, 16)).toThrow(`tfjs-mixers: flag ${flag} must be 'auto', 'rows' or 'blocks'; received "blocks-dp-rows".`);
        }
        tf.env().set(flag, 'rows');
        expect(byBlocks(gpu, pass, 64)).toBe(false);
        if (pass !== 'forward') expect(dpByBlocks(gpu, pass, 16)).toBe(false);
        tf.env().set(flag, 'tiles');
        const values = pass === 'forward' ? "'auto', 'rows' or 'blocks'" : "'auto', 'rows', 'blocks' or 'blocks-dp-rows'";
        expect(() => byBlocks(gpu, pass, 64)).toThrow(`tfjs-mixers: flag ${flag} must be ${values}; received "tiles".`);
        tf.env().set(flag, 'auto');
      }
    } finally {
      for (const flag of [ATTENTION_FORWARD_FLAG, ATTENTION_DQ_FLAG, ATTENTION_DKV_FLAG]) tf.env().set(flag, 'auto');
    }
  });
});

// With subgroups the tiled passes share each row among four lanes where K / lanes is a multiple of
// 4 (row-quarters.wgsl): K = 32 gives each lane two channel groups, so a lane's channels
// interleave with the others'; the scalar lanes' case (K = 6) keeps a row per invocation. Every
// row count the flag allows, as above (4 fits SwiftShader's subgroups of 4).
describeOnSubgroups('attention kernels under visibility: the tiled passes, four lanes per row', (pipelines) => {
  afterAll(() => { tf.env().set(ATTENTION_ROWS_FLAG, 'auto'); });
  for (const rows of [1, 2, 4]) {
    it(`with ${rows} row${rows > 1 ? 's' : ''} per four lanes, every family's kernels equal dense masked attention, forward and gradients`, async () => {
      tf.env().set(ATTENTION_ROWS_FLAG, rows);
      pipelines.length = 0;
      try {
        for (const kind of ['softmax', 'expressive'] as const) {
          for (const c of denseCases(kind, 32)) await check(c, 700 + rows);
        }
        await checkBlockSparse(32);
        // lane 0 of a row's four holds channel groups 0 and 4 (channels 0–3, 16–19): with the
        // output gradient 0 there, only the others' channels tell that a query's is live
        await check({ ...denseCases('softmax', 32)[0]!, name: 'softmax, output gradients zero in one lane\'s channels', zeroGradientChannels: (c) => c % 16 < 4 }, 800 + rows);
      } finally {
        tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
      }
      const suffix = rows > 1 ? `R${rows}` : '';
      for (const family of ['FlashAttention', 'ExpressiveAttention', 'BlockSparse']) {
        for (const pass of ['Forward', 'BackwardDq', 'BackwardDkv']) expect(pipelines).toContain(`${family}${pass}SubgroupsK32${suffix}`);
      }
      // the scalar lanes' case, K = 6 (6 channel groups, not a multiple of 4), one invocation per
      // row: each pass of the two families, and their forwards once more with a lone int input
      expect(new Set(pipelines.filter((label) => label.endsWith(`K6${suffix}`))).size).toBe(6);
      expect(pipelines.filter((label) => label.includes('Subgroups') && label.includes('K6'))).toEqual([]);
    });
  }
});

// MIXERS_ATTENTION_ROW_LANES on a device with subgroups: 1, the tiled passes take a row an
// invocation (the kernels without subgroups), while the split-K decode's workgroup pass still
// takes four lanes a row where asked for; 'dkv', dK/dV alone takes four
describeOnSubgroups('attention kernels under visibility: the tiled passes, a row an invocation though the device has subgroups', (pipelines) => {
  afterAll(() => { tf.env().set(ATTENTION_ROW_LANES_FLAG, 'auto'); });
  it('every family\'s kernels equal dense masked attention, forward and gradients, and the split-K workgroup pass keeps its quarters', async () => {
    tf.env().set(ATTENTION_ROW_LANES_FLAG, 1);
    pipelines.length = 0;
    for (const c of denseCases('softmax', 32)) await check(c, 960);
    await checkBlockSparse(32);
    for (const family of ['FlashAttention', 'BlockSparse']) {
      for (const pass of ['Forward', 'BackwardDq', 'BackwardDkv']) expect(pipelines.some((l) => l.startsWith(`${family}${pass}K32`))).toBe(true);
    }
    // the gradient's row sums (AttentionDeltaSubgroups) keep their subgroup per row
    expect(pipelines.filter((label) => /(Forward|Backward).*Subgroups/.test(label))).toEqual([]);
    tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'workgroup');
    try {
      expect(splitPass(tf.backend() as WebGPUBackend, 16).label).toBe('SplitWorkgroupQuarters');
    } finally {
      tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
    }
    const q = tf.ones([1, 4, 1, 32]);
    for (const wrong of [2, 'dkv,dkv', 'dk', '']) {
      tf.env().set(ATTENTION_ROW_LANES_FLAG, wrong);
      expect(() => tf.engine().runKernel(FLASH_ATTENTION, { q, k: q, v: q }, { scale: 1, causal: true, window: 0, split: 'never' }))
        .toThrow(`tfjs-mixers: flag ${ATTENTION_ROW_LANES_FLAG} must be 'auto', 1, 4 or the passes that take four lanes, ` +
          `some of 'forward', 'dq' and 'dkv' separated by commas (e.g. 'dkv'); received ${JSON.stringify(wrong)}.`);
    }
    q.dispose();
  });

  it('with four lanes a row in dK/dV alone, the kernels equal dense masked attention, forward and gradients', async () => {
    tf.env().set(ATTENTION_ROW_LANES_FLAG, 'dkv');
    const ran = await launchedPipelines(async () => {
      for (const c of denseCases('softmax', 32)) await check(c, 970);
    });
    const passes = [...new Set(ran.filter((l) => /^FlashAttention(Forward|Backward)/.test(l) && l.includes('K32')).map((l) => l.replace(/R\d$/, '')))];
    expect(passes.sort()).toEqual(['FlashAttentionBackwardDkvSubgroupsK32', 'FlashAttentionBackwardDqK32', 'FlashAttentionForwardK32']);
  });
});

describeOnSubgroups('attention kernels under visibility: the tiled passes, four lanes per row, split into chunks', (pipelines) => {
  it('in 3 chunks of the other side, each family\'s kernels equal dense masked attention, forward and gradients', async () => {
    tf.env().set(ATTENTION_SPLITS_FLAG, 3);
    pipelines.length = 0;
    try {
      for (const c of denseCases('expressive', 32)) await check(c, 950);
      await checkBlockSparse(32);
    } finally {
      tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
    }
    for (const family of ['ExpressiveAttention', 'BlockSparse']) {
      for (const pass of ['Forward', 'BackwardDq', 'BackwardDkv']) expect(pipelines.some((l) => l.startsWith(`${family}${pass}SubgroupsK32`))).toBe(true);
    }
    expect(pipelines).toContain('ExpressiveAttentionMergeK32');
    expect(pipelines).toContain('AttentionSumPartsVec4');
  });
});

describeOnSubgroups('attention kernels under visibility: the split-K decode', (pipelines) => {
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s, a subgroup per chunk, honours every condition as the tiled kernel does`, async () => {
      await checkSplit(kind);
      expect(pipelines.some((label) => label.includes('SplitSubgroups'))).toBe(true);
    });
  }

  // A workgroup per chunk with four lanes per folder: at K = 16 each lane holds one channel
  // group, at K = 64 four. SwiftShader's subgroups are of 4, so each is one folder, and the 64
  // folders' merge runs in workgroup memory; 4500 keys make three chunks of 2048 (a merge), 300
  // one (finished in place), most of whose folders see no key.
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s, a workgroup of four-lane folders per chunk, honours every condition as the tiled kernel does`, async () => {
      tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'workgroup');
      try {
        const gpu = tf.backend() as WebGPUBackend;
        expect([16, 64, 8].map((K) => { const p = splitPass(gpu, K); return [p.label, p.WG, p.RL, p.chunk]; })).toEqual([
          ['SplitWorkgroupQuarters', 256, 4, 2048], ['SplitWorkgroupQuarters', 256, 4, 1792],
          // K = 8: two channel groups, too few for four lanes
          ['SplitWorkgroup', 64, 1, 2048],
        ]);
        const ran = await launchedPipelines(async () => {
          await checkSplit(kind, [4500, 300], 16);
          await checkSplit(kind, [2000], 64);
        });
        expect([...new Set(ran.filter((label) => label.includes('SplitWorkgroup')))]).toEqual(
          ['SplitWorkgroupQuartersK16', 'SplitWorkgroupQuartersK64'].map((l) => `${kind === 'softmax' ? 'FlashAttention' : 'ExpressiveAttention'}${l}`));
      } finally {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
      }
    });
  }
});

// On a GPU without subgroups a workgroup folds each chunk of the split-K decode, its lanes
// merging their row states in workgroup memory; 'auto' keeps an invocation per chunk on
// SwiftShader, so the flag forces it here.
describeOn('webgpu', 'attention kernels under visibility: the split-K decode, a workgroup per chunk', () => {
  afterAll(() => { tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto'); });
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s honours every condition as the tiled kernel does`, async () => {
      tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'workgroup');
      try {
        const ran = await launchedPipelines(() => checkSplit(kind, [4500, 300, 99]));
        expect(ran.some((label) => label.includes('SplitWorkgroupK8'))).toBe(true);
      } finally {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
      }
    });
  }

  it("'auto' takes it on a GPU without subgroups, with fewer lanes where their states would not fit 16 KiB", () => {
    asAdapter(SWIFTSHADER, (gpu) => expect([splitPass(gpu, 64).pass, splitPass(gpu, 64).chunk]).toEqual(['split', 128]));
    asAdapter(HOPPER, (gpu) => {
      // a tile of 28 keys for each of 64 lanes at K = 64; 32 lanes of 12 at K = 128; 16 of 4 at
      // K = 256, rounded up to 128 keys; 64 of 32 at K = 6
      const chosen = [64, 128, 256, 6].map((K) => { const p = splitPass(gpu, K); return [p.pass, p.WG, p.chunk]; });
      expect(chosen).toEqual([['splitWorkgroup', 64, 1792], ['splitWorkgroup', 32, 384], ['splitWorkgroup', 16, 128], ['splitWorkgroup', 64, 2048]]);
      try {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'invocation');
        expect(splitPass(gpu, 64).pass).toBe('split');
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'subgroup');
        expect(() => splitPass(gpu, 64)).toThrow(`tfjs-mixers: flag ${ATTENTION_SPLIT_PASS_FLAG} must be 'auto', 'invocation' or 'workgroup' (the device has no subgroups); received "subgroup".`);
      } finally {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
      }
    });
  });
});

describeOn('webgpu', 'attention kernels under visibility', () => {
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s kernels equal dense masked attention, forward and gradients`, async () => {
      for (const c of denseCases(kind)) await check(c, 100);
    });
  }

  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s split-K decode honours every condition as the tiled kernel does`, async () => {
      await checkSplit(kind);
    });
  }

  it('blockSparseAttention\'s kernels honour kvLengths, segmentIds and mask with the layout', () => checkBlockSparse());
});

