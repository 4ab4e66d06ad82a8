// The attention backward's dQ by blocks of scores: the skeleton's dQ (common/attention-backward-
// dq.wgsl's workgroups, tiles of BR query rows, the same key sweep, layouts, weights hooks,
// visibility, dropout and split launches) with the work of a key tile cut as the forward by blocks
// cuts it (common/attention-forward-blocks.wgsl):
//   1. dS: each pair's scores (common/score-blocks.wgsl's blocks, summed as the forward sums them,
//      so that each weight meets the forward's statistic) and dp = dO_i·v_j, times the dropout
//      multipliers, give each visible pair's dS (the mixer's `pairGrads`), left in sTile, with the
//      keys each row sees: the pass's `weighKeys` (common/dq-dp-rows.wgsl, dp by rows, or
//      common/dq-dp-blocks.wgsl, dp by blocks as the scores, dO staged too);
//   2. dq: invocation (m, u) adds dS·k of the tile's keys to channel groups u, u + 4, … of the
//      rows of query quad m: the four keys' channels of a group, four vec4s of the key quads,
//      serve 64 multiply-adds (the rows' pass reads one for four).
// Expects common/lanes-4.wgsl, common/attention.wgsl, common/visibility.wgsl,
// common/dropout.wgsl, a layout, the mixer's `rowFactor` and `pairGrads`,
// common/backward-bindings.wgsl, common/dq-common.wgsl, common/key-quads.wgsl with the values'
// store, common/kv-tile.wgsl, common/score-blocks.wgsl, common/query-blocks.wgsl, the dp part
// (`startRow`, `weighKeys`) and the host's `const KV, BR, BC, BC4, RQ, NT`.

var<private> acc$: array<V, KB>; // the last step's rows' dq, channel groups u + 4x

// Step 2: dS·k of the tile's n keys into the dq of query quad m's rows, channel groups u, u + 4, ….
// A key one of the rows does not see never meets that row, so that the key, which may be
// non-finite, stays out of its dq. The four u take the key quads in turns (turnQuad): channel
// groups four apart lie 64 words apart in kQuads, the same memory banks, which the quads' offsets
// of 4 words then move apart.
fn quadStep(m: u32, u: u32, n: u32) {
  let seen$ = rowSeen[4u * m + $u];
  let some = seen0 | seen1 | seen2 | seen3;
  let n4 = (n + 3u) / 4u;
  let first = u % max(n4, 1u);
  for (var turn = 0u; turn < n4; turn++) {
    let r4 = turnQuad(turn, first, n4);
    if (!any(quadSeen(some, r4))) { continue; }
    let ds$ = sRead(4u * m + $u, r4);
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
  startRow(t, i);
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
