// The gradient of conv.wgsl's u = silu(pre), pre[t] = bias + Σ_k taps[k]·joined[t + k] (joined:
// the window, or zeros, then x), in one launch where tfjs's ops take a dozen: with
//   dPre[t] = du[t]·σ(pre[t])·(1 + pre[t]·(1 − σ(pre[t])))
// it writes dx and dWindow, d joined[c] = Σ_k dPre[c − k]·taps[k] over the tokens t = c − k of
// x, and dPre itself, from which the host takes the taps' and the bias's gradients. Each
// invocation recomputes the K pre-activations it needs (K + 1 reads each) rather than keep them.
// A non-finite pre gives NaN, as tfjs's ops do. One invocation per output number, flat over dx
// then dWindow.

// needs common/grid.wgsl and conv-inputs.wgsl

@group(0) @binding(4) var<storage, read> du: array<f32>; // [B, T, E]
@group(0) @binding(5) var<storage, read_write> dx: array<f32>; // [B, T, E]
@group(0) @binding(6) var<storage, read_write> dWindow: array<f32>; // [B, K − 1, E]
@group(0) @binding(7) var<storage, read_write> dPre: array<f32>; // [B, T, E]
@group(0) @binding(8) var<uniform> params: Params;

// dPre at token t of row b, channel e
fn preGradient(b: u32, t: u32, e: u32) -> f32 {
  let pre = preActivation(b, t, e);
  let s = 1.0 / (1.0 + exp(-pre));
  let d = du[(b * params.T + t) * params.E + e] * s * (1.0 + pre * (1.0 - s));
  return select(nan(), d, isFinite(pre));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  let E = params.E;
  let before = params.K - 1u;
  let inX = params.B * params.T * E;
  if (n >= inX + params.B * before * E) { return; }
  // this invocation's place c in joined coordinates, row b, channel e
  var b: u32;
  var c: u32;
  let e = n % E;
  if (n < inX) {
    b = n / (E * params.T);
    c = before + (n / E) % params.T;
  } else {
    let m = n - inX;
    b = m / (E * before);
    c = (m / E) % before;
  }
  // tokens t = c − k of x, 0 ≤ t < T, for each tap k
  var d = 0.0;
  for (var k = 0u; k < params.K; k++) {
    if (c < k || c - k >= params.T) { continue; }
    let g = preGradient(b, c - k, e);
    d += g * taps[k * E + e];
    // the last tap sees each token once: it writes dPre
    if (k == before) { dPre[((b * params.T) + c - k) * E + e] = g; }
  }
  if (n < inX) { dx[n] = d; } else { dWindow[n - inX] = d; }
}
