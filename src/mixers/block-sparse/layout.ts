import { argumentError, describe } from '../../validate.js';

/**
 * A causal block-sparse layout (the {@link "block-sparse" | BlockSparse guide} draws examples). The sequence is cut into blocks of
 * `blockSize` tokens (the last may be partial); query block I attends to key block J ≤ I iff
 * `I − J < localBlocks`, or `J < globalBlocks`, or `stride > 0` and `(I − J) mod stride == 0`.
 */
export interface BlockSparseLayout {
  /** Tokens per block, b ≥ 1. */
  blockSize: number;
  /** Local window w ≥ 1, in blocks, the diagonal block included. */
  localBlocks: number;
  /** Global ("sink") blocks g ≥ 0 at the start of the sequence, seen by every later block. */
  globalBlocks: number;
  /** Stride s ≥ 0, in blocks: block I also sees I − s, I − 2s, …; 0 for none. */
  stride: number;
}

/**
 * The layout used for every field not given: 64-token blocks, a 4-block window, one sink block.
 *
 * @example
 * ```ts
 * DEFAULT_LAYOUT;                                           // { blockSize: 64, localBlocks: 4, globalBlocks: 1, stride: 0 }
 * const attention = layers.blockSparse({ numHeads: 4, layout: { ...DEFAULT_LAYOUT, stride: 8 } });
 * ```
 */
export const DEFAULT_LAYOUT: Readonly<BlockSparseLayout> = { blockSize: 64, localBlocks: 4, globalBlocks: 1, stride: 0 };

/** The names of the layout's fields, in the order of {@link BlockSparseLayout}. */
export const LAYOUT_FIELDS = ['blockSize', 'localBlocks', 'globalBlocks', 'stride'] as const;

const MINIMA: Record<keyof BlockSparseLayout, { min: number; why: string }> = {
  blockSize: { min: 1, why: '' },
  localBlocks: { min: 1, why: ' (the window holds the diagonal block, so that every token sees itself)' },
  globalBlocks: { min: 0, why: '' },
  stride: { min: 0, why: ' (0 for no strided blocks)' },
};

/**
 * The complete layout of `given`, each missing field taken from {@link DEFAULT_LAYOUT}, each
 * given one checked to be an integer at or above its minimum; throws naming the option.
 *
 * @example
 * ```ts
 * resolveLayout('myOp', { blockSize: 16 }); // { blockSize: 16, localBlocks: 4, globalBlocks: 1, stride: 0 }
 * ```
 */
export function resolveLayout(op: string, given: Partial<BlockSparseLayout>): BlockSparseLayout {
  const out = { ...DEFAULT_LAYOUT };
  for (const name of LAYOUT_FIELDS) {
    const value: unknown = given[name] ?? DEFAULT_LAYOUT[name];
    const { min, why } = MINIMA[name];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      throw argumentError(op, `option '${name}' must be an integer ≥ ${min}${why}; received ${describe(value)}.`);
    }
    out[name] = value;
  }
  return out;
}

/**
 * Whether query block I attends to key block J under `layout`.
 *
 * @example
 * ```ts
 * blockActive(5, 2, { blockSize: 4, localBlocks: 2, globalBlocks: 1, stride: 3 }); // true: 5 − 2 = 3 is a stride
 * ```
 */
export function blockActive(I: number, J: number, layout: BlockSparseLayout): boolean {
  const d = I - J;
  return d >= 0 && (d < layout.localBlocks || J < layout.globalBlocks || (layout.stride > 0 && d % layout.stride === 0));
}

/**
 * Whether key j is visible to query i: its blocks are active and j ≤ i (the token mask M of
 * the {@link "block-sparse" | BlockSparse guide}).
 *
 * @example
 * ```ts
 * tokenVisible(9, 1, { blockSize: 4, localBlocks: 1, globalBlocks: 1, stride: 0 }); // true: block 0 is global
 * ```
 */
export function tokenVisible(i: number, j: number, layout: BlockSparseLayout): boolean {
  return j <= i && blockActive(Math.floor(i / layout.blockSize), Math.floor(j / layout.blockSize), layout);
}

