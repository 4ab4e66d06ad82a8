// The attention backward's dQ by blocks of scores: the skeleton's dQ (common/attention-backward-
// dq.wgsl's workgroups, tiles of BR query rows, the same key sweep, layouts, weights hooks,
// visibility, dropout and split launches) with the work of a key tile cut three ways, as the
// forward by blocks cuts it (common/attention-forward-blocks.wgsl):
//   1. scores: invocation (m, r4) forms the 4×4 block of scores of query quad m and key quad r4
//      (common/score-blocks.wgsl: blockScores), summed as the forward sums them, so that each
//      weight meets the forward's statistic;
//   2. dS: invocation i takes its own row i: dp = dO_i·v_j for the tile's keys (its output
//      gradient in registers, the values by rows), times the dropout multipliers, and from the
//      row's factor and delta each visible pair's dS (the mixer's `pairGrads`), left in sTile in
//      place of the scores, with the keys the row sees;
//   3. dq: invocation (m, u) adds dS·k of the tile's keys to channel groups u, u + 4, … of the
//      rows of query quad m: the four keys' channels of a group, four vec4s of the key quads,
//      serve 64 multiply-adds (the rows' pass reads one for four).
// Expects common/lanes-4.wgsl, common/attention.wgsl, common/visibility.wgsl,
// common/dropout.wgsl, a layout, the mixer's `rowFactor` and `pairGrads`,
// common/backward-bindings.wgsl, common/dq-common.wgsl, common/key-quads.wgsl,
// common/kv-tile.wgsl, common/score-blocks.wgsl, common/query-blocks.wgsl and the host's
// `const KV, BR, BC, BC4, RQ, NT`.

var<private> doi: array<V, KV>; // the second step's row's output gradient
var<private> factor: f32; // rowFactor of its forward statistic
var<private> delta: f32; // its rowsum(dO∘o)
// whether its output gradient is nonzero: a row whose output gradient is 0 adds nothing, and
// skipping it keeps 0·NaN, from a non-finite key or value it sees, out of the other gradients
var<private> live: bool;
var<private> acc$: array<V, KB>; // the third step's rows' dq, channel groups u + 4x

// Step 2: row i (the invocation's) turns the tile's scores of the keys j0 … j0 + n − 1 it sees
// into their dS.
fn rowStep(t: QueryTile, i: u32, j0: u32, n: u32) {
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
    sTile[lid][r4] = quadGrads(quadSeen(seen, r4), sTile[lid][r4], dp, factor, delta);
  }
}

// Step 3: dS·k of the tile's n keys into the dq of query quad m's rows, channel groups u, u + 4, ….
// A key one of the rows does not see never meets that row, so that the key, which may be
// non-finite, stays out of its dq. The four u take the key quads in turns (u first): channel
// groups four apart lie 64 words apart in kQuads, the same memory banks, which the quads' offsets
// of 4 words then move apart.
fn quadStep(m: u32, u: u32, n: u32) {
  let seen$ = rowSeen[4u * m + $u];
  let some = seen0 | seen1 | seen2 | seen3;
  let n4 = (n + 3u) / 4u;
  for (var turn = 0u; turn < n4; turn++) {
    let r4 = (turn + u) % n4;
    if (!any(quadSeen(some, r4))) { continue; }
    let ds$ = sTile[4u * m + $u][r4];
    let take$ = quadSeen(seen$, r4);
    for (var x = 0u; x < KB; x++) {
      let kc = quadChannels(&kQuads, r4, 4u * x + u);
      acc$[x] = quadRowsAdd(acc$[x], kc, ds$, take$);
    }
  }
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) index: u32) {
  let t = startBlocks(wid, index);
  let i = t.rows.x + lid;
  let base = queryBase(t, i);
  let st = stats[(t.b * params.H + t.h) * params.Tq + min(i, t.rows.y - 1u)];
  factor = rowFactor(st.x);
  delta = st.y;
  for (var x = 0u; x < KV; x++) { doi[x] = dO[base + x]; live = live || any(doi[x] != V(0.0)); }
  live = live && i < t.rows.y;
  sweepKeys(t, lid, i, true);
  // a split launch writes each chunk's part of dq, which a later launch sums (common/sum-parts.wgsl)
  // the last step's quad and quarter (blockAt)
  let at = blockAt(lid);
  let m = at.x;
  let u = at.y;
  // $ {
  if (t.rows.x + 4u * m + $u < t.rows.y) {
    let at$ = partBase(queryBase(t, t.rows.x + 4u * m + $u), t.part);
    for (var x = 0u; x < KB; x++) { dq[at$ + 4u * x + u] = acc$[x] * params.scale; }
  }
  // $ }
}
