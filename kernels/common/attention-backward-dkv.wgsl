// Attention backward, dK and dV (FlashAttention-2's), shared by FlashStyleTiledAttention and
// ExpressiveAttention: per key row j of kv head hk, stream the queries of every query head that
// reads hk, tile by tile, recompute s = scale·q·kᵀ and, from the forward's per-row statistic,
// each pair's weight p and dS (the mixer's `pairGrads`), and accumulate dv = Σ_i p_i·dO_i and
// dk = scale·Σ_i dS_i·q_i. Summing over the query heads of a group is GQA's summed dK, dV.
// One workgroup per (tile of BR key rows, kv head hk, batch b).
// needs common/lanes-*.wgsl, common/attention.wgsl, common/query-tile.wgsl, the mixer's
// `rowFactor` and `pairGrads`, and the host's `const KV, BR, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read> saved: array<f32>; // [B, H, Tq]: the forward's row statistic
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, Tq]: rowsum(dO∘o)
@group(0) @binding(6) var<storage, read_write> dk: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(7) var<storage, read_write> dv: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(8) var<uniform> params: Params; // sizes, scale, causal

var<workgroup> qTile: array<V, BC * KV>;
var<workgroup> dOTile: array<V, BC * KV>;
var<workgroup> factorTile: array<f32, BC>;
var<workgroup> deltaTile: array<f32, BC>;

@compute @workgroup_size(BR)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let hk = wid.y;
  let j = wid.x * BR + lid;
  let rowOk = j < params.Tk;
  let base = ((b * params.Tk + min(j, params.Tk - 1u)) * params.Hkv + hk) * KV;

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

  // causal: key j is seen by queries i ≥ j + Tq − Tk; start at the first tile holding one
  var iStart = 0u;
  if (params.causal != 0u && wid.x * BR + params.Tq > params.Tk) {
    iStart = (wid.x * BR + params.Tq - params.Tk) / BC * BC;
  }
  let group = params.H / params.Hkv;
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    for (var i0 = iStart; i0 < params.Tq; i0 += BC) {
      workgroupBarrier();
      loadQueryTile(&qTile, &dOTile, b, h, i0, params.Tq, lid, BR);
      for (var e = lid; e < BC; e += BR) {
        let row = (b * params.H + h) * params.Tq + min(i0 + e, params.Tq - 1u);
        factorTile[e] = rowFactor(saved[row]);
        deltaTile[e] = delta[row];
      }
      workgroupBarrier();
      if (rowOk) {
        let n = min(BC, params.Tq - i0);
        for (var r = 0u; r < n; r++) {
          if (visible(i0 + r, j)) {
            var sd = V(0.0);
            var pd = V(0.0);
            var live = false;
            for (var c = 0u; c < KV; c++) {
              sd += qTile[r * KV + c] * kj[c];
              pd += vj[c] * dOTile[r * KV + c];
              live = live || any(dOTile[r * KV + c] != V(0.0));
            }
            // a query row whose output gradient is 0 adds nothing: skipping it keeps 0·NaN, from
            // a non-finite input it sees, out of this key's gradients (MIXERS.md §7)
            if (live) {
              let w = pairGrads(lanesSum(sd), lanesSum(pd), factorTile[r], deltaTile[r]);
              for (var c = 0u; c < KV; c++) {
                dvAcc[c] += w.x * dOTile[r * KV + c];
                dkAcc[c] += w.y * qTile[r * KV + c];
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
