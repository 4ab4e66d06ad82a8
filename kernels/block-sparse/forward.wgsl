// BlockSparse forward: o = softmax(scale·q·kᵀ under the block-sparse mask)·v, the online
// softmax of FlashAttention-2 run over the active blocks only. One workgroup per (query tile,
// head h, batch b), one invocation per query row. The tile plan lists, per query tile, the
// runs of consecutive keys its blocks attend to; key and value tiles of BC rows stream through
// workgroup memory run by run, so the work is the active blocks, not T². Saves
// lse = m + log l per row for the backward.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/kv-tile.wgsl, block-sparse/layout.wgsl
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
  var m = NEG;
  var l = 0.0;

  let runRange = tileRuns(wid.x);
  for (var r = runRange.x; r < runRange.y; r++) {
    let run = plan[r];
    for (var j0 = run.x; j0 < run.y; j0 += BC) {
      workgroupBarrier(); // the previous tile has been consumed
      loadTile(&kTile, &vTile, b, hk, j0, lid, BR);
      workgroupBarrier();
      if (rowOk) {
        let n = min(BC, run.y - j0);
        var s: array<f32, BC>;
        var tileMax = NEG;
        for (var e = 0u; e < n; e++) {
          var d = V(0.0);
          for (var c = 0u; c < KV; c++) { d += qi[c] * kTile[e * KV + c]; }
          s[e] = select(NEG, lanesSum(d), sees(i, j0 + e));
          tileMax = max(tileMax, s[e]);
        }
        let mNew = max(m, tileMax);
        // rows that have seen no visible key yet keep m = NEG and nothing to rescale
        if (mNew > NEG) {
          let correction = exp(m - mNew);
          l *= correction;
          for (var c = 0u; c < KV; c++) { acc[c] *= correction; }
          for (var e = 0u; e < n; e++) {
            if (s[e] > NEG) {
              let p = exp(s[e] - mNew);
              l += p;
              for (var c = 0u; c < KV; c++) { acc[c] += p * vTile[e * KV + c]; }
            }
          }
          m = mNew;
        }
      }
    }
  }

  if (rowOk) {
    // every row sees its own key (the diagonal block is always local); guard anyway, never NaN
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var c = 0u; c < KV; c++) { o[qBase + c] = acc[c] * inv; }
    lse[(b * params.H + h) * params.Tq + i] = select(NEG, m + log(l), l > 0.0);
  }
}
