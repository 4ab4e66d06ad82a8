// Shared by the BlockSparse kernels: the tile plan and the layout's token mask (MIXERS.md §5).
// Expects the host's `const BR` and a `plan: array<vec2<u32>>` binding, built on the host by tilePlans in
// src/mixers/block-sparse/layout.ts: pairs 0 and 1 the layout (b, w) and (g, s); pair 2 + 2t
// the rows [first, end) of tile t, pair 3 + 2t the range of pairs holding its runs; each run a
// range [first, end) of keys (of queries in the transposed plan of the dK/dV pass).

struct BlockLayout {
  b: u32, // tokens per block
  w: u32, // local window in blocks, the diagonal included
  g: u32, // global blocks
  s: u32, // stride in blocks, 0 for none
}

var<private> blocks: BlockLayout;

// reads the layout from the head of the plan; every entry point calls it first
fn loadLayout() {
  blocks = BlockLayout(plan[0].x, plan[0].y, plan[1].x, plan[1].y);
}

// rows [first, end) of tile t
fn tileRows(t: u32) -> vec2u {
  return plan[2u + 2u * t];
}

// the plan entries [first, end) that are tile t's runs
fn tileRuns(t: u32) -> vec2u {
  return plan[3u + 2u * t];
}

// key j is visible to query i: j ≤ i, and block (⌊i/b⌋, ⌊j/b⌋) is active. A block of at least
// BR rows holds whole tiles, whose runs are exactly their block's active key blocks, so there
// j ≤ i decides alone; a tile of several shorter blocks reads the union of their key blocks,
// and each row tests its own.
fn sees(i: u32, j: u32) -> bool {
  if (j > i) { return false; }
  if (blocks.b >= BR) { return true; }
  let J = j / blocks.b;
  let d = i / blocks.b - J;
  return d < blocks.w || J < blocks.g || (blocks.s > 0u && d % blocks.s == 0u);
}
