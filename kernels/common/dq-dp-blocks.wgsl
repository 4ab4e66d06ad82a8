// dQ by blocks (common/attention-backward-dq-blocks.wgsl) with dp = dO_i·v_j formed by blocks, as
// the scores are: the output gradients staged beside scale·q (16 KB more at K = 64, where the
// adapter grants it) and the values by quads (common/value-quads.wgsl), each invocation forms its
// block's scores and dp together (two vec4 reads per channel for 16 multiply-adds each, where a
// row read a float for each) and turns its block's pairs into dS at once.

// the tile's output gradients, staged as scale·q is
var<workgroup> doRows: RowTile;
var<workgroup> rowStats: array<vec2<f32>, BR>; // each row's rowFactor of its statistic, and its delta
// each row's output gradient is nonzero (1): a row whose output gradient is 0 adds nothing, and
// skipping it keeps 0·NaN, from a non-finite key or value it sees, out of the other gradients
var<workgroup> rowLive: array<u32, BR>;

// Row i (the invocation's): its factor, delta and liveness; and the tile's output gradients staged.
fn startRow(t: QueryTile, i: u32) {
  let base = queryBase(t, i);
  let st = stats[(t.b * params.H + t.h) * params.Tq + min(i, t.rows.y - 1u)];
  var live = false;
  for (var x = 0u; x < KV; x++) { live = live || any(dO[base + x] != V(0.0)); }
  rowStats[lid] = vec2<f32>(rowFactor(st.x), st.y);
  rowLive[lid] = select(0u, 1u, live && i < t.rows.y);
  for (var e = lid; e < BR4 * KV; e += NT) {
    let m = e / KV;
    let c = e % KV;
    var rows: array<vec4<f32>, 4>;
    for (var u = 0u; u < 4u; u++) {
      let r = t.rows.x + 4u * m + u;
      if (r < t.rows.y) { rows[u] = dO[queryBase(t, r) + c]; }
    }
    stageRows(&doRows, m, c, rows);
  }
}

// The block's scores and dp with the tile's keys j0 … j0 + n − 1, then its pairs' dS into sTile;
// row i's (the invocation's) visible keys, for the last step.
fn weighKeys(t: QueryTile, i: u32, j0: u32, n: u32) {
  rowSeen[lid] = select(0u, tileSeen(t, i, j0, n), rowLive[lid] != 0u);
  let at = blockAt(lid);
  let m = at.x;
  let r4 = at.y;
  let s = blockOf(&rowTile, &kQuads, m, r4);
  let dp = blockOf(&doRows, &vQuads, m, r4);
  let j = j0 + 4u * r4;
  // $ {
  let i$ = t.rows.x + 4u * m + $u;
  var seen$ = 0u;
  if (rowLive[4u * m + $u] != 0u && 4u * r4 < n) { seen$ = tileSeen(t, i$, j, min(4u, n - 4u * r4)); }
  let st$ = rowStats[4u * m + $u];
  // dropout: the weight's gradient is dP times its multiplier (see pairGrads)
  sWrite(4u * m + $u, r4, quadGrads(quadSeen(seen$, 0u), s[$u], dp[$u] * dropKeep4(t.b, t.h, i$, j), st$.x, st$.y));
  // $ }
}
