// The taps' and the bias's gradients of SelectiveSSM's convolution, from dPre (conv-gradient.wgsl):
//   dTaps[k, e] = Σ_{b, t} dPre[b, t, e]·joined[b, t + k, e]      dBias[e] = Σ_{b, t} dPre[b, t, e]
// in one launch, where tfjs took three (a pad, its depthwise filter gradient, a column sum). A
// workgroup takes CH adjacent channels (reads of a row coalesce) and one of the K + 1 sums
// (k = K: the bias's); LANES invocations per channel take every LANES-th row, and their partial
// sums meet in workgroup memory.

// needs conv-inputs.wgsl

@group(0) @binding(4) var<storage, read> dPre: array<f32>; // [B, T, E]
@group(0) @binding(5) var<storage, read_write> dTaps: array<f32>; // [K, E]
@group(0) @binding(6) var<storage, read_write> dBias: array<f32>; // [E]
@group(0) @binding(7) var<uniform> params: Params;

const CH = 16u;
const LANES = 4u;
var<workgroup> partial: array<f32, 64>; // CH·LANES

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let E = params.E;
  let e = wid.x * CH + lid % CH;
  let k = wid.y;
  let lane = lid / CH;
  var s = 0.0;
  if (e < E) {
    let rows = params.B * params.T;
    for (var r = lane; r < rows; r += LANES) {
      let g = dPre[r * E + e];
      if (k == params.K) { s += g; } else { s += g * joined(r / params.T, r % params.T + k, e); }
    }
  }
  partial[lid] = s;
  workgroupBarrier();
  if (lane != 0u || e >= E) { return; }
  var total = 0.0;
  for (var l = 0u; l < LANES; l++) { total += partial[lid + l * CH]; }
  if (k == params.K) { dBias[e] = total; } else { dTaps[k * E + e] = total; }
}
