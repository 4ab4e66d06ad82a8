// BlockSparse forward: o = softmax(scale·q·kᵀ under the block-sparse mask)·v, the online
// softmax of FlashAttention-2 run over the active blocks only. One workgroup per (query tile,
// head h, batch b), one invocation per query row. The tile plan lists, per query tile, the
// runs of consecutive keys its blocks attend to; key and value tiles of BC rows stream through
// workgroup memory run by run, so the work is the active blocks, not T². Saves
// lse = m + log l per row for the backward.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/kv-tile.wgsl, common/online-softmax.wgsl,
// block-sparse/layout.wgsl
// and the host's `const KV, BR, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, T, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, T, Hkv, K]
@group(0) @binding(3) var<storage, read> plan: array<vec2<u32>>; // the layout, query tiles and their runs of keys
@group(0) @binding(4) var<storage, read_write> o: array<V>; // [B, T, H, K]
@group(0) @binding(5) var<storage, read_write> lse: array<f32>; // [B, H, T]
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> kTile: array<V, BC * KV>;
var<workgroup> vTile: array<V, BC * KV>;

@compute @workgroup_size(BR)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let hk = kvHead(h);
  loadLayout();
  let rows = tileRows(wid.x);
  let i = rows.x + lid;
  let rowOk = i < rows.y;

  var qi: array<V, KV>;
  var acc: array<V, KV>;
  let qBase = ((b * params.Tq + min(i, rows.y - 1u)) * params.H + h) * KV;
  for (var c = 0u; c < KV; c++) {
    qi[c] = q[qBase + c] * params.scale;
    acc[c] = V(0.0);
  }
  var state = OnlineSoftmax(NEG, 0.0);

  let runRange = tileRuns(wid.x);
  for (var r = runRange.x; r < runRange.y; r++) {
    let run = plan[r];
    for (var j0 = run.x; j0 < run.y; j0 += BC) {
      workgroupBarrier(); // the previous tile has been consumed
      loadTile(&kTile, &vTile, b, hk, j0, lid, BR);
      workgroupBarrier();
      if (rowOk) { attendTile(&qi, &acc, &state, i, j0, min(BC, run.y - j0)); }
    }
  }
  // every row sees its own key (the diagonal block is always local); finishRow guards anyway
  if (rowOk) { finishRow(&acc, state, qBase, (b * params.H + h) * params.Tq + i); }
}

fn keyVisible(i: u32, j: u32) -> bool {
  return sees(i, j);
}
