import * as tf from '@tensorflow/tfjs';
import type { AttentionSizes } from './validate.js';
import { broadcast, copy, swapMiddleAxes } from '../cpu-host.js';
import { chunksAlong, finitePart, hiddenScore, matMul, notFinite, poisonWhere } from '../tensors.js';
import { dropoutRows, type Dropout } from './dropout.js';
import type { Visibility } from './visibility.js';
import { knownTileMask, planTiles, widestKeyRange, type KnownVisibility, type TilePlan } from './tiles.js';

/**
 * A masked tile's visibility, both `[B, Hkv, R, n]` (the shape of its scores, so that every op
 * on them is elementwise, never broadcast): `visible` 1 where the key is visible and 0 where
 * not, `hidden` 0 and {@link hiddenScore} (−10³⁰ where the backend stores float32).
 */
export interface TileMask {
  visible: tf.Tensor4D;
  hidden: tf.Tensor4D;
}

/**
 * The row algebra of an attention family in tfjs ops, what the chunked reference
 * ({@link chunkedAttention}) folds its tiles with: the twin of the kernels' row hooks. A tile is
 * R query rows of one kv head against n keys; `s` `[B, Hkv, R, n]` holds their scores
 * scale·q·kᵀ, `mask` their visibility (absent: every key is visible), `drop` `[B, Hkv, R, n]`
 * the dropout multipliers (absent: no dropout).
 */
export interface ReferenceFamily {
  /** Folds one tile into the rows' running state (`null` before the first tile); returns the new state. */
  fold(state: tf.Tensor[] | null, s: tf.Tensor4D, mask: TileMask | null, v: tf.Tensor4D, drop: tf.Tensor4D | null): tf.Tensor[];
  /** The rows' output `[B, Hkv, R, K]` from their state, and the per-row statistics `[B, Hkv, R, 1]` the backward reads. */
  finish(state: tf.Tensor[]): { o: tf.Tensor4D; stats: tf.Tensor4D[] };
  /** How many statistics {@link ReferenceFamily.finish} returns. */
  numStats: number;
  /**
   * What the backward of a query chunk's tiles reads of its rows, formed once per chunk from dO
   * `[B, Hkv, R, K]`, the statistics and `delta` = rowsum(dO ∘ o) `[B, Hkv, R, 1]`.
   */
  rowGrads(dO: tf.Tensor4D, stats: tf.Tensor4D[], delta: tf.Tensor4D): tf.Tensor4D[];
  /**
   * One tile's backward: the gradient of the scores `dS` `[B, Hkv, R, n]` and the tile's part of
   * dV `[B, Hkv, n, K]`. `vOnes` is v with a column of ones, `[B, Hkv, n, K + 1]`, so that a
   * matMul by a row-augmented left side subtracts a per-row term without a broadcast.
   */
  tileGrad(
    s: tf.Tensor4D, mask: TileMask | null, v: tf.Tensor4D, vOnes: tf.Tensor4D, drop: tf.Tensor4D | null, rows: tf.Tensor4D[],
  ): { dS: tf.Tensor4D; dV: tf.Tensor4D };
}

/**
 * The tile sizes of the chunked references: queries are cut into chunks of `chunk` tokens
 * (`'auto'`: by the length, see {@link chunkFor}), and keys into chunks as long or, where a call
 * has fewer queries than a chunk, longer (see {@link keyChunkFor}), so a tile's scores hold at
 * most B·H·chunk² numbers and the memory a call needs beyond its O(T·K) inputs and outputs is a
 * few tiles, whatever T. When all the tiles' scores together hold at most `keptScores` numbers,
 * the forward keeps them for the backward rather than recompute them.
 */
export interface ReferenceTiling {
  chunk: number | 'auto';
  keptScores: number;
}

/**
 * Keeping up to 2²³ scores (32 MiB) saves the backward one of its matMuls on short sequences,
 * where composed attention holds as much.
 */
