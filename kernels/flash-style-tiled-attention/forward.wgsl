// FlashStyleTiledAttention forward (FlashAttention-2): o = softmax(scale·q·kᵀ under the mask)·v,
// never materialising the Tq×Tk scores. One workgroup per (tile of BR query rows, head h, batch
// b), one invocation per query row. Key and value tiles of BC rows stream through workgroup
// memory; each row keeps its running max m, normaliser l and output accumulator in registers
// and rescales them once per tile. Saves lse = m + log l per row for the backward.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/kv-tile.wgsl, common/online-softmax.wgsl, and the host's `const KV, BR, BC` (K / lanes,
// rows per workgroup, keys per tile), which size the arrays below.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read_write> o: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read_write> lse: array<f32>; // [B, H, Tq]; NEG for a row with no visible key
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> kTile: array<V, BC * KV>;
var<workgroup> vTile: array<V, BC * KV>;

@compute @workgroup_size(BR)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let hk = kvHead(h);
  let i = wid.x * BR + lid;
  let rowOk = i < params.Tq;

  var qi: array<V, KV>;
  var acc: array<V, KV>;
  let qBase = ((b * params.Tq + min(i, params.Tq - 1u)) * params.H + h) * KV;
  for (var c = 0u; c < KV; c++) {
    qi[c] = q[qBase + c] * params.scale;
    acc[c] = V(0.0);
  }
  var state = OnlineSoftmax(NEG, 0.0);

  let kEnd = keysSeenByTile(wid.x * BR, BR);
  for (var j0 = 0u; j0 < kEnd; j0 += BC) {
    workgroupBarrier(); // the previous tile has been consumed
    loadTile(&kTile, &vTile, b, hk, j0, lid, BR);
    workgroupBarrier();
    if (rowOk) { attendTile(&qi, &acc, &state, i, j0, min(BC, kEnd - j0)); }
  }
  if (rowOk) { finishRow(&acc, state, qBase, (b * params.H + h) * params.Tq + i); }
}

fn keyVisible(i: u32, j: u32) -> bool {
  return visible(i, j);
}
