// dQ by blocks (common/attention-backward-dq-blocks.wgsl) with dp = dO_i·v_j formed by rows: only
// scale·q is staged (the workgroup memory of adapters that grant 32 KB at K = 64), and invocation
// i, after the tile's blocks of scores, takes its own row, its output gradient in registers and the
// values by rows: a float of workgroup memory for each multiply-add.

var<private> doi: array<V, KV>; // the row's output gradient
var<private> factor: f32; // rowFactor of its forward statistic
var<private> delta: f32; // its rowsum(dO∘o)
// whether its output gradient is nonzero: a row whose output gradient is 0 adds nothing, and
// skipping it keeps 0·NaN, from a non-finite key or value it sees, out of the other gradients
var<private> live: bool;

// Row i (the invocation's): its statistic's factor and delta, and its output gradient.
fn startRow(t: QueryTile, i: u32) {
  let base = queryBase(t, i);
  let st = stats[(t.b * params.H + t.h) * params.Tq + min(i, t.rows.y - 1u)];
  factor = rowFactor(st.x);
  delta = st.y;
  for (var x = 0u; x < KV; x++) { doi[x] = dO[base + x]; live = live || any(doi[x] != V(0.0)); }
  live = live && i < t.rows.y;
}

// The scores, then row i (the invocation's) turns the tile's scores of the keys j0 … j0 + n − 1 it
// sees into their dS.
fn weighKeys(t: QueryTile, i: u32, j0: u32, n: u32) {
  blockScores(&kQuads);
  workgroupBarrier();
  let seen = select(0u, tileSeen(t, i, j0, n), live);
  rowSeen[lid] = seen;
  let n4 = (n + 3u) / 4u;
  for (var r4 = 0u; r4 < n4; r4++) {
    let r = 4u * r4;
    var dx = V(0.0);
    var dy = V(0.0);
    var dz = V(0.0);
    var dw = V(0.0);
    for (var x = 0u; x < KV; x++) {
      dx += doi[x] * tileValue(r, x);
      dy += doi[x] * tileValue(r + 1u, x);
      dz += doi[x] * tileValue(r + 2u, x);
      dw += doi[x] * tileValue(r + 3u, x);
    }
    // dropout: the weight's gradient is dP times its multiplier (see pairGrads)
    let dp = vec4<f32>(lanesSum(dx), lanesSum(dy), lanesSum(dz), lanesSum(dw)) * dropKeep4(t.b, t.h, i, j0 + r);
    sWrite(lid, r4, quadGrads(quadSeen(seen, r4), sRead(lid, r4), dp, factor, delta));
  }
}
