// BlockSparse backward, dQ (FlashAttention-2 over the active blocks): per query row, recompute
// P = exp(scale·q·kᵀ − lse) over the runs of keys of its tile, then dS = P∘(dO·vᵀ − delta) and
// dq = scale·Σ_j dS_j·k_j, with delta = rowsum(dO∘o). Same grid and plan as the forward:
// one workgroup per (query tile, head h, batch b).
// needs common/lanes-*.wgsl, common/attention.wgsl, common/kv-tile.wgsl,
// flash-style-tiled-attention/weights.wgsl (softmax's pairGrads), block-sparse/layout.wgsl and
// the host's `const KV, BR, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, T, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, T, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, T, H, K]
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>; // [B, H, T]: (lse from the forward, delta = rowsum(dO∘o))
@group(0) @binding(5) var<storage, read> plan: array<vec2<u32>>; // the layout, query tiles and their runs of keys
@group(0) @binding(6) var<storage, read_write> dq: array<V>; // [B, T, H, K]
@group(0) @binding(7) var<uniform> params: Params;

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
  let rowStats = stats[(b * params.H + h) * params.Tq + min(i, rows.y - 1u)];

  var qi: array<V, KV>;
  var doi: array<V, KV>;
  var acc: array<V, KV>;
  let base = ((b * params.Tq + min(i, rows.y - 1u)) * params.H + h) * KV;
  for (var c = 0u; c < KV; c++) {
    qi[c] = q[base + c] * params.scale;
    doi[c] = dO[base + c];
    acc[c] = V(0.0);
  }
  // a row whose output gradient is 0 adds nothing: skipping it keeps 0·NaN, from a non-finite
  // key or value it sees, out of the other gradients (MIXERS.md §7)
  var live = false;
  for (var c = 0u; c < KV; c++) { live = live || any(doi[c] != V(0.0)); }

  let runRange = tileRuns(wid.x);
  for (var r = runRange.x; r < runRange.y; r++) {
    let run = plan[r];
    for (var j0 = run.x; j0 < run.y; j0 += BC) {
      workgroupBarrier();
      loadTile(&kTile, &vTile, b, hk, j0, lid, BR);
      workgroupBarrier();
      if (rowOk && live) {
        let n = min(BC, run.y - j0);
        for (var e = 0u; e < n; e++) {
          // a masked key has P = 0; testing first keeps exp away from a row's NEG lse
          if (sees(i, j0 + e)) {
            var sd = V(0.0);
            var pd = V(0.0);
            for (var c = 0u; c < KV; c++) {
              sd += qi[c] * kTile[e * KV + c];
              pd += doi[c] * vTile[e * KV + c];
            }
            let ds = pairGrads(lanesSum(sd), lanesSum(pd), rowStats.x, rowStats.y).y;
            for (var c = 0u; c < KV; c++) { acc[c] += ds * kTile[e * KV + c]; }
          }
        }
      }
    }
  }
  if (rowOk) {
    for (var c = 0u; c < KV; c++) { dq[base + c] = acc[c] * params.scale; }
  }
}
