import * as tf from '@tensorflow/tfjs';
import type { AttentionSizes } from './validate.js';
import { dropoutRows, type Dropout } from './dropout.js';
import type { Visibility } from './visibility.js';
import { groupKeys, knownTileMask, planTiles, type KeyGroup, type KnownVisibility, type TilePlan } from './tiles.js';

/**
 * The row algebra of an attention family in tfjs ops, what the chunked reference
 * ({@link chunkedAttention}) folds its tiles with: the twin of the kernels' row hooks. A tile is
 * R query rows of one kv head against n keys; `s` `[B, Hkv, R, n]` holds their scores
 * scale·q·kᵀ, `visible` `[B|1, 1, R, n]` is 1 where the key is visible (absent: every key is),
 * `drop` `[B, Hkv, R, n]` the dropout multipliers (absent: no dropout).
 */
export interface ReferenceFamily {
  /** Folds one tile into the rows' running state (`null` before the first tile); returns the new state. */
  fold(state: tf.Tensor[] | null, s: tf.Tensor4D, visible: tf.Tensor4D | null, v: tf.Tensor4D, drop: tf.Tensor4D | null): tf.Tensor[];
  /** The rows' output `[B, Hkv, R, K]` from their state, and the per-row statistics `[B, Hkv, R, 1]` the backward reads. */
  finish(state: tf.Tensor[]): { o: tf.Tensor4D; stats: tf.Tensor4D[] };
  /** How many statistics {@link ReferenceFamily.finish} returns. */
  numStats: number;
  /**
   * One tile's backward: from dO `[B, Hkv, R, K]` and `delta` = rowsum(dO ∘ o) `[B, Hkv, R, 1]`,
   * the gradient of the scores `dS` `[B, Hkv, R, n]` and the tile's part of dV `[B, Hkv, n, K]`.
   */
  tileGrad(
    s: tf.Tensor4D, visible: tf.Tensor4D | null, v: tf.Tensor4D, drop: tf.Tensor4D | null, dO: tf.Tensor4D,
    stats: tf.Tensor4D[], delta: tf.Tensor4D,
  ): { dS: tf.Tensor4D; dV: tf.Tensor4D };
}

/**
 * The tile sizes of the chunked references: queries and keys are cut into chunks of `chunk`
 * tokens (`'auto'`: by the length, see {@link chunkFor}), and a tile's scores hold at most about
 * `maxTileElements` numbers (B·H·chunk·keys), so the memory a call needs beyond its O(T·K)
 * inputs and outputs is a few tiles, whatever T. When all the tiles' scores together hold at
 * most `keptScores` numbers, the forward keeps them for the backward rather than recompute them.
 */
export interface ReferenceTiling {
  chunk: number | 'auto';
  maxTileElements: number;
  keptScores: number;
}

/**
 * 2²¹ scores (8 MiB) per tile keep the whole backward, which holds a few tiles at once, within
 * about a hundred MiB at any T; keeping up to 2²³ scores (32 MiB) saves the backward one of its
 * five matMuls on short sequences, where composed attention holds as much.
 */
const DEFAULT_TILING: ReferenceTiling = { chunk: 'auto', maxTileElements: 1 << 21, keptScores: 1 << 23 };
let tiling: ReferenceTiling = DEFAULT_TILING;

/**
 * The chunk for T tokens: T/4 rounded up to a power of two, within 64..256. Large chunks keep
 * each matMul near its peak on cpu and wasm; small ones let a causal call skip more (a chunk of
 * T/4 visits 10 of 16 tiles).
 */
function chunkFor(T: number): number {
  return Math.min(256, Math.max(64, 2 ** Math.ceil(Math.log2(Math.max(1, T / 4)))));
}

/**
 * Runs `fn` with the chunked references cut into other tiles (the tests use small chunks to
 * exercise many tiles on small inputs), then restores the default: when `fn` returns, or when
 * the promise it returns settles.
 */
