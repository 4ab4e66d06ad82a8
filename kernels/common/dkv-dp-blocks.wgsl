// dK/dV by blocks (common/attention-backward-dkv-blocks.wgsl) with dp = v_j·dO_i formed by blocks,
// as the scores are: the values staged beside the keys (16 KB more at K = 64, where the adapter
// grants it), each invocation forms its block's scores and dp together (two vec4 reads per channel
// for 16 multiply-adds each, where a key row read a float for each) and weighs its block's pairs
// at once.

// the tile's values, staged as the keys are
var<workgroup> valueRows: RowTile;
var<private> dsBlock: array<vec4<f32>, 4>; // the block's dS, row by row

fn stageOwn() {
  loadRows(&rowTile, false);
  loadRows(&valueRows, true);
}

// The block's scores and dp, then its pairs' weights (into sTile) and dS (kept) for the tile's
// queries i0 … i0 + n − 1 of head h; each key row's queries it meets, for the last steps.
fn weighQueries(b: u32, h: u32, i0: u32, n: u32) {
  let j = tile.rows.x + lid;
  var live = 0u;
  for (var e4 = 0u; e4 < BC4; e4++) { live |= liveTile[e4] << (4u * e4); }
  var seen = 0u;
  if (j < tile.rows.y) { seen = queriesSeen(b, j, i0, n); }
  // the queries whose output gradient is 0 stay out (liveQueries)
  keySeenBits[lid] = seen & live;
  let at = blockAt(lid);
  let m = at.x;
  let r4 = at.y;
  let s = blockOf(&rowTile, &qQuads, m, r4);
  let dp = blockOf(&valueRows, &dOQuads, m, r4);
  let i = i0 + 4u * r4;
  // $ {
  let j$ = tile.rows.x + 4u * m + $u;
  var take$ = vec4<bool>(false);
  if (j$ < tile.rows.y && 4u * r4 < n) {
    take$ = quadSeen(queriesSeen(b, j$, i, min(4u, n - 4u * r4)), 0u) & quadSeen(liveTile[r4], 0u);
  }
  let g$ = quadWeights(take$, s[$u], dp[$u], b, h, i, j$, r4);
  sWrite(4u * m + $u, r4, g$[0]);
  dsBlock[$u] = g$[1];
  // $ }
}

// The block's dS in place of its weights.
fn writeDs(n: u32) {
  let at = blockAt(lid);
  sWrite(4u * at.x + $u, at.y, dsBlock[$u]);
}
