// FlashStyleTiledAttention split-K decode, pass 2: merges the partials of every split with the
// associative rule m = max(m₁, m₂), l = e^{m₁−m}·l₁ + e^{m₂−m}·l₂, O = e^{m₁−m}·O₁ + e^{m₂−m}·O₂,
// then o = O / l and lse = m + log l, the same outputs as the tiled forward (so the backward is
// shared). One invocation per (query row i, head h, batch b).
// needs common/lanes-*.wgsl, common/attention.wgsl and the host's `const KV`.


@group(0) @binding(0) var<storage, read> partO: array<V>; // [B, H, Tq, splits, K]
@group(0) @binding(1) var<storage, read> partML: array<vec2<f32>>; // [B, H, Tq, splits]
@group(0) @binding(2) var<storage, read_write> o: array<V>; // [B, Tq, H, K]
@group(0) @binding(3) var<storage, read_write> lse: array<f32>; // [B, H, Tq]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.Tq) { return; }
  let h = gid.y;
  let b = gid.z;
  let first = ((b * params.H + h) * params.Tq + i) * params.splits;
  var m = NEG;
  for (var s = 0u; s < params.splits; s++) { m = max(m, partML[first + s].x); }
  var l = 0.0;
  var acc: array<V, KV>;
  for (var c = 0u; c < KV; c++) { acc[c] = V(0.0); }
  // a split that saw no visible key has l = 0 and O = 0, so it adds nothing
  if (m > NEG) {
    for (var s = 0u; s < params.splits; s++) {
      let w = exp(partML[first + s].x - m);
      l += w * partML[first + s].y;
      for (var c = 0u; c < KV; c++) { acc[c] += w * partO[(first + s) * KV + c]; }
    }
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let oBase = ((b * params.Tq + i) * params.H + h) * KV;
  for (var c = 0u; c < KV; c++) { o[oBase + c] = acc[c] * inv; }
  lse[(b * params.H + h) * params.Tq + i] = select(NEG, m + log(l), l > 0.0);
}