export function withReferenceTiling<T>(t: Partial<ReferenceTiling>, fn: () => T): T {
  const before = tiling;
  tiling = { ...tiling, ...t };
  let result: T;
  try {
    result = fn();
  } catch (error) {
    tiling = before;
    throw error;
  }
  if (result instanceof Promise) return result.finally(() => { tiling = before; }) as T;
  tiling = before;
  return result;
}

/**
 * `[B, Tq, H, K]` → `[B, Hkv, Tq·G, K]` with G = H / Hkv: the G query heads that read one kv
 * head (heads c·G .. c·G + G − 1 read kv head c) interleaved along the rows, row i·G + g, so that
 * one batched matMul per kv head serves them all and a chunk of queries is a contiguous slice
 * of rows. A 4-D transpose, never a 5-D one (slow on tfjs-cpu).
 */
function toRows(q: tf.Tensor4D, Hkv: number): tf.Tensor4D {
  const [B, Tq, H, K] = q.shape;
  const G = H / Hkv;
  return q.reshape([B, Tq, Hkv, G * K]).transpose([0, 2, 1, 3]).reshape([B, Hkv, Tq * G, K]) as tf.Tensor4D;
}

/** The inverse of {@link toRows}: `[B, Hkv, Tq·G, K]` → `[B, Tq, H, K]`. */
function fromRows(x: tf.Tensor4D, H: number): tf.Tensor4D {
  const [B, Hkv, rows, K] = x.shape;
  const G = H / Hkv;
  return x.reshape([B, Hkv, rows / G, G * K]).transpose([0, 2, 1, 3]).reshape([B, rows / G, H, K]) as tf.Tensor4D;
}

/** The slices `runs` of `x` along `axis`, one after another: a slice for one run, else a concat. */
function pick<T extends tf.Tensor>(x: T, axis: number, runs: [number, number][]): T {
  const part = ([a, b]: [number, number]) => {
    const begin = x.shape.map((_, d) => (d === axis ? a : 0));
    const size = x.shape.map((n, d) => (d === axis ? b - a : n));
    return tf.slice(x, begin, size);
  };
  return (runs.length === 1 ? part(runs[0]!) : tf.concat(runs.map(part), axis)) as T;
}

/**
 * `x` with its NaN and ±∞ entries replaced by 0 (a select, so that no 0 · NaN can follow), and
 * `bad`, 1 where `x` held one of them and 0 elsewhere: what a reference needs to compute on
 * finite numbers and poison only the outputs that see a non-finite input.
 *
 * @example
 * ```ts
 * const { finite, bad } = finitePart(tf.tensor1d([1, NaN, Infinity]));
 * finite.print();  // [1, 0, 0]
 * bad.print();     // [0, 1, 1]
 * ```
 */
export function finitePart<T extends tf.Tensor>(x: T): { finite: T; bad: T; ok: tf.Tensor } {
  const ok = tf.isFinite(x);
  return { finite: tf.where(ok, x, tf.scalar(0) as tf.Tensor) as T, bad: tf.sub(1, tf.cast(ok, 'float32')) as T, ok };
}

/**
 * `[...]` → `[...]`: NaN where `count` (a non-negative count of non-finite inputs) is not 0,
 * and 0 elsewhere; added to an output, it makes exactly the rows that see such an input NaN.
 *
 * @example
 * ```ts
 * poisonWhere(tf.tensor1d([0, 2])).print();  // [0, NaN]
 * ```
 */
export function poisonWhere<T extends tf.Tensor>(count: T): T {
  const bad = tf.greaterEqual(count, 0.5);
  return tf.where(bad, tf.fill(bad.shape, Number.NaN), tf.zeros(bad.shape)) as T;
}

/**
 * The part of `vis` known in plain JS (see {@link KnownVisibility}). Small per-row tensors
 * (offsets, lengths, segment ids) are read where a synchronous read is cheap; on webgpu, where
 * it is not, they stay tensors and only the tile masks apply them.
 */
