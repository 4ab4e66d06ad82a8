// AverageContext, pass 1 of the backward: rsums[b, k, d] = Σ over chunk k of
// r[t] = dy[t]·∂C/∂c[t]·∂c[t]/∂x, the gradient that reaches x through the context vectors.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl and chunks.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> dy: array<V>; // [B, T, D]
@group(0) @binding(2) var<storage, read> sums: array<V>; // [B, numChunks, D], saved by the forward
@group(0) @binding(3) var<storage, read> blockSums: array<V>; // [B, numBlocks, D]
@group(0) @binding(4) var<storage, read_write> rsums: array<V>; // [B, numChunks, D]
@group(0) @binding(5) var<uniform> params: Params;

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
  var r = V(0.0);
  for (var t = c.t0; t < c.t1; t++) {
    let xt = x[j];
    run += xt;
    let w = combineWeights(xt, prev, context(offset, run, t));
    r += w.c * dy[j] * contextWeight(t);
    prev = xt;
    j += params.width;
  }
  rsums[i] = r;
}
