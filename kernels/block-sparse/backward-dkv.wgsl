// BlockSparse backward, dK and dV (FlashAttention-2 over the active blocks): per key row j of
// kv head hk, stream the queries that attend to its tile (the transposed plan: runs of
// query rows per key tile), for every query head that reads hk, recompute
// P = exp(scale·q·kᵀ − lse) and accumulate dv = Σ_i P_i·dO_i and dk = scale·Σ_i dS_i·q_i with
// dS = P∘(dO·vᵀ − delta). Summing over the query heads of a group is GQA's summed dK, dV.
// One workgroup per (key tile, kv head hk, batch b).
// needs common/lanes-*.wgsl, common/attention.wgsl, common/query-tile.wgsl,
// flash-style-tiled-attention/weights.wgsl (softmax's pairGrads), block-sparse/layout.wgsl and
// the host's `const KV, BR, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, T, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, T, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, T, H, K]
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>; // [B, H, T]: (lse from the forward, delta = rowsum(dO∘o))
@group(0) @binding(5) var<storage, read> plan: array<vec2<u32>>; // the layout, key tiles and their runs of queries
@group(0) @binding(6) var<storage, read_write> dk: array<V>; // [B, T, Hkv, K]
@group(0) @binding(7) var<storage, read_write> dv: array<V>; // [B, T, Hkv, K]
@group(0) @binding(8) var<uniform> params: Params;

var<workgroup> qTile: array<V, BC * KV>;
var<workgroup> dOTile: array<V, BC * KV>;
var<workgroup> statsTile: array<vec2<f32>, BC>;

@compute @workgroup_size(BR)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let hk = wid.y;
  loadLayout();
  let rows = tileRows(wid.x);
  let j = rows.x + lid;
  let rowOk = j < rows.y;
  let base = ((b * params.Tk + min(j, rows.y - 1u)) * params.Hkv + hk) * KV;

  var kj: array<V, KV>;
  var vj: array<V, KV>;
  var dkAcc: array<V, KV>;
  var dvAcc: array<V, KV>;
  for (var c = 0u; c < KV; c++) {
    kj[c] = k[base + c];
    vj[c] = v[base + c];
    dkAcc[c] = V(0.0);
    dvAcc[c] = V(0.0);
  }

  let runRange = tileRuns(wid.x);
  let group = params.H / params.Hkv;
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    for (var r = runRange.x; r < runRange.y; r++) {
      let run = plan[r];
      for (var i0 = run.x; i0 < run.y; i0 += BC) {
        workgroupBarrier();
        loadQueryTile(&qTile, &dOTile, b, h, i0, run.y, lid, BR);
        for (var e = lid; e < BC; e += BR) {
          let i = min(i0 + e, run.y - 1u);
          statsTile[e] = stats[(b * params.H + h) * params.Tq + i];
        }
        workgroupBarrier();
        if (rowOk) {
          let n = min(BC, run.y - i0);
          for (var e = 0u; e < n; e++) {
            if (sees(i0 + e, j)) {
              var sd = V(0.0);
              var pd = V(0.0);
              var live = false;
              for (var c = 0u; c < KV; c++) {
                sd += kj[c] * qTile[e * KV + c];
                pd += vj[c] * dOTile[e * KV + c];
                live = live || any(dOTile[e * KV + c] != V(0.0));
              }
              // a query row whose output gradient is 0 adds nothing: skipping it keeps 0·NaN, from
              // a non-finite input it sees, out of this key's gradients (MIXERS.md §7)
              if (live) {
                let w = pairGrads(lanesSum(sd), lanesSum(pd), statsTile[e].x, statsTile[e].y);
                for (var c = 0u; c < KV; c++) {
                  dvAcc[c] += w.x * dOTile[e * KV + c];
                  dkAcc[c] += w.y * qTile[e * KV + c];
                }
              }
            }
          }
        }
      }
    }
  }
  if (rowOk) {
    // the q tile already carries the scale
    for (var c = 0u; c < KV; c++) {
      dk[base + c] = dkAcc[c];
      dv[base + c] = dvAcc[c];
    }
  }
}
