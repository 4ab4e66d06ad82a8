// ExpressiveAttention backward, dK and dV: per key row j of kv head hk, stream the queries of
// every query head that reads hk, tile by tile, recompute s = scale·q·kᵀ and, with the forward's
// denominator z = ε + Σ s², accumulate dv = Σ_i (s²/z)·dO_i and dk = scale·Σ_i dS_i·q_i with
// dS = 2·s·(dO·vᵀ − delta)/z. Summing over the query heads of a group is GQA's summed dK, dV.
// One workgroup per (tile of BR key rows, kv head hk, batch b).
// needs common/lanes-*.wgsl, common/attention.wgsl and the host's `const KV, BR, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read> z: array<f32>; // [B, H, Tq]: ε + Σ s², from the forward
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, Tq]: rowsum(dO∘o)
@group(0) @binding(6) var<storage, read_write> dk: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(7) var<storage, read_write> dv: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(8) var<uniform> params: Params; // sizes, scale, causal

var<workgroup> qTile: array<V, BC * KV>;
var<workgroup> dOTile: array<V, BC * KV>;
var<workgroup> invZTile: array<f32, BC>;
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
      for (var e = lid; e < BC * KV; e += BR) {
        let i = i0 + e / KV;
        var qv = V(0.0);
        var dov = V(0.0);
        if (i < params.Tq) {
          let src = ((b * params.Tq + i) * params.H + h) * KV + e % KV;
          // s is formed exactly as the forward forms it, (scale·q)·k in the same order: a score
          // much smaller than the products it sums would otherwise round differently, and
          // s²/z, whose z the forward rounded, drift from the forward's weights
          qv = q[src] * params.scale;
          dov = dO[src];
        }
        qTile[e] = qv;
        dOTile[e] = dov;
      }
      for (var e = lid; e < BC; e += BR) {
        let row = (b * params.H + h) * params.Tq + min(i0 + e, params.Tq - 1u);
        // z ≥ 2⁻⁶⁰ (the forward's floor), so 1/z is finite
        invZTile[e] = 1.0 / z[row];
        deltaTile[e] = delta[row];
      }
      workgroupBarrier();
      if (rowOk) {
        let n = min(BC, params.Tq - i0);
        for (var r = 0u; r < n; r++) {
          if (visible(i0 + r, j)) {
            var sd = V(0.0);
            var pd = V(0.0);
            for (var c = 0u; c < KV; c++) {
              sd += qTile[r * KV + c] * kj[c];
              pd += vj[c] * dOTile[r * KV + c];
            }
            let s = lanesSum(sd);
            let p = s * s * invZTile[r];
            let ds = 2.0 * s * (lanesSum(pd) - deltaTile[r]) * invZTile[r];
            for (var c = 0u; c < KV; c++) {
              dvAcc[c] += p * dOTile[r * KV + c];
              dkAcc[c] += ds * qTile[r * KV + c];
            }
          }
        }
      }
    }
  }
  if (rowOk) {
    for (var c = 0u; c < KV; c++) {
      dk[base + c] = dkAcc[c]; // the q tile already carries the scale
      dv[base + c] = dvAcc[c];
    }
  }
}
