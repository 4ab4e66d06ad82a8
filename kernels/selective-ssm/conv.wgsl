// SelectiveSSM's causal depthwise convolution and its SiLU (src/mixers/selective-ssm/conv.ts), in
// one launch where tfjs ops take five (a pad, the convolution, the bias, a sigmoid and a product):
//   u[b, t, e] = silu(bias[e] + Σ_k taps[k, e]·x[b, t + k − (K − 1), e])
// where a position before the first token reads the window of the K − 1 tokens before x (a
// decode step's or a prefill's), or 0 without one. With NEXT_WINDOW it also writes the window
// after x: the last K − 1 tokens of the window followed by x, a decode step's next state, and
// with ADVANCE each row's position plus one, the step's next positions (where tfjs's add took a
// launch of its own). One invocation per output number, flat over u then the next window.

// needs common/grid.wgsl and conv-inputs.wgsl

@group(0) @binding(4) var<storage, read> positions: array<i32>; // [B], or a stand-in without ADVANCE
@group(0) @binding(5) var<storage, read_write> u: array<f32>; // [B, T, E]
@group(0) @binding(6) var<storage, read_write> next: array<f32>; // [B, K − 1, E], or a stand-in without NEXT_WINDOW
@group(0) @binding(7) var<storage, read_write> nextPositions: array<i32>; // [B], or a stand-in without ADVANCE
@group(0) @binding(8) var<uniform> params: Params;

override NEXT_WINDOW: bool = false;
override ADVANCE: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  // the launch has at least B·T·E ≥ B invocations
  if (ADVANCE && n < params.B) { nextPositions[n] = positions[n] + 1; }
  let E = params.E;
  let outputs = params.B * params.T * E;
  if (n < outputs) {
    let e = n % E;
    let t = (n / E) % params.T;
    let b = n / (E * params.T);
    u[n] = silu(preActivation(b, t, e));
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
