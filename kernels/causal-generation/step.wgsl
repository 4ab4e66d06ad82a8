// CausalGeneration decode step: y = R(x, previous) for one token per sequence, [B, D].

// needs common/grid.wgsl, common/lanes-*.wgsl and reduce.wgsl

struct Params {
  total: u32, // B·D / lanes
  rowLen: u32, // D / lanes (unused: the step has no predecessor to look up)
  width: u32, // D / lanes (unused)
}

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, D]
@group(0) @binding(1) var<storage, read> previous: array<V>; // [B, D]
@group(0) @binding(2) var<storage, read_write> y: array<V>; // [B, D]
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  y[i] = reduce2(x[i], previous[i]);
}