/**
 * The key blocks that query block I attends to, ascending, enumerated from the three rules
 * rather than by testing every J ≤ I, so building a layout costs its active blocks.
 */
function activeKeyBlocks(I: number, layout: BlockSparseLayout): number[] {
  const seen = new Set<number>();
  for (let J = 0; J < Math.min(layout.globalBlocks, I + 1); J++) seen.add(J);
  for (let J = Math.max(0, I - layout.localBlocks + 1); J <= I; J++) seen.add(J);
  if (layout.stride > 0) for (let J = I; J >= 0; J -= layout.stride) seen.add(J);
  return [...seen].sort((a, b) => a - b);
}

/**
 * The active blocks of a layout over T tokens, in compressed sparse rows and columns.
 * `colIdx[rowPtr[I] .. rowPtr[I + 1])` are the key blocks query block I attends to, and
 * `rowIdx[colPtr[J] .. colPtr[J + 1])` the query blocks that attend to key block J (the
 * transpose, for the dK/dV pass), both ascending.
 */
export interface BlockSparseCsr {
  /** Blocks along the sequence, ⌈T / b⌉. */
  numBlocks: number;
  /** `[numBlocks + 1]` row pointers into `colIdx`. */
  rowPtr: Int32Array;
  /** `[active blocks]` key block of each active block, row by row. */
  colIdx: Int32Array;
  /** `[numBlocks + 1]` column pointers into `rowIdx`. */
  colPtr: Int32Array;
  /** `[active blocks]` query block of each active block, column by column. */
  rowIdx: Int32Array;
}

/**
 * What one kernel pass reads to find its work: a flat list of u32 pairs, uploaded as one buffer
 * (WebGPU guarantees only 8 storage buffers per shader stage, and the dK/dV pass uses all 8).
 * Pairs 0 and 1 are the layout, (b, w) and (g, s); pair 2 + 2t holds the rows `[first, end)`
 * of tile t and pair 3 + 2t the pairs `[first, end)` of this list that are its runs; each run
 * is a range `[first, end)` of keys (transposed: of queries).
 */
export interface TilePlan {
  numTiles: number;
  /** `[pairs, 2]` int32, read as `vec2<u32>`. */
  pairs: Int32Array;
  /** Names the plan: plans of equal keys hold equal pairs. */
  key: string;
}

/** CSRs and plans are rebuilt only when this many other (T, layout)s have been used since. */
const CACHE_SIZE = 32;
const csrCache = new Map<string, BlockSparseCsr>();
const planCache = new Map<string, { forward: TilePlan; transposed: TilePlan }>();

function layoutKey(T: number, l: BlockSparseLayout): string {
  return `${T}|${l.blockSize}|${l.localBlocks}|${l.globalBlocks}|${l.stride}`;
}

function memo<V>(cache: Map<string, V>, key: string, build: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = build();
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
  } else {
    // re-insert: the map's order is then least recently used first
    cache.delete(key);
  }
  cache.set(key, value);
  return value;
}

/**
 * The active blocks of `layout` over T tokens as CSR (rows and the transposed columns), built
 * once per (T, layout) in time proportional to the active blocks and cached.
 *
 * @example
 * ```ts
 * const csr = blockSparseCsr(10, { blockSize: 4, localBlocks: 1, globalBlocks: 1, stride: 0 });   // three blocks, the last of 2 tokens
 * csr.rowPtr;   // [0, 1, 3, 5]
 * csr.colIdx;   // [0, 0, 1, 0, 2]
 * ```
 */
