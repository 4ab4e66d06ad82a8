// LayerNorm forward: one invocation per row of x [M, D], y = (x − mean)·rstd·gamma + beta with
// rstd = 1/√(var + ε), the variance about the mean (two passes over the row, not E[x²] − mean²,
// which cancels); mean and rstd are kept for the backward.
// needs grid.wgsl and lanes-1.wgsl or lanes-4.wgsl

struct Params {
  rows: u32,
  // D in units of V
  DV: u32,
  D: f32,
  epsilon: f32,
}

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> gamma: array<V>;
@group(0) @binding(2) var<storage, read> beta: array<V>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;
@group(0) @binding(4) var<storage, read_write> moments: array<vec2<f32>>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let m = flatIndex(wid, nwg, lid);
  if (m >= params.rows) { return; }
  let start = m * params.DV;
  var sum = V(0.0);
  for (var d = 0u; d < params.DV; d++) { sum += x[start + d]; }
  let mean = lanesSum(sum) / params.D;
  var squares = V(0.0);
  for (var d = 0u; d < params.DV; d++) {
    let c = x[start + d] - mean;
    squares += c * c;
  }
  let rstd = inverseSqrt(lanesSum(squares) / params.D + params.epsilon);
  for (var d = 0u; d < params.DV; d++) {
    y[start + d] = (x[start + d] - mean) * rstd * gamma[d] + beta[d];
  }
  moments[m] = vec2<f32>(mean, rstd);
}
