// AverageContext, pass 1 of the forward: sums[b, k, d] = Σ x[b, t, d] over chunk k, in order.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl (for its COMBINE constant) and chunks.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read_write> sums: array<V>; // [B, numChunks, D]
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = cellOf(i);
  let end = at(c, c.t1);
  var s = V(0.0);
  for (var j = at(c, c.t0); j < end; j += params.width) { s += x[j]; }
  sums[i] = s;
}