export function blockSparseCsr(T: number, layout: BlockSparseLayout): BlockSparseCsr {
  return memo(csrCache, layoutKey(T, layout), () => {
    const numBlocks = Math.ceil(T / layout.blockSize);
    const rows = Array.from({ length: numBlocks }, (_, I) => activeKeyBlocks(I, layout));
    const rowPtr = new Int32Array(numBlocks + 1);
    rows.forEach((row, I) => { rowPtr[I + 1] = rowPtr[I]! + row.length; });
    const colIdx = Int32Array.from(rows.flat());
    // transpose by counting: rows are visited in order, so each column comes out ascending
    const colPtr = new Int32Array(numBlocks + 1);
    for (const J of colIdx) colPtr[J + 1]!++;
    for (let J = 0; J < numBlocks; J++) colPtr[J + 1]! += colPtr[J]!;
    const rowIdx = new Int32Array(colIdx.length);
    const next = colPtr.slice(0, numBlocks);
    rows.forEach((row, I) => { for (const J of row) rowIdx[next[J]!++] = I; });
    return { numBlocks, rowPtr, colIdx, colPtr, rowIdx };
  });
}

/**
 * Cuts the T rows into the kernels' tiles of at most `rows` rows (one workgroup each), aligned
 * to blocks: a block longer than `rows` is split into equal tiles, several shorter blocks share
 * one. Returns per tile its rows and its blocks `[firstBlock, endBlock)`.
 */
function tilesOf(T: number, b: number, rows: number): Array<[number, number, number, number]> {
  const numBlocks = Math.ceil(T / b);
  const out: Array<[number, number, number, number]> = [];
  if (b >= rows) {
    const perBlock = Math.ceil(b / rows);
    const height = Math.ceil(b / perBlock);
    for (let I = 0; I < numBlocks; I++) {
      for (let first = I * b; first < Math.min((I + 1) * b, T); first += height) {
        out.push([first, Math.min(first + height, (I + 1) * b, T), I, I + 1]);
      }
    }
  } else {
    const blocksPerTile = Math.floor(rows / b);
    for (let I = 0; I < numBlocks; I += blocksPerTile) {
      out.push([I * b, Math.min((I + blocksPerTile) * b, T), I, Math.min(I + blocksPerTile, numBlocks)]);
    }
  }
  return out;
}

/**
 * One plan: per tile, the union of the CSR lists of its blocks (`ptr`, `idx`), consecutive
 * blocks merged into runs of tokens, each run clipped to `clip` of the tile (keys after a tile's
 * last query, or queries before a tile's first key, see nothing).
 */
function plan(
  T: number, layout: BlockSparseLayout, rows: number, ptr: Int32Array, idx: Int32Array,
  clip: (first: number, end: number) => [number, number], key: string,
): TilePlan {
  const b = layout.blockSize;
  const tileList = tilesOf(T, b, rows);
  const pairs = [b, layout.localBlocks, layout.globalBlocks, layout.stride];
  const runs: number[] = [];
  const runBase = 2 + 2 * tileList.length;
  for (const [first, end, I0, I1] of tileList) {
    const blocks = [...new Set(idx.subarray(ptr[I0]!, ptr[I1]!))].sort((x, y) => x - y);
    const [lo, hi] = clip(first, end);
    const firstRun = runBase + runs.length / 2;
    for (let n = 0; n < blocks.length;) {
      let m = n + 1;
      while (m < blocks.length && blocks[m] === blocks[m - 1]! + 1) m++;
      runs.push(Math.max(blocks[n]! * b, lo), Math.min(blocks[m - 1]! * b + b, hi));
      n = m;
    }
    pairs.push(first, end, firstRun, runBase + runs.length / 2);
  }
  return { numTiles: tileList.length, pairs: Int32Array.from([...pairs, ...runs]), key };
}

/**
 * The kernels' plans for `layout` over T tokens with tiles of at most `rows` rows, built from
 * {@link blockSparseCsr} and cached: `forward` maps query tiles to runs of keys (the forward
 * and dQ passes), `transposed` maps key tiles to runs of queries (the dK/dV pass). A tile
 * inside one block reads exactly that block's active key blocks; a tile of several short
 * blocks reads the union of theirs, and each row masks what it does not see.
 *
 * @example
 * ```ts
 * const { forward } = tilePlans(256, { blockSize: 64, localBlocks: 2, globalBlocks: 1, stride: 0 }, 64);
 * forward.numTiles;   // 4: tile 3 (rows 192..256) reads keys 0..64 and 128..256
 * ```
 */
