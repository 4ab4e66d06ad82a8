// The attention backward's dK and dV by blocks of scores: the skeleton's dK/dV (common/attention-
// backward-dkv.wgsl's workgroups, tiles of BR key rows, the same sweep over query tiles, layouts,
// weights hooks, visibility, dropout, GQA and split launches) with the work of a query tile cut as
// the passes by blocks cut a key tile (common/attention-forward-blocks.wgsl), the keys staged as
// their rows are:
//   1. weights: each pair's scores (common/score-blocks.wgsl's blocks over the query tile's quads,
//      summed as the forward sums them, so that each weight meets the forward's statistic) and
//      dp = v_j·dO_i give its weight times the dropout multiplier, left in sTile, and its dS, kept
//      in registers: the pass's `weighQueries` (common/dkv-dp-rows.wgsl, dp by key rows, or
//      common/dkv-dp-blocks.wgsl, dp by blocks as the scores, the values staged too);
//   2. dv: invocation (m, u) adds P·dO of the tile's queries to channel groups u, u + 4, … of key
//      quad m's dv, four vec4s of the output gradients' quads serving 64 multiply-adds;
//   3. the dS replace the weights in sTile (`writeDs`);
//   4. dk: as 2, dS·(scale·q).
// The weights and the dS take turns in sTile, as both beside the keys would pass the workgroup
// memory most adapters grant.
// Expects common/lanes-4.wgsl, common/attention.wgsl, common/visibility.wgsl,
// common/dropout.wgsl, a layout, the mixer's `rowFactor` and `pairGrads`,
// common/backward-bindings.wgsl, common/query-tile.wgsl, common/dkv-common.wgsl,
// common/score-blocks.wgsl, the dp part (`stageOwn`, `weighQueries`, `writeDs`) and the host's
// `const KV, BR, BC, BC4, RQ, NT`.

// each key row's queries of the tile (bit u: query i0 + u) that it meets and whose output
// gradient is not 0, for the last steps
var<workgroup> keySeenBits: array<u32, BR>;

var<private> tile: KeyTile;
var<private> dk$: array<V, KB>; // the last steps' key rows' dk and dv, channel groups u + 4x
var<private> dv$: array<V, KB>;

// Stages the tile's keys (or values) in `rows`, NT lanes at a time (each a channel group of a quad of rows).
fn loadRows(rows: ptr<workgroup, RowTile>, values: bool) {
  for (var e = lid; e < BR4 * KV; e += NT) {
    let m = e / KV;
    let c = e % KV;
    var quad: array<vec4<f32>, 4>;
    for (var u = 0u; u < 4u; u++) {
      let j = tile.rows.x + 4u * m + u;
      if (j < tile.rows.y) {
        let at = keyBase(tile.b, tile.hk, j) + c;
        if (values) { quad[u] = lanes4(v[at]); } else { quad[u] = lanes4(k[at]); }
      }
    }
    stageRows(rows, m, c, quad);
  }
}

// Steps 2 and 4: sTile's weights (or dS) times the tile's output gradients (or scale·q) into the dv
// (or dk) of key quad m's rows, channel groups u, u + 4, …. A query a key does not meet never
// meets that key, so that its values, which may be non-finite, stay out of the key's gradients.
// The four u take the query quads in turns (turnQuad): channel groups four apart lie 64 words
// apart in a QuadTile, the same memory banks, which the quads' offsets of 4 words then move apart.
fn quadStep(m: u32, u: u32, n: u32, keys: bool) {
  let seen$ = keySeenBits[4u * m + $u];
  let some = seen0 | seen1 | seen2 | seen3;
  let n4 = (n + 3u) / 4u;
  let first = u % max(n4, 1u);
  for (var turn = 0u; turn < n4; turn++) {
    let r4 = turnQuad(turn, first, n4);
    if (!any(quadSeen(some, r4))) { continue; }
    let w$ = sRead(4u * m + $u, r4);
    let take$ = quadSeen(seen$, r4);
    for (var x = 0u; x < KB; x++) {
      if (keys) {
        let qc = quadChannels(&qQuads, r4, 4u * x + u);
        dk$[x] = quadRowsAdd(dk$[x], qc, w$, take$);
      } else {
        let dc = quadChannels(&dOQuads, r4, 4u * x + u);
        dv$[x] = quadRowsAdd(dv$[x], dc, w$, take$);
      }
    }
  }
}

// The four steps over one tile of queries, from uniform control flow (common/dkv-common.wgsl's
// sweep).
fn visitQueries(b: u32, h: u32, i0: u32, n: u32) {
  weighQueries(b, h, i0, n);
  workgroupBarrier();
  let at = blockAt(lid);
  quadStep(at.x, at.y, n, false);
  workgroupBarrier();
  writeDs(n);
  workgroupBarrier();
  quadStep(at.x, at.y, n, true);
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) index: u32) {
  lid = index;
  // the sweep's bounds from a value, which the uniformity analysis can see is the workgroup's own
  let t = keyTile(wid);
  tile = t;
  stageOwn();
  sweepQueries(t, lid);
  // the q tile already carries the scale
  // the last steps' quad and quarter (blockAt)
  let at = blockAt(lid);
  let m = at.x;
  let u = at.y;
  // $ {
  if (tile.rows.x + 4u * m + $u < tile.rows.y) {
    let at$ = partBase(keyBase(tile.b, tile.hk, tile.rows.x + 4u * m + $u), tile.p.part);
    for (var x = 0u; x < KB; x++) {
      dk[at$ + 4u * x + u] = dk$[x];
      dv[at$ + 4u * x + u] = dv$[x];
    }
  }
  // $ }
}
