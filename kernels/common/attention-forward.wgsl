// Attention forward skeleton (FlashAttention-2's tiling), shared by FlashStyleTiledAttention,
// ExpressiveAttention and BlockSparse: o = Σ_j weight(s_ij)·v_j over the keys query i sees,
// s = scale·q·kᵀ, never materialising the Tq×Tk scores. One workgroup per (tile of query rows,
// head h, batch b), RQ adjacent query rows per invocation (common/attend-tile.wgsl), or per four
// lanes of a subgroup where the adapter offers subgroups (common/row-quarters.wgsl).
// sweepKeys (common/kv-tile.wgsl) streams the key tiles the workgroup's queries may see; the row
// hooks fold each into the rows' registers and write o and each row's statistic for the
// backward. They scale each weight by dropKeep (common/dropout.wgsl) as it meets its value, after
// the normaliser, which sums the undropped weights. A split launch (tilePart) sweeps one chunk of
// the keys per workgroup and leaves the rows' partials to the split-K decode's merge.
// The GPU may take instead common/attention-forward-blocks.wgsl, which cuts a tile's work by blocks.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/forward-bindings.wgsl, common/row-registers.wgsl, common/key-quads.wgsl,
// common/quad-scores.wgsl, common/kv-tile.wgsl, common/attend-tile.wgsl,
// an entry point (common/row-whole.wgsl with common/tiled-main.wgsl, or common/row-quarters.wgsl
// with common/subgroup-rank.wgsl), a layout (common/dense-layout.wgsl or
// block-sparse/layout.wgsl: loadLayout, tileRows, tileRuns, tileRun, keysSeen, queriesSeen), row hooks
// (common/online-softmax.wgsl or expressive-attention/forward.wgsl: RowState, initRow,
// weighTile, finishRow) and the host's `const KV, KL, RL, BR, BC, BC4, RQ, NT` (K / lanes,
// channel groups per invocation KV / RL, invocations per row, rows per workgroup, keys per tile,
// quads per tile, rows per invocation, invocations per workgroup RL·BR / RQ).

var<private> row$: RowState;

fn visitTile(t: QueryTile, i: u32, j0: u32, n: u32) {
  attendTile(t.b, t.h, i, t.rows.y - 1u, j0, n);
}

// Writes the invocation's channels of row i's output, its accumulator `sum` times finishRow's
// factor, and the row's statistic (its lead invocation); of a split launch, the chunk's partial
// row, as the split-K decode writes it for the merge (common/split-chunk.wgsl).
fn writeRow(t: QueryTile, i: u32, sum: ptr<private, array<V, KL>>, state: ptr<private, RowState>) {
  if (params.splits > 0u) {
    let at = ((t.b * params.H + t.h) * params.Tq + i) * params.splits + t.part;
    for (var x = 0u; x < KL; x++) { o[at * KV + channel(x)] = (*sum)[x]; }
    let row = packRow(state);
    if (rowLead()) { stat[2u * at] = row.x; stat[2u * at + 1u] = row.y; }
    return;
  }
  let out = finishRow(state);
  let base = queryBase(t, i);
  for (var x = 0u; x < KL; x++) { o[base + channel(x)] = (*sum)[x] * out.x; }
  if (rowLead()) { stat[(t.b * params.H + t.h) * params.Tq + i] = out.y; }
}

// The pass for invocation `lid` of workgroup wid, which takes (its channels of) the tile's row
// group g: rows t.rows.x + RQ·g onwards. Called by the entry point.
fn tiledPass(wid: vec3u, lid: u32, g: u32) {
  let t = queryTile(wid);
  let i = t.rows.x + RQ * g;
  loadQuery(&qi$, queryBase(t, i + $u));
  row$ = initRow();
  sweepKeys(t, lid, i, i < t.rows.y);
  if (i + $u < t.rows.y) { writeRow(t, i + $u, &acc$, &row$); }
}
