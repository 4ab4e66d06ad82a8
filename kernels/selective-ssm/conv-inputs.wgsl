// Shared by SelectiveSSM's convolution kernels (src/mixers/selective-ssm/conv.ts): their params,
// their inputs at bindings 0–3, the window followed by x, the pre-activation and its silu.
// needs common/float-bits.wgsl

struct Params {
  B: u32,
  T: u32,
  E: u32,
  // taps per channel
  K: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>; // [B, T, E], or [B, T, 2E] with X_IN_PROJECTION
@group(0) @binding(1) var<storage, read> window: array<f32>; // [B, K − 1, E], or a stand-in without HAS_WINDOW
@group(0) @binding(2) var<storage, read> taps: array<f32>; // [K, E]
@group(0) @binding(3) var<storage, read> bias: array<f32>; // [E]

override HAS_WINDOW: bool = false;
// x is the first half of each row of the in projection's [B, T, 2E] (a decode step's, which reads
// it there rather than have it sliced out); otherwise [B, T, E]
override X_IN_PROJECTION: bool = false;

// position c of the window followed by x, row b, channel e (c < K − 1: the window)
fn joined(b: u32, c: u32, e: u32) -> f32 {
  let before = params.K - 1u;
  if (c >= before) { return x[(b * params.T + c - before) * select(1u, 2u, X_IN_PROJECTION) * params.E + e]; }
  if (!HAS_WINDOW) { return 0.0; }
  return window[(b * before + c) * params.E + e];
}

// bias + Σ_k taps[k]·joined[t + k] at token t of row b, channel e
fn preActivation(b: u32, t: u32, e: u32) -> f32 {
  var pre = bias[e];
  for (var k = 0u; k < params.K; k++) { pre += taps[k * params.E + e] * joined(b, t + k, e); }
  return pre;
}

// silu(pre) = pre·σ(pre), with ±∞ and NaN as tfjs gives them (∞·1, −∞·0 = NaN), which a shader
// compiler need not keep
fn silu(pre: f32) -> f32 {
  let positive = bitcast<u32>(pre) == 0x7f800000u;
  return select(select(nan(), pre, positive), pre / (1.0 + exp(-pre)), isFinite(pre));
}
