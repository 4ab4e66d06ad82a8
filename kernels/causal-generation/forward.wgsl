// CausalGeneration forward: y[b, t, :] = R(x[b, t, :], x[b, t-1, :]), and y[b, 0, :] = x[b, 0, :].
// One invocation per element (or four adjacent channels) of x [B, T, D], flat.

// needs common/grid.wgsl, common/lanes-*.wgsl and reduce.wgsl

struct Params {
  total: u32, // B·T·D / lanes
  rowLen: u32, // T·D / lanes / lanes: elements per batch row
  width: u32, // D / lanes
}

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read_write> y: array<V>; // [B, T, D]
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let xt = x[i];
  // the first token of each sequence has no predecessor and passes through
  if (i % params.rowLen < params.width) {
    y[i] = xt;
  } else {
    y[i] = reduce2(xt, x[i - params.width]);
  }
}
