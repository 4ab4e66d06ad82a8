// Shared: out[i] = Σ_j x[offset + i·k + j], one invocation per row: the last step of a reduction
// whose partial sums a kernel wrote side by side (tfjs's own reduce launches a workgroup per
// output, slow for many short rows).
// needs grid.wgsl

struct Params {
  rows: u32,
  k: u32,
  offset: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.rows) { return; }
  let start = params.offset + i * params.k;
  var s = 0.0;
  for (var j = 0u; j < params.k; j++) { s += x[start + j]; }
  out[i] = s;
}