export function tilePlans(T: number, layout: BlockSparseLayout, rows: number): { forward: TilePlan; transposed: TilePlan } {
  const key = `${layoutKey(T, layout)}|${rows}`;
  return memo(planCache, key, () => {
    const csr = blockSparseCsr(T, layout);
    return {
      forward: plan(T, layout, rows, csr.rowPtr, csr.colIdx, (_first, end) => [0, end], `${key}|forward`),
      transposed: plan(T, layout, rows, csr.colPtr, csr.rowIdx, (first) => [first, T], `${key}|transposed`),
    };
  });
}

/**
 * The keys visible to query i, ascending: the decode step's gather list. Costs the active
 * blocks of i's block, independent of i.
 *
 * @example
 * ```ts
 * visibleKeys(9, { blockSize: 4, localBlocks: 1, globalBlocks: 1, stride: 0 }); // [0, 1, 2, 3, 8, 9]
 * ```
 */
export function visibleKeys(i: number, layout: BlockSparseLayout): Int32Array {
  const b = layout.blockSize;
  const I = Math.floor(i / b);
  const keys: number[] = [];
  for (const J of activeKeyBlocks(I, layout)) {
    for (let j = J * b; j <= Math.min(J * b + b - 1, i); j++) keys.push(j);
  }
  return Int32Array.from(keys);
}

/**
 * How many keys query i sees: the length of {@link visibleKeys}`(i, layout)`, without the list.
 *
 * @example
 * ```ts
 * visibleKeyCount(9, { blockSize: 4, localBlocks: 1, globalBlocks: 1, stride: 0 }); // 6
 * ```
 */
export function visibleKeyCount(i: number, layout: BlockSparseLayout): number {
  const b = layout.blockSize;
  return activeKeyBlocks(Math.floor(i / b), layout).reduce((n, J) => n + Math.min(b, i + 1 - J * b), 0);
}

/**
 * Draws the blocks of `layout` over T tokens as an ASCII grid: query blocks I down, key blocks J
 * across; `L` local window (diagonal included), `G` global, `S` strided, `.` inactive (a block
 * that is several kinds shows the first of L, G, S).
 *
 * @example
 * ```ts
 * console.log(drawBlockSparseLayout(30, { blockSize: 4, localBlocks: 2, globalBlocks: 1, stride: 3 }));
 * // T = 30, blockSize 4: 8 blocks, the last partial (2 tokens)
 * // localBlocks 2, globalBlocks 1, stride 3: 26 of 36 causal blocks active
 * //     J 0 1 2 3 4 5 6 7
 * // I  0  L . . . . . . .
 * // I  1  L L . . . . . .
 * // I  2  G L L . . . . .
 * // I  3  G . L L . . . .
 * // I  4  G S . L L . . .
 * // I  5  G . S . L L . .
 * // I  6  G . . S . L L .
 * // I  7  G S . . S . L L
 * ```
 */
export function drawBlockSparseLayout(T: number, layout: BlockSparseLayout): string {
  const { blockSize: b, localBlocks: w, globalBlocks: g, stride: s } = layout;
  const csr = blockSparseCsr(T, layout);
  const n = csr.numBlocks;
  const width = String(n - 1).length + 1;
  const pad = (x: string | number) => String(x).padStart(width);
  const last = T - (n - 1) * b;
  const lines = [
    `T = ${T}, blockSize ${b}: ${n} block${n === 1 ? '' : 's'}${last < b ? `, the last partial (${last} token${last === 1 ? '' : 's'})` : ''}`,
    `localBlocks ${w}, globalBlocks ${g}, stride ${s}: ${csr.colIdx.length} of ${(n * (n + 1)) / 2} causal blocks active`,
    `${' '.repeat(width + 2)}J${Array.from({ length: n }, (_, J) => pad(J)).join('')}`,
  ];
  for (let I = 0; I < n; I++) {
    const cells = Array.from({ length: n }, (_, J) => {
      if (!blockActive(I, J, layout)) return pad('.');
      return pad(I - J < w ? 'L' : J < g ? 'G' : 'S');
    });
    lines.push(`I ${pad(I)} ${cells.join('')}`);
  }
  return lines.join('\n');
}
