// A plain copy, output[i] = input[i]: the memory roofline (read 4 bytes + write 4 bytes per
// element) that the bench reports every kernel's bandwidth against. It moves vec4s, the
// fastest plain copy on the adapters measured, so the roofline is not understated.
// One invocation per four elements, flat over `total` vec4s.

// needs common/grid.wgsl

struct Params {
  total: u32, // vec4s to copy
}

@group(0) @binding(0) var<storage, read> input: array<vec4<f32>>; // the source, read once
@group(0) @binding(1) var<storage, read_write> output: array<vec4<f32>>; // the destination, written once
@group(0) @binding(2) var<uniform> params: Params; // the element count, for the bound check

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  output[i] = input[i];
}