function knownVisibility(vis: Visibility, layout: KnownVisibility['layout']): KnownVisibility {
  const readable = tf.getBackend() !== 'webgpu';
  const read = (t: tf.Tensor | null) => (t && readable ? (t.dataSync() as Int32Array) : null);
  const offsets = read(vis.queryOffsets);
  const positionsKnown = !vis.queryOffsets || !!offsets;
  const lengths = read(vis.kvLengths);
  const segments = vis.segments && readable
    ? { query: read(vis.segments.query)!, key: read(vis.segments.key)! } : null;
  return {
    causal: vis.causal && positionsKnown,
    window: positionsKnown ? vis.window : null,
    offsets,
    lengths,
    segments,
    layout,
    dynamic: !positionsKnown || (!!vis.kvLengths && !lengths) || (!!vis.segments && !segments) || !!vis.mask,
  };
}

/**
 * The conditions of `vis` that `known` left out, for queries `[i0, i1)` and the keys of `runs`:
 * `[B|1, R0, n]` bool, or `null` when there is none.
 */
function unknownTileMask(
  vis: Visibility, known: KnownVisibility, s: AttentionSizes, i0: number, i1: number, keys: Int32Array,
  runs: [number, number][],
): tf.Tensor3D | null {
  const { B } = s;
  const R0 = i1 - i0;
  const n = keys.length;
  const j = tf.tensor1d(keys, 'int32').reshape([1, 1, n]);
  const conditions: tf.Tensor[] = [];
  if (vis.queryOffsets && !known.offsets) {
    const p = tf.add(vis.queryOffsets.reshape([B, 1, 1]), tf.range(i0, i1, 1, 'int32').reshape([1, R0, 1]));
    if (vis.causal) conditions.push(tf.lessEqual(j, p));
    if (vis.window !== null) {
      conditions.push(tf.greater(j, tf.sub(p, vis.window)));
      if (!vis.causal) conditions.push(tf.less(j, tf.add(p, vis.window)));
    }
  }
  if (vis.kvLengths && !known.lengths) conditions.push(tf.less(j, vis.kvLengths.reshape([B, 1, 1])));
  if (vis.segments && !known.segments) {
    const query = tf.slice(vis.segments.query, [0, i0], [B, R0]).reshape([B, R0, 1]);
    conditions.push(tf.equal(query, pick(vis.segments.key, 1, runs).reshape([B, 1, n])));
  }
  if (vis.mask) {
    const rows = vis.mask.shape[1] === 1 ? vis.mask : tf.slice(vis.mask, [0, i0, 0], [vis.mask.shape[0], R0, s.Tk]);
    conditions.push(tf.notEqual(pick(rows, 2, runs), 0));
  }
  if (conditions.length === 0) return null;
  return conditions.reduce((all, c) => tf.logicalAnd(all, c)) as tf.Tensor3D;
}

/**
 * A masked tile's visibility in the grouped row layout, `[B|1, 1, R0·G, n]` float32 0/1: the
 * known conditions from JS, and-ed with the others' tensors. Call inside a `tf.tidy`.
 */
function tileVisibility(
  vis: Visibility, known: KnownVisibility, s: AttentionSizes, i0: number, i1: number, keys: Int32Array,
  runs: [number, number][],
): tf.Tensor4D {
  const R0 = i1 - i0;
  const n = keys.length;
  const G = s.H / s.Hkv;
  const { values, batch } = knownTileMask(known, s, i0, i1, keys);
  let mask: tf.Tensor = tf.tensor3d(values, [batch, R0, n]);
  const unknown = unknownTileMask(vis, known, s, i0, i1, keys, runs);
  if (unknown) mask = tf.mul(mask, tf.cast(unknown, 'float32'));
  const Bv = mask.shape[0]!;
  // row (i − i0)·G + g: the G heads of a kv head share the query's visibility
  if (G > 1) mask = tf.tile(mask.reshape([Bv, R0, 1, n]), [1, 1, G, 1]);
  return mask.reshape([Bv, 1, R0 * G, n]) as tf.Tensor4D;
}

