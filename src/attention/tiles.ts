import type { AttentionSizes } from './validate.js';

/**
 * What the chunked references know of a call's visibility in plain JS, before any tensor op:
 * enough to skip the tiles no query sees and to find the tiles every query sees whole. Query i of
 * row b sits at `offsets[b] + i` (`Tk − Tq` without offsets); key j is visible when `causal`
 * (j ≤ p), `window` (j > p − w, and j < p + w when not causal), `lengths` (j < lengths[b]),
 * `segments` (equal ids) and `layout` (a block-sparse token mask) allow it, and the conditions
 * known only as tensors hold (`dynamic`), which only a tile's mask can tell. A condition known
 * only as a tensor is left out here (`causal: false`, `window: null` when the offsets are such a
 * tensor), so a tile is skipped only when the known conditions alone hide it.
 */
export interface KnownVisibility {
  causal: boolean;
  window: number | null;
  /** `[B]`, or `null` for `Tk − Tq` in every row. */
  offsets: Int32Array | null;
  /** `[B]`, or `null` for every key. */
  lengths: Int32Array | null;
  /** `[B·Tq]` and `[B·Tk]` segment ids, or `null` for none. */
  segments: { query: Int32Array; key: Int32Array } | null;
  /** Whether key j is visible to query i under a block-sparse layout, by blocks of `blockSize`. */
  layout: { blockSize: number; blockActive: (I: number, J: number) => boolean } | null;
  /** Some condition is known only as a tensor: no tile is full, though tiles may still be skipped. */
  dynamic: boolean;
}

/** One tile of a query chunk: a key chunk some query of it sees, and whether it needs a mask. */
export interface KeyTile {
  /** Key chunk c holds keys `[c·keyChunk, min((c + 1)·keyChunk, Tk))`. */
  chunk: number;
  /** Some query of the chunk does not see some key of it, so the tile is masked. */
  masked: boolean;
}

/** The tiles of one query chunk, `[start, end)` of the queries. */
export interface QueryChunk {
  start: number;
  end: number;
  tiles: KeyTile[];
}

/** The plan of a chunked attention call: query chunks, each with the key chunks it visits. */
export interface TilePlan {
  /** Keys per key chunk (the last may hold fewer); the query chunks carry their own ranges. */
  keyChunk: number;
  queries: QueryChunk[];
}

const NONE = 0;
const PARTIAL = 1;
const FULL = 2;

/** Keys `[lo, hi)` visible to query i of row b by causality, window and length alone. */
function keyRange(v: KnownVisibility, s: AttentionSizes, b: number, i: number): [number, number] {
  const p = (v.offsets ? v.offsets[b]! : s.Tk - s.Tq) + i;
  let lo = 0;
  let hi = s.Tk;
  if (v.causal) hi = Math.min(hi, p + 1);
  if (v.window !== null) {
    lo = Math.max(lo, p - v.window + 1);
    if (!v.causal) hi = Math.min(hi, p + v.window);
  }
  if (v.lengths) hi = Math.min(hi, v.lengths[b]!);
  return [lo, hi];
}

/**
 * The most keys a query of the call sees by causality, window and length alone (the known
 * conditions that bound a range), at most Tk: a run of key chunks at least this long holds every
 * query's keys in two of them.
 */
export function widestKeyRange(v: KnownVisibility, s: AttentionSizes): number {
  const batch = v.offsets || v.lengths ? s.B : 1;
  let widest = 0;
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < s.Tq; i++) {
      const [lo, hi] = keyRange(v, s, b, i);
      widest = Math.max(widest, hi - lo);
    }
  }
  return widest;
}

/** The smallest and largest of `ids[from, to)`. */
function span(ids: Int32Array, from: number, to: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let n = from; n < to; n++) {
    lo = Math.min(lo, ids[n]!);
    hi = Math.max(hi, ids[n]!);
  }
  return [lo, hi];
}

/** NONE, PARTIAL or FULL for queries `[i0, i1)` of row b against keys `[j0, j1)`, by ranges and segments. */
function classifyRow(v: KnownVisibility, s: AttentionSizes, b: number, i0: number, i1: number, j0: number, j1: number): number {
  let seen = false;
  let whole = true;
  for (let i = i0; i < i1; i++) {
    const [lo, hi] = keyRange(v, s, b, i);
    if (Math.max(lo, j0) < Math.min(hi, j1)) seen = true;
    if (lo > j0 || hi < j1) whole = false;
  }
  if (!seen) return NONE;
  if (v.segments) {
    const [qLo, qHi] = span(v.segments.query, b * s.Tq + i0, b * s.Tq + i1);
    const [kLo, kHi] = span(v.segments.key, b * s.Tk + j0, b * s.Tk + j1);
    // disjoint id ranges share no id; one id on both sides is every pair equal
    if (qHi < kLo || kHi < qLo) return NONE;
    if (!(qLo === qHi && kLo === kHi && qLo === kLo)) whole = false;
  }
  return whole ? FULL : PARTIAL;
}