const DEFAULT_TILING: ReferenceTiling = { chunk: 'auto', keptScores: 1 << 23 };
let tiling: ReferenceTiling = DEFAULT_TILING;

/**
 * The chunk for T tokens: T/4 rounded up to a power of two, within 64..256. Large chunks keep
 * each matMul near its peak on cpu and wasm (and a 256² tile of 4 heads is 1 MiB); small ones let
 * a causal call skip more (a chunk of T/4 visits 10 of 16 tiles).
 */
function chunkFor(T: number): number {
  return Math.min(256, Math.max(64, 2 ** Math.ceil(Math.log2(Math.max(1, T / 4)))));
}

/**
 * Keys per key chunk for a call of Tq < `chunk` queries (with more, `chunk`): the most whole
 * chunks whose tile with the Tq queries holds no more scores than a square tile, but no more than
 * cover the `widest` keys a query sees (so that the tiles no query sees, a preallocated cache's
 * empty slots, are still skipped). A decode step's query then meets up to chunk² keys in one or
 * two tiles: every tile runs the same dozens of ops whatever its size, each a few µs on cpu and
 * wasm, where a step over a 1064-key cache in tiles of 256 took five tiles a layer.
 */
function keyChunkFor(chunk: number, Tq: number, widest: number): number {
  return chunk * Math.min(Math.floor(chunk / Math.max(1, Tq)), Math.max(1, Math.ceil(widest / chunk)));
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
 * `[B, R0, H, K]` → `[B, Hkv, R0·G, K]` with G = H / Hkv: the G query heads that read one kv
 * head (heads c·G .. c·G + G − 1 read kv head c) interleaved along the rows, row i·G + g, so that
 * one batched matMul per kv head serves them all, with no gather (whose gradient wasm lacks).
 * A swap of a 4-D tensor's middle axes ({@link swapMiddleAxes}), never a 5-D transpose (slow on tfjs-cpu).
 */
function toRows(q: tf.Tensor4D, Hkv: number): tf.Tensor4D {
  const [B, R0, H, K] = q.shape;
  const G = H / Hkv;
  return swapMiddleAxes(q.reshape([B, R0, Hkv, G * K])).reshape([B, Hkv, R0 * G, K]);
}

/** The inverse of {@link toRows}: `[B, Hkv, R0·G, K]` → `[B, R0, H, K]`. */
function fromRows(x: tf.Tensor4D, H: number): tf.Tensor4D {
  const [B, Hkv, rows, K] = x.shape;
  const G = H / Hkv;
  return swapMiddleAxes(x.reshape([B, Hkv, rows / G, G * K])).reshape([B, rows / G, H, K]);
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
 * The conditions of `vis` that `known` left out, for queries `[i0, i1)` and keys `[j0, j1)`:
 * `[B|1, R0, n]` bool, or `null` when there is none.
 */
function unknownTileMask(
  vis: Visibility, known: KnownVisibility, s: AttentionSizes, i0: number, i1: number, j0: number, j1: number,
): tf.Tensor3D | null {
  const { B } = s;
  const R0 = i1 - i0;
  const j = tf.range(j0, j1, 1, 'int32').reshape([1, 1, j1 - j0]);
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
    conditions.push(tf.equal(query, tf.slice(vis.segments.key, [0, j0], [B, j1 - j0]).reshape([B, 1, j1 - j0])));
  }
  if (vis.mask) {
    const m = vis.mask;
    const rows = m.shape[1] === 1 ? [0, 1] : [i0, R0];
    conditions.push(tf.notEqual(tf.slice(m, [0, rows[0]!, j0], [m.shape[0], rows[1]!, j1 - j0]), 0));
  }
  if (conditions.length === 0) return null;
  return conditions.reduce((all, c) => tf.logicalAnd(all, c)) as tf.Tensor3D;
}

/**
 * A tile's known mask `values` `[batch, R0, n]` (batch 1 or B) in the grouped row layout
 * `shape` = `[B, Hkv, R0·G, n]`, row (i − i0)·G + g repeating query row i for the G heads of a
 * kv head: the visible mask (0 or 1) and the hidden one, (1 − visible)·`hidden` (see {@link hiddenScore}).
 */
function tileRows(values: Float32Array, batch: number, shape: [number, number, number, number], G: number, hidden: number):
  [Float32Array, Float32Array] {
  const [B, Hkv, rows, n] = shape;
  const R0 = rows / G;
  const visible = new Float32Array(B * Hkv * rows * n);
  let at = 0;
  for (let b = 0; b < B; b++) {
    const from = (batch === 1 ? 0 : b) * R0 * n;
    for (let h = 0; h < Hkv; h++) {
      for (let i = 0; i < R0; i++) {
        const row = values.subarray(from + i * n, from + (i + 1) * n);
        for (let g = 0; g < G; g++, at += n) visible.set(row, at);
      }
    }
  }
  return [visible, visible.map((x) => (1 - x) * hidden)];
}

/**
 * The masks of one pass's tiles, made on demand in the grouped row layout (`[B, Hkv, R, n]`)
 * from the known conditions in JS and-ed with the others' tensors. A mask that only the known
 * conditions make is kept for the next tile with the same values (a causal call's diagonal
 * tiles all share one), up to a few at once.
 */
class TileMasks {
  private readonly kept: { values: Float32Array; batch: number; mask: TileMask }[] = [];
  private readonly hidden = hiddenScore();

  constructor(private readonly vis: Visibility, private readonly known: KnownVisibility, private readonly s: AttentionSizes) {}

  get(i0: number, i1: number, j0: number, j1: number): TileMask {
    const { s } = this;
    const { values, batch } = knownTileMask(this.known, s, i0, i1, j0, j1);
    const cacheable = !this.known.dynamic;
    if (cacheable) {
      const hit = this.kept.find((k) => k.batch === batch && k.values.length === values.length && k.values.every((x, n) => x === values[n]));
      if (hit) return hit.mask;
    }
    const mask = tf.tidy(() => {
      const R0 = i1 - i0;
      const n = j1 - j0;
      const G = s.H / s.Hkv;
      const shape: [number, number, number, number] = [s.B, s.Hkv, R0 * G, n];
      const unknown = unknownTileMask(this.vis, this.known, s, i0, i1, j0, j1);
      if (!unknown) {
        // laid out here: tfjs's tile took a quarter of a causal forward on wasm
        const [visible, hidden] = tileRows(values, batch, shape, G, this.hidden);
        return { visible: tf.tensor4d(visible, shape), hidden: tf.tensor4d(hidden, shape) };
      }
      let m = tf.mul(tf.tensor3d(values, [batch, R0, n]), tf.cast(unknown, 'float32'));
      const Bm = m.shape[0]!;
      // row (i − i0)·G + g: the G heads of a kv head share the query's visibility
      if (G > 1) m = tf.tile(m.reshape([Bm, R0, 1, n]), [1, 1, G, 1]);
      const visible = tf.tile(m.reshape([Bm, 1, R0 * G, n]), [s.B / Bm, s.Hkv, 1, 1]) as tf.Tensor4D;
      return { visible, hidden: tf.mul(tf.sub(1, visible), this.hidden) as tf.Tensor4D };
    });
    if (cacheable) {
      this.kept.push({ values, batch, mask });
      if (this.kept.length > 4) this.free(this.kept.shift()!.mask);
    }
    return mask;
  }

  /** Frees a mask once its tile is done, unless it is kept for later tiles. */
  release(mask: TileMask): void {
    if (!this.kept.some((k) => k.mask === mask)) this.free(mask);
  }

  dispose(): void {
    for (const k of this.kept.splice(0)) this.free(k.mask);
  }

  private free(mask: TileMask): void {
    tf.dispose([mask.visible, mask.hidden]);
  }
}

/** The chunks of one call's inputs, in the layout its tiles read, and the call's facts. */
interface Chunks {
  s: AttentionSizes;
  vis: Visibility;
  known: KnownVisibility;
  plan: TilePlan;
  dropout: Dropout | null;
  family: ReferenceFamily;
  /** Per query chunk: scale·q, finite, `[B, Hkv, R, K]`. */
  q: tf.Tensor4D[];
  /** Per key chunk: k and v, finite, `[B, Hkv, n, K]`. */
  k: tf.Tensor4D[];
  v: tf.Tensor4D[];
}

/** The dropout multipliers of a tile, `[B, Hkv, R, n]`, or `null` without dropout. */
function dropTile(c: Chunks, i0: number, i1: number, j0: number, j1: number): tf.Tensor4D | null {
  if (!c.dropout) return null;
  const keys = Int32Array.from({ length: j1 - j0 }, (_, n) => j0 + n);
  return tf.tensor4d(dropoutRows(c.dropout, c.s, i0, i1, keys), [c.s.B, c.s.Hkv, (i1 - i0) * (c.s.H / c.s.Hkv), j1 - j0]);
}

/**
 * Attention in tfjs ops by tiles, never holding a `[Tq, Tk]` matrix: queries and keys in
 * chunks, each query chunk against the key chunks its rows see (the others are skipped: a causal
 * call visits about half the tiles, a window or a block-sparse layout a band), folded into
 * per-row states by the family's row algebra (the FlashAttention recurrence for softmax), with a
 * `tf.customGrad` backward that recomputes each tile from the saved per-row statistics (or, when
 * all the scores together are small, from the forward's scores). Every op on a tile's scores is
 * elementwise on equal shapes or a matMul, with the masks multiplies or an added hidden score, never a
 * broadcast select. q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]` → `[B, Tq, H, K]`, query head
 * h reading kv head ⌊h·Hkv/H⌋; memory O(B·H·(chunk² + T·K)). Inputs are made finite first and
 * the rows that see a NaN or infinity (their own query, or a visible key or value) are made NaN
 * at the end, so an invisible one never reaches an output or a gradient. A row that sees no key
 * outputs 0, with gradients 0. B, Tq and Tk must be positive (the ops answer the empty calls
 * themselves).
 *
 * @param layout A block-sparse layout's block activity, when the op has one.
 *
 * @example
 * ```ts
 * import { resolveVisibility } from './visibility.js';
 * import { SOFTMAX_ROWS } from '../mixers/flash-style-tiled-attention/reference.js';
 *
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
  const keyChunk = layout || s.Tq >= chunk ? chunk : keyChunkFor(chunk, s.Tq, widestKeyRange(known, s));
  const plan = planTiles(s, known, chunk, keyChunk);
  const scoreCount = plan.queries.reduce((n, c) => n + c.tiles.reduce((m, t) => {
    const [j0, j1] = keyRangeOf(t.chunk, keyChunk, s.Tk);
    return m + s.B * s.H * (c.end - c.start) * (j1 - j0);
  }, 0), 0);
  const keepScores = scoreCount <= tiling.keptScores;
  const nq = plan.queries.length;
  const nk = Math.ceil(s.Tk / keyChunk);
  // the tensors the tile masks read, kept (as clones) for the backward by customGrad's save
  const visTensors: (tf.Tensor | null)[] = [
    vis.queryOffsets, vis.kvLengths, vis.segments?.query ?? null, vis.segments?.key ?? null, vis.mask,
  ];
  const run = tf.customGrad(((qIn: tf.Tensor4D, kIn: tf.Tensor4D, vIn: tf.Tensor4D, save: tf.GradSaveFunc) => {
    // the inputs made finite and cut into chunks once, freed of their intermediates at once (the
    // O(T·K) copies are what the peak memory counts), and where they were not finite
    const inputs = tf.tidy(() => {
      const [$q, $k, $v] = [qIn, kIn, vIn].map((x) => finitePart<tf.Tensor4D>(x));
      const scaled = tf.mul($q!.finite, scale) as tf.Tensor4D;
      const keyBad = notFinite([$k!.ok, $v!.ok], -1) as tf.Tensor4D;
      const queryBad = notFinite([$q!.ok], -1) as tf.Tensor4D;
      const queryChunks = plan.queries.map((c): [number, number] => [c.start, c.end]);
      const keyChunks = Array.from({ length: nk }, (_, n) => keyRangeOf(n, keyChunk, s.Tk));
      const heads = (x: tf.Tensor4D) => chunksAlong(x, keyChunks).map((part) => swapMiddleAxes(part));
      return {
        q: chunksAlong(scaled, queryChunks).map((part) => toRows(part, s.Hkv)),
        k: heads($k!.finite),
        v: heads($v!.finite),
        // 1 where a query row [B, Hkv, R, 1], or a key or its value [B·Hkv, n, 1], holds a non-finite entry
        queryBad: chunksAlong(queryBad, queryChunks).map((part) => toRows(part, s.Hkv)),
        keyBad: heads(keyBad).map((part) => part.reshape([s.B * s.Hkv, part.shape[2], 1]) as tf.Tensor3D),
        ok: [$q!.ok, $k!.ok, $v!.ok],
      };
    });
    const c: Chunks = { s, vis, known, plan, dropout, family, q: inputs.q, k: inputs.k, v: inputs.v };
    const forward = forwardPass(c, inputs.queryBad, inputs.keyBad, keepScores);
    tf.dispose([...inputs.queryBad, ...inputs.keyBad]);
    save([...c.q, ...c.k, ...c.v, ...forward.o, ...forward.rowSees, ...forward.stats.flat(), ...inputs.ok,
      ...visTensors.filter((t): t is tf.Tensor => !!t), ...forward.scores]);
    const value = tf.tidy(() => copy.concat(forward.o.map((o, n) => fromRows(broadcast.add(o, forward.poison[n]!), s.H)), 1));
    tf.dispose(forward.poison);
    return {
      value,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const rest = [...saved];
        const take = (n: number) => rest.splice(0, n) as tf.Tensor4D[];
        const [sq, sk, sv, so, sees] = [take(nq), take(nk), take(nk), take(nq), take(nq)];
        const stats = Array.from({ length: nq }, () => take(family.numStats));
        const [qOk, kOk, vOk] = take(3);
        const [offsets, lengths, segQ, segK, mask] = visTensors.map((t) => (t ? rest.shift()! : null));
        const savedVis: Visibility = {
          ...vis,
          queryOffsets: offsets as tf.Tensor1D | null,
          kvLengths: lengths as tf.Tensor1D | null,
          segments: segQ && segK ? { query: segQ as tf.Tensor2D, key: segK as tf.Tensor2D } : null,
          mask: mask as tf.Tensor3D | null,
        };
        const grads = backwardPass({ ...c, vis: savedVis, q: sq, k: sk, v: sv }, so, sees, stats, dy, rest as tf.Tensor4D[]);
        // a non-finite input was replaced by 0: its gradient is 0, as a select's would be. One
        // gradient at a time, each freeing its chunks as it goes: the O(T·K) copies set the peak
        const finish = (ok: tf.Tensor, parts: tf.Tensor4D[], layout: (x: tf.Tensor4D) => tf.Tensor) => {
          const out = tf.tidy(() => {
            const d = copy.concat(parts.map(layout), 1);
            // zeros of d's shape: tfjs broadcasts a scalar by a tile, slow on wasm
            return tf.where(ok, d, tf.zerosLike(d));
          });
          tf.dispose(parts);
          return out;
        };
        return [
          finish(qOk!, grads.dq, (x) => tf.mul(fromRows(x, s.H), scale)),
          finish(kOk!, grads.dk, swapMiddleAxes),
          finish(vOk!, grads.dv, swapMiddleAxes),
        ];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;
  return run(q, k, v);
}

/** The keys `[j0, j1)` of key chunk `n` of `chunk` tokens among Tk. */
function keyRangeOf(n: number, chunk: number, Tk: number): [number, number] {
  return [n * chunk, Math.min((n + 1) * chunk, Tk)];
}

/**
 * The forward over every tile, per query chunk: o `[B, Hkv, R, K]` (finite, 0 on rows that see
 * no key), the family's statistics, `rowSees` (1 on rows that see a key), `poison` (NaN on rows
 * that see a non-finite input) and, when kept, every tile's scores in plan order. Each tile is
 * freed as soon as it is folded in.
 */
function forwardPass(c: Chunks, queryBad: tf.Tensor4D[], keyBad: tf.Tensor3D[], keepScores: boolean) {
  const { s, family } = c;
  const masks = new TileMasks(c.vis, c.known, s);
  const o: tf.Tensor4D[] = [];
  const stats: tf.Tensor4D[][] = [];
  const rowSees: tf.Tensor4D[] = [];
  const poison: tf.Tensor4D[] = [];
  const scores: tf.Tensor4D[] = [];
  c.plan.queries.forEach((chunk, ci) => {
    const { start: i0, end: i1 } = chunk;
    const q = c.q[ci]!;
    const R = q.shape[2];
    let state: tf.Tensor[] | null = null;
    // per row: the keys it sees and the non-finite entries among them, [B, Hkv, R, 1] each
    let seen: tf.Tensor[] = [tf.zeros([s.B, s.Hkv, R, 1]), tf.zeros([s.B, s.Hkv, R, 1])];
    for (const tile of chunk.tiles) {
      const [j0, j1] = keyRangeOf(tile.chunk, c.plan.keyChunk, s.Tk);
      const mask = tile.masked ? masks.get(i0, i1, j0, j1) : null;
      const next: tf.Tensor[] = tf.tidy(() => {
        const tileScores = matMul(q, c.k[tile.chunk]!, false, true) as tf.Tensor4D;
        const bad = keyBad[tile.chunk]!;
        // rank-3 matMul: tfjs 4.22's cpu and wasm matMuls broadcast two batch dims wrongly
        const badSeen = mask
          ? tf.matMul(mask.visible.reshape([s.B * s.Hkv, R, j1 - j0]), bad).reshape([s.B, s.Hkv, R, 1])
          : tf.sum(bad, 1).reshape([s.B, s.Hkv, 1, 1]);
        const count = mask ? tf.sum(mask.visible, -1, true) : j1 - j0;
        return [
          tf.add(seen[0]!, count), tf.add(seen[1]!, badSeen), ...(keepScores ? [tileScores] : []),
          ...family.fold(state, tileScores, mask, c.v[tile.chunk]!, dropTile(c, i0, i1, j0, j1)),
        ];
      });
      if (mask) masks.release(mask);
      tf.dispose([...seen, ...(state ?? [])]);
      seen = next.slice(0, 2);
      if (keepScores) scores.push(next[2] as tf.Tensor4D);
      state = next.slice(keepScores ? 3 : 2);
    }
    const [out, sees, bad, ...rowStats] = tf.tidy(() => {
      const sees = tf.cast(tf.greater(seen[0]!, 0), 'float32') as tf.Tensor4D;
      const done = state ? family.finish(state) : null;
      return [
        done ? broadcast.mul(done.o, sees) : tf.zeros([s.B, s.Hkv, R, s.K]), sees,
        poisonWhere(tf.add(seen[1]!, tf.mul(queryBad[ci]!, sees))),
        ...(done ? done.stats : Array.from({ length: family.numStats }, () => tf.zeros([s.B, s.Hkv, R, 1]))),
      ] as tf.Tensor4D[];
    });
    tf.dispose([...seen, ...(state ?? [])]);
    o.push(out!);
    rowSees.push(sees!);
    poison.push(bad!);
    stats.push(rowStats);
  });
  masks.dispose();
  return { o, stats, rowSees, poison, scores };
}

/**
 * The backward over every tile, FlashAttention-2's: per query chunk, per key chunk it sees, the
 * tile's scores are recomputed (or taken from the forward's, when kept), the family turns them
 * and the chunk's row terms into dS and dV, and dq gathers per query chunk, dk and dv per key
 * chunk (equal shapes, so no split or scatter). Gradients per chunk: dq `[B, Hkv, R, K]`
 * (w.r.t. scale·q), dk and dv `[B, Hkv, n, K]`.
 */
function backwardPass(
  c: Chunks, o: tf.Tensor4D[], rowSees: tf.Tensor4D[], stats: tf.Tensor4D[][], dy: tf.Tensor4D, kept: tf.Tensor4D[],
) {
  const { s, family, plan } = c;
  const masks = new TileMasks(c.vis, c.known, s);
  const vOnes = c.v.map((v) => tf.tidy(() => copy.concat([v, tf.onesLike(copy.slice(v, [0, 0, 0, 0], [s.B, s.Hkv, v.shape[2], 1]))], -1) as tf.Tensor4D));
  const dk: (tf.Tensor4D | null)[] = c.k.map(() => null);
  const dv: (tf.Tensor4D | null)[] = c.k.map(() => null);
  const add = (into: (tf.Tensor4D | null)[], n: number, part: tf.Tensor4D) => {
    const before = into[n];
    into[n] = before ? broadcast.add<tf.Tensor4D>(before, part) : part;
    if (before) tf.dispose([before, part]);
  };
  let tile = 0;
  const dyChunks = chunksAlong(dy, plan.queries.map((c): [number, number] => [c.start, c.end]));
  const dq = plan.queries.map((chunk, ci) => {
    const { start: i0, end: i1 } = chunk;
    // rows that see no key output a constant 0: nothing flows back from them
    const [dO, ...rows] = tf.tidy(() => {
      const d = broadcast.mul<tf.Tensor4D>(toRows(dyChunks[ci]!, s.Hkv), rowSees[ci]!);
      return [d, ...family.rowGrads(d, stats[ci]!, tf.sum(tf.mul(d, o[ci]!), -1, true) as tf.Tensor4D)];
    });
    let dqChunk: tf.Tensor4D = tf.zerosLike(c.q[ci]!);
    for (const t of chunk.tiles) {
      const [j0, j1] = keyRangeOf(t.chunk, plan.keyChunk, s.Tk);
      const mask = t.masked ? masks.get(i0, i1, j0, j1) : null;
      const [dqPart, dkPart, dvPart] = tf.tidy(() => {
        const q = c.q[ci]!;
        const k = c.k[t.chunk]!;
        const scores = kept.length > 0 ? kept[tile]! : matMul(q, k, false, true) as tf.Tensor4D;
        const { dS, dV } = family.tileGrad(scores, mask, c.v[t.chunk]!, vOnes[t.chunk]!, dropTile(c, i0, i1, j0, j1), rows);
        return [broadcast.add(dqChunk, matMul(dS, k)), matMul(dS, q, true, false), dV] as tf.Tensor4D[];
      });
      tile++;
      if (mask) masks.release(mask);
      dqChunk.dispose();
      dqChunk = dqPart!;
      add(dk, t.chunk, dkPart!);
      add(dv, t.chunk, dvPart!);
    }
    tf.dispose([dO!, ...rows, dyChunks[ci]!]);
    return dqChunk;
  });
  masks.dispose();
  tf.dispose(vOnes);
  // key chunks no query sees get no gradient: zeros
  const filled = (parts: (tf.Tensor4D | null)[]) => parts.map((p, n) => p ?? tf.zerosLike(c.k[n]!));
  return { dq, dk: filled(dk), dv: filled(dv) };
}
