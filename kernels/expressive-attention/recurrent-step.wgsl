// ExpressiveAttention recurrent decode step, pass 1: adds the token's φ(k)·vᵀ and φ(k) to the
// state, M' = M + φ(k)·vᵀ and z' = z + φ(k), and in the same sweep sums each chunk of ROWS
// state rows' share of the readout, φ(scale·q)·M' and φ(scale·q)·z', for the query heads of
// the kv head (φ: features.wgsl).
//
// One invocation per (chunk of ROWS rows, column, kv head and block of QG query heads, batch b).
// The columns are M's KV channel groups (V lanes each) and one more for z, carried as a splat
// V so that one code path serves both; a workgroup holds SLOTS chunks side by side, so
// adjacent invocations read and write adjacent memory. Each invocation walks its rows in
// order, stepping (a, b) instead of recomputing it, and keeps its QG partial sums in
// registers: no workgroup memory, no barriers (on SwiftShader a 256-invocation workgroup
// with a barrier-separated reduction over the chunk ran 10× slower).
// The workgroups of query-head blocks after the first recompute M' with the same operations
// and write nothing to the state (GQA groups larger than QG read M more than once).
// The readout sums cancel (φ(q)_p·φ(k)_p takes both signs, and the K positive diagonal rows come
// first), so each is compensated (Neumaier): the rounding error of every addition is recovered
// exactly and summed apart, which removes the sum's growth with the P rows
// (docs/expressive-attention.md, "Precision of the two decodes").
// recurrent-readout.wgsl adds the chunks' partial sums, compensated again, and divides.
// needs common/lanes-*.wgsl, features.wgsl and the host's `const K, KV, QG, WG, SLOTS, ROWS`.

struct Params {
  Hkv: u32,
  G: u32, // query heads per kv head, H / Hkv
  P: u32, // state rows, K(K+1)/2
  chunks: u32, // chunks of rows, ceil(P / ROWS)
  gBlocks: u32, // workgroups along a kv head's query heads, ceil(G / QG)
  scale: f32, // multiplies q before φ: φ(scale·q) = scale²·φ(q)
}

@group(0) @binding(0) var<storage, read> q: array<f32>; // [B, H, K], unscaled
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Hkv, K]
@group(0) @binding(3) var<storage, read> M: array<V>; // [B, Hkv, P, K]: Σ φ(k)·vᵀ so far
@group(0) @binding(4) var<storage, read> z: array<f32>; // [B, Hkv, P]: Σ φ(k) so far
@group(0) @binding(5) var<storage, read_write> nextM: array<V>; // [B, Hkv, P, K]: M'
@group(0) @binding(6) var<storage, read_write> nextZ: array<f32>; // [B, Hkv, P]: z'
@group(0) @binding(7) var<storage, read_write> partial: array<V>; // [B, H, chunks, KV + 1]: a chunk's share of φ(scale·q)·M', then of φ(scale·q)·z' (splat)
@group(0) @binding(8) var<uniform> params: Params; // sizes and scale

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col = lid % (KV + 1u); // KV: z
  let chunk = wid.x * SLOTS + lid / (KV + 1u);
  let p0 = chunk * ROWS;
  if (lid >= SLOTS * (KV + 1u) || p0 >= params.P) { return; }
  let hk = wid.y / params.gBlocks;
  let g0 = (wid.y % params.gBlocks) * QG; // first query head of the block, within the group
  let b = wid.z;
  let H = params.Hkv * params.G;
  let kvRow = b * params.Hkv + hk;
  let qBase = (b * H + hk * params.G + g0) * K;
  let heads = min(QG, params.G - g0);
  let writes = g0 == 0u; // the first block of query heads writes the state

  var acc: array<V, QG>;
  var comp: array<V, QG>; // acc's compensations
  for (var g = 0u; g < QG; g++) { acc[g] = V(0.0); comp[g] = V(0.0); }
  var vc = V(0.0);
  if (col < KV) { vc = v[kvRow * KV + col]; }
  var ab = pairOf(p0);
  for (var p = p0; p < min(p0 + ROWS, params.P); p++) {
    let diagonal = ab.x == ab.y;
    let fk = feature(k[kvRow * K + ab.x], k[kvRow * K + ab.y], diagonal);
    let row = kvRow * params.P + p;
    var m: V;
    if (col < KV) {
      m = M[row * KV + col] + fk * vc;
      if (writes) { nextM[row * KV + col] = m; }
    } else {
      let zp = z[row] + fk;
      if (writes) { nextZ[row] = zp; }
      m = V(zp);
    }
    for (var g = 0u; g < heads; g++) {
      let fq = feature(q[qBase + g * K + ab.x] * params.scale, q[qBase + g * K + ab.y] * params.scale, diagonal);
      addCompensated(&acc[g], &comp[g], fq * m);
    }
    ab = nextPair(p, ab);
  }
  for (var g = 0u; g < heads; g++) {
    let h = hk * params.G + g0 + g;
    partial[((b * H + h) * params.chunks + chunk) * (KV + 1u) + col] = acc[g] + comp[g];
  }
}