/** What every tile of one call reads: the inputs in the grouped row layout and the call's facts. */
interface Call {
  s: AttentionSizes;
  vis: Visibility;
  known: KnownVisibility;
  plan: TilePlan;
  dropout: Dropout | null;
  family: ReferenceFamily;
  /** scale·q, finite, `[B, Hkv, Tq·G, K]`. */
  q: tf.Tensor4D;
  /** k and v, finite, `[B, Hkv, Tk, K]`. */
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** One tile's keys, values, visibility and dropout multipliers. Call inside a `tf.tidy`. */
function tileInputs(call: Call, i0: number, i1: number, group: KeyGroup) {
  const { s } = call;
  const { keys, runs } = groupKeys(group, call.plan.chunk, s.Tk);
  const R = (i1 - i0) * (s.H / s.Hkv);
  return {
    keys,
    runs,
    k: pick(call.k, 2, runs),
    v: pick(call.v, 2, runs),
    visible: group.masked ? tileVisibility(call.vis, call.known, s, i0, i1, keys, runs) : null,
    drop: call.dropout
      ? tf.tensor4d(dropoutRows(call.dropout, s, i0, i1, keys), [s.B, s.Hkv, R, keys.length]) : null,
  };
}

/** Rows `[i0·G, i1·G)` of a grouped-row tensor. */
function rowSlice(x: tf.Tensor4D, i0: number, i1: number, G: number): tf.Tensor4D {
  const [B, Hkv, , K] = x.shape;
  return tf.slice(x, [0, 0, i0 * G, 0], [B, Hkv, (i1 - i0) * G, K]);
}

/**
 * Attention in tfjs ops by tiles, never holding a `[Tq, Tk]` matrix: queries in chunks, each
 * against the key chunks its rows see (the others are skipped: a causal call visits about half
 * the tiles, a window or a block-sparse layout a band), folded into per-row states by the
 * family's row algebra (the FlashAttention recurrence for softmax), with a `tf.customGrad`
 * backward that recomputes each tile from the saved per-row statistics (or, when all the scores
 * together are small, from the forward's scores). Invisible keys are
 * masked with a multiply or an added −10³⁰, never a broadcast select. q `[B, Tq, H, K]`, k and v
 * `[B, Tk, Hkv, K]` → `[B, Tq, H, K]`, query head h reading kv head ⌊h·Hkv/H⌋; memory
 * O(B·H·(chunk·maxKeys + T·K)). Inputs are made finite first and the rows that see a NaN or
 * infinity (their own query, or a visible key or value) are made NaN at the end, so an
 * invisible one never reaches an output or a gradient. A row that sees no key outputs 0, with
 * gradients 0. B, Tq and Tk must be positive (the ops answer the empty calls themselves).
 *
 * @param layout A block-sparse layout's block activity, when the op has one.
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 3, Tk: 3, H: 2, Hkv: 1, K: 4 };
 * const q = tf.randomNormal([1, 3, 2, 4]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 3, 1, 4]) as tf.Tensor4D;
 * const vis = resolveVisibility('example', {}, s, { window: true, queryOffsets: true, nonCausal: true });
 * chunkedAttention(SOFTMAX_ROWS, q, kv, kv, s, vis, 0.5, null).shape;  // [1, 3, 2, 4]
 * ```
 */
export function chunkedAttention(
  family: ReferenceFamily, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, vis: Visibility,
  scale: number, dropout: Dropout | null, layout: KnownVisibility['layout'] = null,
): tf.Tensor4D {
  const known = knownVisibility(vis, layout);
  const wanted = tiling.chunk === 'auto' ? chunkFor(Math.max(s.Tq, s.Tk)) : tiling.chunk;
  // a block-sparse chunk is whole blocks, so a tile is skipped when its blocks are inactive
  const chunk = layout ? layout.blockSize * Math.max(1, Math.floor(Math.min(64, wanted) / layout.blockSize)) : wanted;
  const plan = planTiles(s, known, chunk, Math.floor(tiling.maxTileElements / (s.B * s.H * chunk)));
  const scoreCount = plan.queries.reduce((n, c) => n + c.groups.reduce((m, g) =>
    m + s.B * s.H * (c.end - c.start) * groupKeys(g, chunk, s.Tk).keys.length, 0), 0);
  const keepScores = scoreCount <= tiling.keptScores;
  // the tensors the tile masks read, kept (as clones) for the backward by customGrad's save
  const visTensors: (tf.Tensor | null)[] = [
    vis.queryOffsets, vis.kvLengths, vis.segments?.query ?? null, vis.segments?.key ?? null, vis.mask,
  ];
  const run = tf.customGrad(((qIn: tf.Tensor4D, kIn: tf.Tensor4D, vIn: tf.Tensor4D, save: tf.GradSaveFunc) => {
    // the inputs made finite, in the grouped row layout, and where they were not: freed of
    // their intermediates at once, as the O(T·K) copies are what the peak memory counts
    const inputs = tf.tidy(() => {
      const [$q, $k, $v] = [qIn, kIn, vIn].map((x) => finitePart<tf.Tensor4D>(x));
      return {
        q: toRows(tf.mul($q!.finite, scale) as tf.Tensor4D, s.Hkv),
        k: $k!.finite.transpose([0, 2, 1, 3]) as tf.Tensor4D,
        v: $v!.finite.transpose([0, 2, 1, 3]) as tf.Tensor4D,
        qOk: $q!.ok, kOk: $k!.ok, vOk: $v!.ok,
        // non-finite entries per query row [B, Hkv, Tq·G, 1] and per key [B, Tk, Hkv]
        queryBad: toRows(tf.sum($q!.bad, -1, true) as tf.Tensor4D, s.Hkv),
        keyBad: tf.sum(tf.add($k!.bad, $v!.bad), -1) as tf.Tensor3D,
      };
    });
    const call: Call = { s, vis, known, plan, dropout, family, q: inputs.q, k: inputs.k, v: inputs.v };
    const forward = forwardPass(call, inputs.queryBad, inputs.keyBad, keepScores);
    tf.dispose([inputs.queryBad, inputs.keyBad]);
    save([call.q, call.k, call.v, forward.o, forward.rowSees, inputs.qOk, inputs.kOk, inputs.vOk, ...forward.stats,
      ...visTensors.filter((t): t is tf.Tensor => !!t), ...forward.scores]);
    return {
      value: tf.tidy(() => fromRows(tf.add(forward.o, forward.poison) as tf.Tensor4D, s.H)),
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [sq, sk, sv, so, rowSees, qOk, kOk, vOk, ...rest] = saved as tf.Tensor4D[];
        const kept: tf.Tensor[] = rest.slice(family.numStats);
        const stats = rest.slice(0, family.numStats);
        const take = (t: tf.Tensor | null | undefined) => (t ? kept.shift()! : null);
        const [offsets, lengths, segQ, segK, mask] = visTensors.map(take);
        const scores = kept as tf.Tensor4D[];
        const savedVis: Visibility = {
          ...vis,
          queryOffsets: offsets as tf.Tensor1D | null,
          kvLengths: lengths as tf.Tensor1D | null,
          segments: segQ && segK ? { query: segQ as tf.Tensor2D, key: segK as tf.Tensor2D } : null,
          mask: mask as tf.Tensor3D | null,
        };
        const grads = backwardPass({ ...call, vis: savedVis, q: sq!, k: sk!, v: sv! }, so!, rowSees!, stats, dy, scores);
        // a non-finite input was replaced by 0: its gradient is 0, as a select's would be. One
        // gradient at a time, each freeing its rows as it goes: the O(T·K) copies set the peak
        const finish = (ok: tf.Tensor, g: tf.Tensor4D, layout: (x: tf.Tensor4D) => tf.Tensor) => {
          const out = tf.tidy(() => tf.where(ok, layout(g), tf.scalar(0)));
          g.dispose();
          return out;
        };
        return [
          finish(qOk!, grads.dq, (x) => tf.mul(fromRows(x, s.H), scale)),
          finish(kOk!, grads.dk, (x) => x.transpose([0, 2, 1, 3])),
          finish(vOk!, grads.dv, (x) => x.transpose([0, 2, 1, 3])),
        ];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;
  return run(q, k, v);
}

/**
 * The forward over every tile: o `[B, Hkv, Tq·G, K]` (finite, 0 on rows that see no key), the
 * family's statistics, `rowSees` (1 on rows that see a key) and `poison` (NaN on rows that see a
 * non-finite input). Each tile is freed as soon as it is folded in.
 */
function forwardPass(call: Call, queryBad: tf.Tensor4D, keyBad: tf.Tensor3D, keepScores: boolean) {
  const { s, family } = call;
  const G = s.H / s.Hkv;
  const outs: tf.Tensor4D[] = [];
  const stats: tf.Tensor4D[][] = [];
  const sees: tf.Tensor4D[] = [];
  const poisons: tf.Tensor4D[] = [];
  const scores: tf.Tensor4D[] = [];
  for (const chunk of call.plan.queries) {
    const { start: i0, end: i1 } = chunk;
    const R = (i1 - i0) * G;
    const q = rowSlice(call.q, i0, i1, G);
    let state: tf.Tensor[] | null = null;
    // per row: the keys it sees, [B, 1, R, 1], and the non-finite entries among them, [B, Hkv, R, 1]
    let seen: tf.Tensor[] = [tf.zeros([s.B, 1, R, 1]), tf.zeros([s.B, s.Hkv, R, 1])];
    for (const group of chunk.groups) {
      const next: tf.Tensor[] = tf.tidy(() => {
        const t = tileInputs(call, i0, i1, group);
        const tileScores = tf.matMul(q, t.k, false, true) as tf.Tensor4D;
        const bad = pick(keyBad, 1, t.runs);
        // rank-3 matMul: tfjs 4.22's cpu and wasm matMuls broadcast two batch dims wrongly
        const badSeen = t.visible
          ? tf.matMul(t.visible.reshape([t.visible.shape[0], R, t.keys.length]), bad).transpose([0, 2, 1]).reshape([s.B, s.Hkv, R, 1])
          : tf.sum(bad, 1).reshape([s.B, s.Hkv, 1, 1]);
        const count = t.visible ? tf.sum(t.visible, -1, true) : t.keys.length;
        return [
          tf.add(seen[0]!, count), tf.add(seen[1]!, badSeen), ...(keepScores ? [tileScores] : []),
          ...family.fold(state, tileScores, t.visible, t.v, t.drop),
        ];
      });
      tf.dispose([...seen, ...(state ?? [])]);
      seen = next.slice(0, 2);
      if (keepScores) scores.push(next[2] as tf.Tensor4D);
      state = next.slice(keepScores ? 3 : 2);
    }
    const [o, rowSees, poison, ...rowStats] = tf.tidy(() => {
      const sees = tf.cast(tf.greater(tf.tile(seen[0]!, [1, s.Hkv, 1, 1]), 0), 'float32') as tf.Tensor4D;
      const badSeen = tf.add(seen[1]!, tf.mul(rowSlice(queryBad, i0, i1, G), sees));
      const done = state ? family.finish(state) : null;
      return [
        done ? tf.mul(done.o, sees) : tf.zeros([s.B, s.Hkv, R, s.K]), sees, poisonWhere(badSeen),
        ...(done ? done.stats : Array.from({ length: family.numStats }, () => tf.zeros([s.B, s.Hkv, R, 1]))),
      ] as tf.Tensor4D[];
    });
    outs.push(o!);
    sees.push(rowSees!);
    poisons.push(poison!);
    stats.push(rowStats);
    tf.dispose([q, ...seen, ...(state ?? [])]);
  }
  const joined = (parts: tf.Tensor4D[]) => {
    const all = parts.length === 1 ? parts[0]! : tf.concat(parts, 2) as tf.Tensor4D;
    if (parts.length > 1) tf.dispose(parts);
    return all;
  };
  return {
    o: joined(outs),
    stats: Array.from({ length: family.numStats }, (_, n) => joined(stats.map((st) => st[n]!))),
    rowSees: joined(sees),
    poison: joined(poisons),
    /** Every tile's scores in plan order, when kept. */
    scores,
  };
}

/**
 * The backward over every tile, FlashAttention-2's: per query chunk, per key group, the tile's
 * scores are recomputed (or taken from the forward's, when kept), the family turns them and the
 * saved statistics into dS and dV, and
 * dq, dk, dv gather the tile's parts (dk and dv per key chunk). Gradients of the grouped rows:
 * dq `[B, Hkv, Tq·G, K]` (w.r.t. scale·q), dk and dv `[B, Hkv, Tk, K]`.
 */
function backwardPass(
  call: Call, o: tf.Tensor4D, rowSees: tf.Tensor4D, stats: tf.Tensor4D[], dy: tf.Tensor4D, kept: tf.Tensor4D[],
) {
  const { s, family, plan } = call;
  const G = s.H / s.Hkv;
  // rows that see no key output a constant 0: nothing flows back from them
  const dO = tf.tidy(() => tf.mul(toRows(dy, s.Hkv), rowSees) as tf.Tensor4D);
  const delta = tf.tidy(() => tf.sum(tf.mul(dO, o), -1, true) as tf.Tensor4D);
  const numKeyChunks = Math.ceil(s.Tk / plan.chunk);
  const dk: (tf.Tensor | null)[] = new Array(numKeyChunks).fill(null);
  const dv: (tf.Tensor | null)[] = new Array(numKeyChunks).fill(null);
  const accumulate = (into: (tf.Tensor | null)[], chunks: number[], part: tf.Tensor4D) => {
    const sizes = chunks.map((c) => Math.min(plan.chunk, s.Tk - c * plan.chunk));
    const pieces = chunks.length === 1 ? [part] : tf.split(part, sizes, 2);
    chunks.forEach((c, n) => {
      const before = into[c];
      into[c] = before ? tf.keep(tf.add(before, pieces[n]!)) : tf.keep(pieces[n]!);
      if (before) before.dispose();
    });
  };
  const dq: tf.Tensor4D[] = [];
  let tile = 0;
  for (const chunk of plan.queries) {
    const { start: i0, end: i1 } = chunk;
    const R = (i1 - i0) * G;
    let dqChunk: tf.Tensor = tf.zeros([s.B, s.Hkv, R, s.K]);
    for (const group of chunk.groups) {
      tf.tidy(() => {
        const t = tileInputs(call, i0, i1, group);
        const q = rowSlice(call.q, i0, i1, G);
        const scores = kept.length > 0 ? kept[tile++]! : tf.matMul(q, t.k, false, true) as tf.Tensor4D;
        const { dS, dV } = family.tileGrad(
          scores, t.visible, t.v, t.drop, rowSlice(dO, i0, i1, G), stats.map((st) => rowSlice(st, i0, i1, G)),
          rowSlice(delta, i0, i1, G),
        );
        const before = dqChunk;
        dqChunk = tf.keep(tf.add(dqChunk, tf.matMul(dS, t.k)));
        before.dispose();
        accumulate(dk, group.chunks, tf.matMul(dS, q, true, false));
        accumulate(dv, group.chunks, dV);
      });
    }
    dq.push(dqChunk as tf.Tensor4D);
  }
  tf.dispose([dO, delta]);
  const keys = (parts: (tf.Tensor | null)[]) => tf.tidy(() => tf.concat(parts.map((p, c) =>
    p ?? tf.zeros([s.B, s.Hkv, Math.min(plan.chunk, s.Tk - c * plan.chunk), s.K])), 2) as tf.Tensor4D);
  const grads = { dq: tf.concat(dq, 2) as tf.Tensor4D, dk: keys(dk), dv: keys(dv) };
  tf.dispose([...dq, ...dk.filter((t) => t), ...dv.filter((t) => t)] as tf.Tensor[]);
  return grads;
}
