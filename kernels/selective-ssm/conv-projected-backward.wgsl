// The gradient of conv-projected.wgsl in the in projection [B, T, 2E]: each row's first half
// d joined (conv-gradient.wgsl, no window), its second half dz, in one launch; and dPre, from which
// conv-weights-backward.wgsl takes the taps' and the bias's gradients. One invocation per number
// of the in projection.

// needs common/grid.wgsl, conv-inputs.wgsl and conv-gradient.wgsl

@group(0) @binding(5) var<storage, read> dz: array<f32>; // [B, T, E]
@group(0) @binding(6) var<storage, read_write> dProjected: array<f32>; // [B, T, 2E]
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  let E = params.E;
  if (n >= params.B * params.T * 2u * E) { return; }
  let row = n / (2u * E);
  let e = n % (2u * E);
  if (e < E) {
    dProjected[n] = joinedGradient(row / params.T, params.K - 1u + row % params.T, e);
  } else {
    dProjected[n] = dz[row * E + e - E];
  }
}