/** NONE, PARTIAL or FULL for queries `[i0, i1)` against keys `[j0, j1)`, over every batch row. */
function classify(v: KnownVisibility, s: AttentionSizes, i0: number, i1: number, j0: number, j1: number): number {
  let seen = false;
  let whole = !v.dynamic;
  for (let b = 0; b < (v.offsets || v.lengths || v.segments ? s.B : 1); b++) {
    const kind = classifyRow(v, s, b, i0, i1, j0, j1);
    if (kind !== NONE) seen = true;
    if (kind !== FULL) whole = false;
  }
  if (!seen) return NONE;
  const L = v.layout;
  if (L) {
    let any = false;
    let all = true;
    for (let I = Math.floor(i0 / L.blockSize); I <= Math.floor((i1 - 1) / L.blockSize); I++) {
      for (let J = Math.floor(j0 / L.blockSize); J <= Math.floor((j1 - 1) / L.blockSize); J++) {
        if (L.blockActive(I, J)) any = true;
        else all = false;
      }
    }
    if (!any) return NONE;
    if (!all) whole = false;
  }
  return whole ? FULL : PARTIAL;
}

/**
 * The tiles of a chunked attention: queries cut into chunks of `queryChunk`, keys into chunks of
 * `keyChunk`; for each query chunk, the key chunks some query sees, each marked masked unless
 * every query sees all of it. Tiles no query sees are left out, so a causal call visits about
 * half the tiles, a window or a block-sparse layout a band.
 *
 * @example
 * ```ts
 * const s = { B: 1, Tq: 512, Tk: 512, H: 1, Hkv: 1, K: 8 };
 * const known = { causal: true, window: null, offsets: null, lengths: null, segments: null, layout: null, dynamic: false };
 * planTiles(s, known, 256).queries[1].tiles;
 * // [{ chunk: 0, masked: false }, { chunk: 1, masked: true }]: the diagonal tile is masked
 * ```
 */
export function planTiles(s: AttentionSizes, known: KnownVisibility, queryChunk: number, keyChunk = queryChunk): TilePlan {
  const numKeyChunks = Math.ceil(s.Tk / keyChunk);
  const queries: QueryChunk[] = [];
  for (let start = 0; start < s.Tq; start += queryChunk) {
    const end = Math.min(start + queryChunk, s.Tq);
    const tiles: KeyTile[] = [];
    for (let c = 0; c < numKeyChunks; c++) {
      const kind = classify(known, s, start, end, c * keyChunk, Math.min((c + 1) * keyChunk, s.Tk));
      if (kind !== NONE) tiles.push({ chunk: c, masked: kind === PARTIAL });
    }
    queries.push({ start, end, tiles });
  }
  return { keyChunk, queries };
}

/**
 * The known part of a tile's visibility, `[B', rows, keys]` 0/1 (B' = 1 when no condition
 * depends on the batch row): causality, window, lengths, segments and the layout, for queries
 * `[i0, i1)` and keys `[j0, j1)`. The dynamic conditions are and-ed in with tensor ops by the caller.
 */
export function knownTileMask(
  v: KnownVisibility, s: AttentionSizes, i0: number, i1: number, j0: number, j1: number,
): { values: Float32Array; batch: number } {
  const batch = v.offsets || v.lengths || v.segments ? s.B : 1;
  const rows = i1 - i0;
  const values = new Float32Array(batch * rows * (j1 - j0));
  let n = 0;
  const L = v.layout;
  for (let b = 0; b < batch; b++) {
    for (let i = i0; i < i1; i++) {
      const [lo, hi] = keyRange(v, s, b, i);
      const id = v.segments ? v.segments.query[b * s.Tq + i] : 0;
      for (let j = j0; j < j1; j++) {
        values[n++] = j >= lo && j < hi && (!v.segments || v.segments.key[b * s.Tk + j] === id) &&
          (!L || L.blockActive(Math.floor(i / L.blockSize), Math.floor(j / L.blockSize))) ? 1 : 0;
      }
    }
  }
  return { values, batch };
}
