// The layout hooks of common/attention-{forward,backward-dq,backward-dkv}.wgsl for BlockSparse:
// the tile plan and the layout's token mask (docs/block-sparse.md). Expects common/visibility.wgsl,
// block-rule.wgsl and the host's `const BR`. The plan lies in the packed `vis` buffer, from `params.planAt`, built on the host by tilePlans
// in src/mixers/block-sparse/layout.ts as pairs of u32: pairs 0 and 1 the layout (b, w) and
// (g, s); pair 2 + 2t the rows [first, end) of tile t, pair 3 + 2t the range of pairs holding
// its runs; each run a range [first, end) of keys (of queries in the transposed plan of the
// dK/dV pass).

var<private> blocks: BlockLayout;

// pair n of the plan, which starts at params.planAt in `vis`
fn planPair(n: u32) -> vec2u {
  let at = params.planAt + 2u * n;
  return vec2u(u32(vis[at]), u32(vis[at + 1u]));
}

// reads the layout from the head of the plan; every entry point calls it first
fn loadLayout() {
  let bw = planPair(0u);
  let gs = planPair(1u);
  blocks = BlockLayout(bw.x, bw.y, gs.x, gs.y);
}

// rows [first, end) of tile t
fn tileRows(t: u32, total: u32) -> vec2u {
  return planPair(2u + 2u * t);
}

// the plan entries [first, end) that are tile t's runs
fn tileRuns(t: u32) -> vec2u {
  return planPair(3u + 2u * t);
}

// run r: rows [first, end) of the other side
fn tileRun(r: u32, total: u32) -> vec2u {
  return planPair(r);
}

// j ≤ i, and block (⌊i/b⌋, ⌊j/b⌋) is active. A block of at least BR rows holds whole tiles,
// whose runs are exactly their block's active key blocks, so there j ≤ i decides alone; a tile
// of several shorter blocks reads the union of their key blocks, and each row tests its own.
fn sees(i: u32, j: u32) -> bool {
  if (j > i) { return false; }
  if (blocks.b >= BR) { return true; }
  return blockActive(i / blocks.b, j / blocks.b, blocks);
}

// the keys j0 … j0 + n − 1 that query i of row b sees, as bits
fn keysSeen(b: u32, i: u32, j0: u32, n: u32) -> u32 {
  var seen = 0u;
  for (var r = 0u; r < n; r++) {
    if (sees(i, j0 + r)) { seen |= 1u << r; }
  }
  return seen & visibleKeys(b, i, j0, n);
}

// the queries i0 … i0 + n − 1 of row b that see key j, as bits
fn queriesSeen(b: u32, j: u32, i0: u32, n: u32) -> u32 {
  var seen = 0u;
  for (var u = 0u; u < n; u++) {
    if (sees(i0 + u, j)) { seen |= 1u << u; }
  }
  return seen & visibleQueries(b, j, i0, n);
}
