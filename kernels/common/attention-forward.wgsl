// Attention forward skeleton (FlashAttention-2's tiling), shared by FlashStyleTiledAttention,
// ExpressiveAttention and BlockSparse: o = Σ_j weight(s_ij)·v_j over the keys query i sees,
// s = scale·q·kᵀ, never materialising the Tq×Tk scores. One workgroup per (tile of query rows,
// head h, batch b), one invocation per query row. The tile's runs of keys (the layout's hooks)
// are narrowed to the keys its queries may see (keyRange, then keyRangeIn for packed segments),
// and key tiles whose segment ids cannot meet the query tile's are skipped; key and value tiles
// of BC rows stream through workgroup memory. The row hooks fold a tile into the row's state and write o and the row's
// statistic for the backward; they scale each weight by dropKeep (common/dropout.wgsl) as it
// meets its value, after the normaliser, which sums the undropped weights.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/kv-tile.wgsl,
// a layout (common/dense-layout.wgsl or block-sparse/layout.wgsl: loadLayout, tileRows,
// tileRuns, tileRun, keySeen), row hooks (common/online-softmax.wgsl or
// expressive-attention/forward.wgsl: RowState, initRow, attendTile, finishRow) and the host's
// `const KV, BR, BC` (K / lanes, rows per workgroup, keys per tile).

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> vis: array<i32>; // the packed int inputs (a tile plan first)
@group(0) @binding(4) var<storage, read_write> o: array<V>; // [B, Tq, H, K]
@group(0) @binding(5) var<storage, read_write> stat: array<f32>; // [B, H, Tq]: the row statistic
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> kTile: array<V, BC * KV>;
var<workgroup> vTile: array<V, BC * KV>;

@compute @workgroup_size(BR)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = queryTile(wid);
  let b = tile.b;
  let h = tile.h;
  let rows = tile.rows;
  let i = rows.x + lid;
  let rowOk = i < rows.y;
  let qBase = queryBase(tile, i);
  var qi = scaledQuery(qBase);
  var acc: array<V, KV>; // zero-initialised
  var state = initRow();

  let qSeg = querySegments(b, rows.x, rows.y - rows.x, lid);
  let keys = keyRangeIn(b, keyRange(b, rows.x, rows.y), qSeg, lid);
  let runs = tileRuns(wid.x);
  for (var r = runs.x; r < runs.y; r++) {
    let run = tileRun(r, params.Tk);
    let end = min(run.y, keys.y);
    for (var j0 = max(run.x, keys.x); j0 < end; j0 += BC) {
      let n = min(BC, end - j0);
      if (!segmentsMeet(qSeg, keySegments(b, j0, n, lid))) { continue; }
      workgroupBarrier(); // the previous tile has been consumed
      loadTile(&kTile, &vTile, b, tile.hk, j0, lid, BR);
      workgroupBarrier();
      if (rowOk) { attendTile(&qi, &acc, &state, b, h, i, j0, n); }
    }
  }
  if (rowOk) { finishRow(&acc, state, qBase, (b * params.H + h) * params.Tq + i); }
}
