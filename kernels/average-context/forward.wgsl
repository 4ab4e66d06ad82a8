// AverageContext, pass 2 of the forward: y[t] = C(x[t], x[t-1], c[t]) with x[-1] := x[0],
// c[t] the causal running mean (or the whole-sequence mean), from the chunk and block sums.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl and chunks.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> sums: array<V>; // [B, numChunks, D]
@group(0) @binding(2) var<storage, read> blockSums: array<V>; // [B, numBlocks, D]
@group(0) @binding(3) var<storage, read_write> y: array<V>; // [B, T, D]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = cellOf(i);
  let offset = contextOffset(c, c.k);
  var j = at(c, c.t0);
  var prev = x[select(j, j - params.width, c.t0 > 0u)];
  var run = V(0.0);
  for (var t = c.t0; t < c.t1; t++) {
    let xt = x[j];
    run += xt;
    y[j] = combine3(xt, prev, context(offset, run, t));
    prev = xt;
    j += params.width;
  }
}
