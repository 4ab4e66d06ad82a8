// The gradient of conv.wgsl's u = silu(pre), pre[t] = bias + Σ_k taps[k]·joined[t + k] (joined:
// the window, or zeros, then x), in one launch where tfjs's ops take a dozen: dx, dWindow and
// dPre (conv-gradient.wgsl), from which conv-weights-backward.wgsl takes the taps' and the
// bias's gradients. One invocation per output number, flat over dx then dWindow.

// needs common/grid.wgsl, conv-inputs.wgsl and conv-gradient.wgsl

@group(0) @binding(5) var<storage, read_write> dx: array<f32>; // [B, T, E]
@group(0) @binding(6) var<storage, read_write> dWindow: array<f32>; // [B, K − 1, E]
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  let E = params.E;
  let before = params.K - 1u;
  let inX = params.B * params.T * E;
  if (n >= inX + params.B * before * E) { return; }
  let e = n % E;
  if (n < inX) {
    dx[n] = joinedGradient(n / (E * params.T), before + (n / E) % params.T, e);
  } else {
    let m = n - inX;
    dWindow[m] = joinedGradient(m / (E * before), (m / E) % before, e);
  }
}
