// ExpressiveAttention forward: o_i = Σ_j s_ij²·v_j / (ε + Σ_j s_ij²) over the visible keys, with
// s = scale·q·kᵀ, never materialising the Tq×Tk scores. One workgroup per (tile of BR query rows,
// head h, batch b), one invocation per query row. Key and value tiles of BC rows stream through
// workgroup memory; every term s² is ≥ 0, so each row simply accumulates N += s²·v and Z += s²
// (no running max, no rescaling). Saves the denominator z = max(ε + Z, 2⁻⁶⁰) per row for the
// backward.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/kv-tile.wgsl and the host's
// `const KV, BR, BC` (K / lanes, rows per workgroup, keys per tile).

// ε of the denominator: a pipeline constant, as the Params uniform is shared by every attention kernel
override EPSILON: f32;

// the floor of the denominator, as MIN_DENOMINATOR in reference.ts
const MIN_DENOMINATOR = 0x1p-60f;

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read_write> o: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read_write> z: array<f32>; // [B, H, Tq]: max(ε + Σ_j s_ij², 2⁻⁶⁰), the denominator
@group(0) @binding(5) var<uniform> params: Params; // sizes, scale, causal

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
  var zRow = 0.0;

  let kEnd = keysSeenByTile(wid.x * BR, BR);
  for (var j0 = 0u; j0 < kEnd; j0 += BC) {
    workgroupBarrier(); // the previous tile has been consumed
    loadTile(&kTile, &vTile, b, hk, j0, lid, BR);
    workgroupBarrier();
    if (rowOk) {
      let n = min(BC, kEnd - j0);
      for (var r = 0u; r < n; r++) {
        if (visible(i, j0 + r)) {
          var d = V(0.0);
          for (var c = 0u; c < KV; c++) { d += qi[c] * kTile[r * KV + c]; }
          let s = lanesSum(d);
          let p = s * s;
          zRow += p;
          for (var c = 0u; c < KV; c++) { acc[c] += p * vTile[r * KV + c]; }
        }
      }
    }
  }

  if (rowOk) {
    // floored as the reference does: with ε = 0 a row whose scores are all 0 (or that sees no
    // key) has acc = 0 and outputs 0, never NaN
    let denom = max(EPSILON + zRow, MIN_DENOMINATOR);
    let inv = 1.0 / denom;
    for (var c = 0u; c < KV; c++) { o[qBase + c] = acc[c] * inv; }
    z[(b * params.H + h) * params.Tq + i] = denom;
  }
}
