// SelectiveSSM's convolution under a gradient tape, of x = the first half of each row of the in
// projection [B, T, 2E] (X_IN_PROJECTION): u = silu(the causal convolution), as conv.wgsl, and z,
// the rows' second halves, as a tensor of its own for the scan's gate. Two slices took a launch
// each, and their gradients a concat: conv-projected-backward.wgsl writes the in projection's
// gradient whole. One invocation per number of u (and of z).

// needs common/grid.wgsl and conv-inputs.wgsl

@group(0) @binding(4) var<storage, read_write> u: array<f32>; // [B, T, E]
@group(0) @binding(5) var<storage, read_write> z: array<f32>; // [B, T, E]
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  let E = params.E;
  if (n >= params.B * params.T * E) { return; }
  let e = n % E;
  let row = n / E;
  u[n] = silu(preActivation(row / params.T, row % params.T, e));
  z[n] = x[row * 2u * E + E + e];
}
