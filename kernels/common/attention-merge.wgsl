// Attention split-K decode skeleton, pass 2: merges the partial rows of every chunk
// (common/attention-split.wgsl) with the family's mergeRow, then writes o and the row statistic
// with its finishRow: the same outputs as the tiled forward, so the backward is shared. One
// invocation per (query row i, head h, batch b).
// needs common/lanes-*.wgsl, common/attention.wgsl, the row hooks (see
// common/attention-forward.wgsl) and the host's `const KV, BC`.

@group(0) @binding(0) var<storage, read> partO: array<V>; // [B, H, Tq, splits, K]
@group(0) @binding(1) var<storage, read> partRow: array<vec2<f32>>; // [B, H, Tq, splits]
@group(0) @binding(2) var<storage, read_write> o: array<V>; // [B, Tq, H, K]
@group(0) @binding(3) var<storage, read_write> stat: array<f32>; // [B, H, Tq]
@group(0) @binding(4) var<uniform> params: Params;

var<private> row: RowState;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.Tq) { return; }
  let h = gid.y;
  let b = gid.z;
  let first = ((b * params.H + h) * params.Tq + i) * params.splits;
  row = initRow();
  var acc: array<V, KV>; // zero-initialised
  for (var s = 0u; s < params.splits; s++) {
    let f = mergeRow(&row, partRow[first + s]);
    for (var c = 0u; c < KV; c++) { acc[c] = acc[c] * f.x + partO[(first + s) * KV + c] * f.y; }
  }
  let out = finishRow(&row);
  let oBase = ((b * params.Tq + i) * params.H + h) * KV;
  for (var c = 0u; c < KV; c++) { o[oBase + c] = acc[c] * out.x; }
  stat[(b * params.H + h) * params.Tq + i] = out.y;
}
