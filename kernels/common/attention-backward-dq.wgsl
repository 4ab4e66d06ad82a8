// Attention backward skeleton, dQ (FlashAttention-2's), shared by FlashStyleTiledAttention,
// ExpressiveAttention and BlockSparse: per query row, recompute the scores s = scale·q·kᵀ over
// the same key tiles as the forward (sweepKeys) and, from the forward's per-row statistic, each
// visible pair's dS (the mixer's `pairGrads`), then dq = scale·Σ_j dS_j·k_j. With dropout, a
// weight a_ij enters o as a_ij·m_ij (m = dropKeep: 0 or 1/(1 − p)), so the loss sees the weight
// through dP_ij·m_ij, and pairGrads takes that in place of dP.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/backward-bindings.wgsl, common/dq-common.wgsl, common/row-registers.wgsl,
// common/key-quads.wgsl, common/quad-scores.wgsl, common/kv-tile.wgsl, an entry point and a
// layout (see common/attention-forward.wgsl), the mixer's `rowFactor` and `pairGrads`, and the
// host's `const KV, KL, RL, BR, BC, BC4, RQ, NT`. Same grid and key tiles as the forward: RQ
// adjacent query rows per invocation (or per four lanes), which share every key and value it reads
// from workgroup memory, keys by quads (a quad's scores and dS are one vec4); a line holding the
// row mark is written once per row (src/webgpu/copies.ts, expandCopies).

var<private> doi$: array<V, KL>; // row $'s output gradient (the invocation's channels)
var<private> factor$: f32; // rowFactor of its forward statistic
var<private> delta$: f32; // its rowsum(dO∘o)
// whether its output gradient is nonzero: a row whose output gradient is 0 adds nothing, and
// skipping it keeps 0·NaN, from a non-finite key or value it sees, out of the other gradients
var<private> live$: bool;

fn visitTile(t: QueryTile, i: u32, j0: u32, n: u32) {
  let i$ = min(i + $u, t.rows.y - 1u);
  // an invisible key has dS 0; testing first keeps its values, and exp of a row's NEG
  // statistic, out of the sum
  let seen$ = select(0u, keysSeen(t.b, i$, j0, n), live$);
  var some = 0u; // the keys some row sees
  some |= seen$;
  let n4 = (n + 3u) / 4u;
  for (var r4 = 0u; r4 < n4; r4++) {
    if (!any(quadSeen(some, r4))) { continue; }
    let r = 4u * r4;
    let s = tileScores(r4, n);
    var dx$ = V(0.0);
    var dy$ = V(0.0);
    var dz$ = V(0.0);
    var dw$ = V(0.0);
    for (var x = 0u; x < KL; x++) {
      let c = channel(x);
      let v0 = tileValue(r, c);
      let v1 = tileValue(r + 1u, c);
      let v2 = tileValue(r + 2u, c);
      let v3 = tileValue(r + 3u, c);
      dx$ += doi$[x] * v0;
      dy$ += doi$[x] * v1;
      dz$ += doi$[x] * v2;
      dw$ += doi$[x] * v3;
    }
    // dropout: the weight's gradient is dP times its multiplier (see pairGrads)
    let keep$ = dropKeep4(t.b, t.h, i$, j0 + r);
    let dp$ = rowScores(vec4<f32>(lanesSum(dx$), lanesSum(dy$), lanesSum(dz$), lanesSum(dw$))) * keep$;
    // each row leaves out the keys it does not see, which may be non-finite
    let take$ = quadSeen(seen$, r4);
    let ds$ = quadGrads(take$, s[$], dp$, factor$, delta$);
    for (var x = 0u; x < KL; x++) {
      let kc = quadChannels(&kQuads, r4, channel(x));
      acc$[x] = quadRowsAdd(acc$[x], kc, ds$, take$);
    }
  }
}

// The pass for invocation `lid` of workgroup wid, which takes (its channels of) the tile's row
// group g: rows t.rows.x + RQ·g onwards. Called by the entry point.
fn tiledPass(wid: vec3u, lid: u32, g: u32) {
  let t = queryTile(wid);
  let i = t.rows.x + RQ * g;
  let base$ = queryBase(t, i + $u);
  let stats$ = stats[(t.b * params.H + t.h) * params.Tq + min(i + $u, t.rows.y - 1u)];
  factor$ = rowFactor(stats$.x);
  delta$ = stats$.y;
  loadQuery(&qi$, base$);
  for (var x = 0u; x < KL; x++) { doi$[x] = dO[base$ + channel(x)]; live$ = live$ || any(doi$[x] != V(0.0)); }
  live$ = rowAny(vec4<bool>(live$)).x;
  var anyLive = false;
  anyLive = anyLive || live$;
  sweepKeys(t, lid, i, i < t.rows.y && anyLive);
  // a split launch writes each chunk's part of dq, which a later launch sums (common/sum-parts.wgsl)
  let at$ = partBase(base$, t.part);
  if (i + $u < t.rows.y) { for (var x = 0u; x < KL; x++) { dq[at$ + channel(x)] = acc$[x] * params.scale; } }
}
