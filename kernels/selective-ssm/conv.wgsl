// SelectiveSSM's causal depthwise convolution and its SiLU (src/mixers/selective-ssm/conv.ts), in
// one launch where tfjs ops take five (a pad, the convolution, the bias, a sigmoid and a product):
//   u[b, t, e] = silu(bias[e] + Σ_k taps[k, e]·x[b, t + k − (K − 1), e])
// where a position before the first token reads the window of the K − 1 tokens before x (a
// decode step's or a prefill's), or 0 without one. With NEXT_WINDOW it also writes the window
// after x: the last K − 1 tokens of the window followed by x, a decode step's next state.
// One invocation per output number, flat over u then the next window.

// needs common/grid.wgsl

struct Params {
  B: u32,
  T: u32,
  E: u32,
  // taps per channel
  K: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>; // [B, T, E]
@group(0) @binding(1) var<storage, read> window: array<f32>; // [B, K − 1, E], or a stand-in without HAS_WINDOW
@group(0) @binding(2) var<storage, read> taps: array<f32>; // [K, E]
@group(0) @binding(3) var<storage, read> bias: array<f32>; // [E]
@group(0) @binding(4) var<storage, read_write> u: array<f32>; // [B, T, E]
@group(0) @binding(5) var<storage, read_write> next: array<f32>; // [B, K − 1, E], or a stand-in without NEXT_WINDOW
@group(0) @binding(6) var<uniform> params: Params;

override HAS_WINDOW: bool = false;
override NEXT_WINDOW: bool = false;

// by its bits: a shader compiler may assume that every float is finite
fn isFinite(a: f32) -> bool {
  return (bitcast<u32>(a) & 0x7f800000u) != 0x7f800000u;
}

fn nan() -> f32 {
  let bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}

// position c of the window followed by x, row b, channel e (c < K − 1: the window)
fn joined(b: u32, c: u32, e: u32) -> f32 {
  let before = params.K - 1u;
  if (c >= before) { return x[(b * params.T + c - before) * params.E + e]; }
  if (!HAS_WINDOW) { return 0.0; }
  return window[(b * before + c) * params.E + e];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  let E = params.E;
  let outputs = params.B * params.T * E;
  if (n < outputs) {
    let e = n % E;
    let t = (n / E) % params.T;
    let b = n / (E * params.T);
    var pre = bias[e];
    for (var k = 0u; k < params.K; k++) { pre += taps[k * E + e] * joined(b, t + k, e); }
    // silu(pre) = pre·σ(pre); ±∞ and NaN as tfjs gives them (∞·1, −∞·0 = NaN), which a shader
    // compiler need not keep
    let silu = pre / (1.0 + exp(-pre));
    let positive = bitcast<u32>(pre) == 0x7f800000u;
    u[n] = select(select(nan(), pre, positive), silu, isFinite(pre));
    return;
  }
  if (!NEXT_WINDOW) { return; }
  let m = n - outputs;
  let before = params.K - 1u;
  if (m >= params.B * before * E) { return; }
  let e = m % E;
  let i = (m / E) % before;
  let b = m / (E * before);
  next[m] = joined(b, params.T + i, e);
}
