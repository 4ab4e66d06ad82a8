// Shared by the gradient kernels of SelectiveSSM's convolution (conv-backward.wgsl,
// conv-projected-backward.wgsl): from du, at binding 4 of their entry points,
//   dPre[t] = du[t]·σ(pre[t])·(1 + pre[t]·(1 − σ(pre[t])))
// and the gradient of position c of the window followed by x, Σ_k dPre[c − k]·taps[k] over the
// tokens t = c − k of x, which also writes dPre (binding 7) once per token. A non-finite pre gives
// NaN, as tfjs's ops do. Each invocation recomputes the K pre-activations it needs (K + 1 reads
// each) rather than keep them.
// needs conv-inputs.wgsl

@group(0) @binding(4) var<storage, read> du: array<f32>; // [B, T, E]
@group(0) @binding(7) var<storage, read_write> dPre: array<f32>; // [B, T, E]

// dPre at token t of row b, channel e
fn preGradient(b: u32, t: u32, e: u32) -> f32 {
  let pre = preActivation(b, t, e);
  let s = 1.0 / (1.0 + exp(-pre));
  let d = du[(b * params.T + t) * params.E + e] * s * (1.0 + pre * (1.0 - s));
  return select(nan(), d, isFinite(pre));
}

// d joined[c] of row b, channel e; writes dPre of the token that the last tap meets there
fn joinedGradient(b: u32, c: u32, e: u32) -> f32 {
  let E = params.E;
  var d = 0.0;
  for (var k = 0u; k < params.K; k++) {
    if (c < k || c - k >= params.T) { continue; }
    let g = preGradient(b, c - k, e);
    d += g * taps[k * E + e];
    // the last tap sees each token once: it writes dPre
    if (k == params.K - 1u) { dPre[((b * params.T) + c - k) * E + e] = g; }
  }
  return d;
}
