// ExpressiveAttention recurrent decode step, pass 2: adds the chunks' partial sums of
// recurrent-step.wgsl, N = φ(scale·q)·M' and S = φ(scale·q)·z', compensated (Neumaier: the
// chunks' sums cancel as the rows' products do), and writes
// o = N / max(ε + S, max(ε, 2⁻⁶⁰)), as the reference does: the packed sum S may round below 0,
// and the clamp keeps the denominator at least ε (and the floor). One invocation per
// (b, h, channel c), flat.
// needs common/grid.wgsl

struct Params {
  total: u32, // B·H·K
  K: u32,
  chunks: u32,
  stride: u32, // floats per (b, h, chunk) in `partial`: K + lanes (the last V holds S, splat)
  epsilon: f32,
}

// the floor of the denominator, as MIN_DENOMINATOR in reference.ts
const MIN_DENOMINATOR = 0x1p-60f;

@group(0) @binding(0) var<storage, read> partial: array<f32>; // [B, H, chunks, stride]: N per channel, then S
@group(0) @binding(1) var<storage, read_write> o: array<f32>; // [B, H, K]
@group(0) @binding(2) var<uniform> params: Params; // sizes and ε

// Neumaier's step on (sum, compensation): the exact rounding error of sum + x (Knuth's
// FastTwoSum, the larger operand first) goes to the compensation
fn addCompensated(acc: vec2f, x: f32) -> vec2f {
  let t = acc.x + x;
  let e = select((x - t) + acc.x, (acc.x - t) + x, abs(acc.x) >= abs(x));
  return vec2f(t, acc.y + e);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = i % params.K;
  let first = (i / params.K) * params.chunks * params.stride;
  var n = vec2f(0.0); // (sum, compensation)
  var s = vec2f(0.0);
  for (var chunk = 0u; chunk < params.chunks; chunk++) {
    n = addCompensated(n, partial[first + chunk * params.stride + c]);
    s = addCompensated(s, partial[first + chunk * params.stride + params.K]);
  }
  o[i] = (n.x + n.y) / max((s.x + s.y) + params.epsilon, max(params.epsilon, MIN_DENOMINATOR));
}
