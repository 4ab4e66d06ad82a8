// Attention split-K decode skeleton, pass 2 (and a split tiled forward's, src/attention/skeleton.ts):
// merges the partial rows of every chunk (common/attention-split.wgsl) with the family's mergeRow,
// then writes o and the row statistic with its finishRow: the same outputs as the tiled forward,
// so the backward is shared. One invocation per (channel group c, query row i) of a head h and
// batch row b, so that a long cache's many chunks per row are merged by KV invocations at once;
// each folds the row statistics alone, the same floats for every c.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/grid.wgsl, the row hooks (see
// common/attention-forward.wgsl) and the host's `const KV, BC`.

@group(0) @binding(0) var<storage, read> partO: array<V>; // [B, H, Tq, splits, K]
@group(0) @binding(1) var<storage, read> partRow: array<vec2<f32>>; // [B, H, Tq, splits]
@group(0) @binding(2) var<storage, read_write> o: array<V>; // [B, Tq, H, K]
@group(0) @binding(3) var<storage, read_write> stat: array<f32>; // [B, H, Tq]
@group(0) @binding(4) var<uniform> params: Params;

var<private> row: RowState;

// the launch is flat over (h, i, c) within a batch row, folded into x and y (grid1d), with b in z
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = flatIndex(wid, nwg, lid);
  if (e >= params.H * params.Tq * KV) { return; }
  let h = e / (params.Tq * KV);
  let i = (e / KV) % params.Tq;
  let c = e % KV;
  let b = wid.z;
  let first = ((b * params.H + h) * params.Tq + i) * params.splits;
  row = initRow();
  var acc = V(0.0);
  for (var s = 0u; s < params.splits; s++) {
    let f = mergeRow(&row, partRow[first + s]);
    acc = acc * f.x + partO[(first + s) * KV + c] * f.y;
  }
  let out = finishRow(&row);
  o[((b * params.Tq + i) * params.H + h) * KV + c] = acc * out.x;
  if (c == 0u) { stat[(b * params.H + h) * params.Tq + i] = out.y; }
}
