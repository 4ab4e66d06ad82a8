// Attention backward skeleton, dK and dV (FlashAttention-2's), shared by
// FlashStyleTiledAttention, ExpressiveAttention and BlockSparse: per key row j of kv head hk,
// stream the queries that may see its tile (the layout's runs narrowed by queryRange and
// queryRangeIn, query tiles whose segment ids cannot meet the key tile's skipped), for every
// query head that reads hk, recompute s = scale·q·kᵀ and, from the forward's per-row statistic,
// each visible pair's weight p and dS (the mixer's `pairGrads`), and accumulate
// dv = Σ_i p_i·m_i·dO_i and dk = scale·Σ_i dS_i·q_i, m the dropout multiplier
// (common/dropout.wgsl; 1 without dropout). Summing over the query heads of a group is GQA's
// summed dK, dV.
// One workgroup per (tile of key rows, kv head hk, batch b), RQ adjacent key rows per invocation
// (or per four lanes of a subgroup: common/row-quarters.wgsl), which share every query and output
// gradient it reads from workgroup memory, queries by quads (a quad's scores, weights and dS are
// one vec4); a line holding the row mark is written once per key row (src/webgpu/copies.ts,
// expandCopies).
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/backward-bindings.wgsl, common/query-tile.wgsl, common/dkv-common.wgsl, an entry point
// and a layout (see common/attention-forward.wgsl; its tiles and runs here are the transposed
// plan's), the mixer's `rowFactor` and `pairGrads`, and the host's
// `const KV, KL, RL, BR, BC, BC4, RQ, NT` (NT = RL·BR / RQ invocations per workgroup).

// the invocation's channels (channel(x) at x) of:
var<private> kj$: array<V, KL>; // key row $
var<private> vj$: array<V, KL>; // its value
var<private> dkAcc$: array<V, KL>; // its dk, zero-initialised
var<private> dvAcc$: array<V, KL>; // its dv
var<private> keyBase$: u32; // where key row $ starts in k and v

// Where a key row's key and value would take too many registers (keysInMemory in
// src/attention/kernel-source.ts: a GPU spills past its per-invocation limit, and a row here holds
// four arrays of K floats), each invocation holds only its rows' dk and dv, and reads a key's and
// value's channels from k and v where it uses them: loads that its cache serves, in place of spills.
override KEYS_IN_MEMORY: bool = false;

// Channel group channel(x) of a key row: held in `held`, or read from k at `base`.
fn keyChannel(held: ptr<private, array<V, KL>>, base: u32, x: u32) -> V {
  if (KEYS_IN_MEMORY) { return k[base + channel(x)]; }
  return (*held)[x];
}

// Channel group channel(x) of a key row's value: held in `held`, or read from v at `base`.
fn valueChannel(held: ptr<private, array<V, KL>>, base: u32, x: u32) -> V {
  if (KEYS_IN_MEMORY) { return v[base + channel(x)]; }
  return (*held)[x];
}

// Folds quad e4 of the tile (its first row i of head h; n rows in the tile) into those of the
// invocation's key rows j, j + 1, …, j + RQ − 1 (each at most `last`: a row past the tile's end
// repeats the last and is never written) that see its queries.
fn visitQuad(b: u32, h: u32, i: u32, e4: u32, n: u32, j: u32, last: u32) {
  let j$ = min(j + $u, last);
  let seen$ = queriesSeen(b, j$, i, min(4u, n - 4u * e4));
  var some = 0u; // the queries some key row sees
  some |= seen$;
  if (some == 0u) { return; }
  var sx$ = vec4<f32>(0.0);
  var sy$ = vec4<f32>(0.0);
  var sz$ = vec4<f32>(0.0);
  var sw$ = vec4<f32>(0.0);
  var px$ = vec4<f32>(0.0);
  var py$ = vec4<f32>(0.0);
  var pz$ = vec4<f32>(0.0);
  var pw$ = vec4<f32>(0.0);
  for (var x = 0u; x < KL; x++) {
    let qc = quadChannels(&qQuads, e4, channel(x));
    let dc = quadChannels(&dOQuads, e4, channel(x));
    let k$ = lanes4(keyChannel(&kj$, keyBase$, x));
    let v$ = lanes4(valueChannel(&vj$, keyBase$, x));
    sx$ += k$.x * qc[0];
    sy$ += k$.y * qc[1];
    sz$ += k$.z * qc[2];
    sw$ += k$.w * qc[3];
    px$ += v$.x * dc[0];
    py$ += v$.y * dc[1];
    pz$ += v$.z * dc[2];
    pw$ += v$.w * dc[3];
  }
  // the queries whose output gradient is 0 stay out (liveQueries)
  let take$ = quadSeen(seen$, 0u) & quadSeen(liveTile[e4], 0u);
  // the scores in the order of a lanesSum dot product, as the forward forms them
  let g$ = quadWeights(take$, rowScores(sx$ + sy$ + sz$ + sw$), rowScores(px$ + py$ + pz$ + pw$), b, h, i, j$, e4);
  // each key row leaves out the queries it does not meet, whose q and dO may be non-finite
  for (var x = 0u; x < KL; x++) {
    let qc = quadChannels(&qQuads, e4, channel(x));
    let dc = quadChannels(&dOQuads, e4, channel(x));
    dvAcc$[x] = quadRowsAdd(dvAcc$[x], dc, g$[0], take$);
    dkAcc$[x] = quadRowsAdd(dkAcc$[x], qc, g$[1], take$);
  }
}

// The invocation's first key row, the tile's last (a row past the tile's end repeats it and is never
// written) and the tile's end.
var<private> firstRow: u32;
var<private> lastRow: u32;
var<private> rowsEnd: u32;

// Folds the tile's queries i0 … i0 + n − 1 of head h, by quads, into the invocation's key rows.
fn visitQueries(b: u32, h: u32, i0: u32, n: u32) {
  if (firstRow < rowsEnd) {
    for (var e4 = 0u; e4 < (n + 3u) / 4u; e4++) { visitQuad(b, h, i0 + 4u * e4, e4, n, firstRow, lastRow); }
  }
}

// The pass for invocation `lid` of workgroup wid, which takes (its channels of) the tile's key row
// group g: rows rows.x + RQ·g onwards. Called by the entry point.
fn tiledPass(wid: vec3u, lid: u32, g: u32) {
  let t = keyTile(wid);
  let j = t.rows.x + RQ * g;
  firstRow = j;
  lastRow = t.rows.y - 1u;
  rowsEnd = t.rows.y;
  let base$ = keyBase(t.b, t.hk, min(j + $u, lastRow));
  keyBase$ = base$;
  if (!KEYS_IN_MEMORY) {
    for (var x = 0u; x < KL; x++) { kj$[x] = k[base$ + channel(x)]; vj$[x] = v[base$ + channel(x)]; }
  }
  sweepQueries(t, lid);
  // the q tile already carries the scale
  // $ {
  let at$ = partBase(base$, t.p.part);
  if (j + $u < t.rows.y) {
    for (var x = 0u; x < KL; x++) { dk[at$ + channel(x)] = dkAcc$[x]; dv[at$ + channel(x)] = dvAcc$[x]; }
  }
  // $ }
}
