// The attention forward by blocks of scores: the skeleton's tiled forward (common/attention-
// forward.wgsl's workgroups, tiles of BR query rows, the same key sweep, layouts, row hooks,
// visibility, dropout and split launches) with the work of a key tile cut three ways, so that
// each value an invocation reads from workgroup memory serves several multiply-adds on both
// sides of a product:
//   1. scores: invocation (m, r4) forms the 4×4 block of scores of query quad m and key quad r4
//      (common/score-blocks.wgsl: blockScores);
//   2. weights: invocation i takes the tile's scores of its own row i, through the row hooks
//      (weighTile) as the rows' pass does, and leaves its weights times the dropout multipliers,
//      its rescale factor and its visible keys for the third step;
//   3. values: invocation (m, u) adds the tile's weighted values to channel groups u, u + 4, …
//      of the rows of query quad m, one vec4 of weights serving four keys of a row.
// Two barriers more a tile than the rows' pass, which a GPU's workgroups overlap; src/attention/
// kernel-source.ts (byBlocks) chooses this kernel only where its workgroup memory fits.
// Expects common/lanes-4.wgsl, common/attention.wgsl, common/visibility.wgsl,
// common/dropout.wgsl, a layout, the row hooks, common/forward-bindings.wgsl,
// common/key-quads.wgsl, common/value-rows.wgsl, common/kv-tile.wgsl, common/score-blocks.wgsl,
// common/query-blocks.wgsl and the host's `const KV, BR, BC, BC4, RQ, NT`.

// each row's rescale of its accumulator for the tile; after the sweep, its output factor
var<workgroup> rowFactors: array<f32, BR>;

var<private> row: RowState; // the second step's row, t.rows.x + lid
var<private> acc$: array<V, KB>; // the third step's rows' accumulators

// Steps 1 and 2: the tile's scores, then row i (the invocation's) weighs the keys j0 … j0 + n − 1
// it sees.
fn weighKeys(t: QueryTile, i: u32, j0: u32, n: u32) {
  blockScores(&kQuads);
  workgroupBarrier();
  let seen = tileSeen(t, i, j0, n);
  var w: array<vec4<f32>, BC4>;
  for (var r4 = 0u; r4 < BC4; r4++) { w[r4] = sRead(lid, r4); }
  let n4 = (n + 3u) / 4u;
  rowFactors[lid] = weighTile(&row, &w, n4, seen);
  // a non-finite value the row sees spoils it, as a non-finite score does (common/attend-tile.wgsl)
  if ((seen & tileBadValues()) != 0u) { spoilRow(&row); }
  rowSeen[lid] = seen;
  for (var r4 = 0u; r4 < n4; r4++) { sWrite(lid, r4, w[r4] * dropKeep4(t.b, t.h, i, j0 + 4u * r4)); }
}

// Step 3: the weighted values of the tile's n keys into the accumulators of query quad m's rows,
// channel groups u, u + 4, …: rescaled first by each row's factor. A key one of the rows does
// not see never meets that row, so that its value, which may be non-finite, stays out of it.
fn quadStep(m: u32, u: u32, n: u32) {
  let f$ = rowFactors[4u * m + $u];
  let seen$ = rowSeen[4u * m + $u];
  for (var x = 0u; x < KB; x++) {
    acc$[x] *= f$;
  }
  let some = seen0 | seen1 | seen2 | seen3;
  let every = seen0 & seen1 & seen2 & seen3;
  let n4 = (n + 3u) / 4u;
  for (var r4 = 0u; r4 < n4; r4++) {
    if (!any(quadSeen(some, r4))) { continue; }
    let r = 4u * r4;
    let p$ = sRead(4u * m + $u, r4);
    if (all(quadSeen(every, r4))) {
      for (var x = 0u; x < KB; x++) {
        let c = 4u * x + u;
        let v0 = tileValue(r, c);
        let v1 = tileValue(r + 1u, c);
        let v2 = tileValue(r + 2u, c);
        let v3 = tileValue(r + 3u, c);
        acc$[x] = acc$[x] + p$.x * v0 + p$.y * v1 + p$.z * v2 + p$.w * v3;
      }
    } else {
      let quad$ = quadSeen(seen$, r4);
      for (var e = 0u; e < 4u; e++) {
        if (quad$[e]) { for (var x = 0u; x < KB; x++) { acc$[x] += p$[e] * tileValue(r + e, 4u * x + u); } }
      }
    }
  }
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) index: u32) {
  let t = startBlocks(wid, index);
  let i = t.rows.x + lid;
  row = initRow();
  sweepKeys(t, lid, i, true);
  // the row's output factor (a split launch's partial rows stay unnormalised) and statistic
  var factor = 1.0;
  if (params.splits > 0u) {
    let at = ((t.b * params.H + t.h) * params.Tq + i) * params.splits + t.part;
    let part = packRow(&row);
    if (i < t.rows.y) { stat[2u * at] = part.x; stat[2u * at + 1u] = part.y; }
  } else {
    let out = finishRow(&row);
    factor = out.x;
    if (i < t.rows.y) { stat[(t.b * params.H + t.h) * params.Tq + i] = out.y; }
  }
  workgroupBarrier(); // the last tile's factors have been read
  rowFactors[lid] = factor;
  workgroupBarrier();
  // the last step's quad and quarter (blockAt)
  let at = blockAt(lid);
  let m = at.x;
  let u = at.y;
  // $ {
  if (t.rows.x + 4u * m + $u < t.rows.y) {
    let i$ = t.rows.x + 4u * m + $u;
    let f$ = rowFactors[4u * m + $u];
    if (params.splits > 0u) {
      let at$ = ((t.b * params.H + t.h) * params.Tq + i$) * params.splits + t.part;
      for (var x = 0u; x < KB; x++) { o[at$ * KV + 4u * x + u] = acc$[x]; }
    } else {
      let base$ = queryBase(t, i$);
      for (var x = 0u; x < KB; x++) { o[base$ + 4u * x + u] = acc$[x] * f$; }
    }
  }
  // $ }
}
