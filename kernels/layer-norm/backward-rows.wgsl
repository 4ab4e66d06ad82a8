// LayerNorm backward, dx: one invocation per row. With x̂ = (x − mean)·rstd and g = dy·gamma,
// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
// needs grid.wgsl and lanes-1.wgsl or lanes-4.wgsl

struct Params {
  rows: u32,
  // D in units of V
  DV: u32,
  D: f32,
}

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> gamma: array<V>;
@group(0) @binding(2) var<storage, read> moments: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> dy: array<V>;
@group(0) @binding(4) var<storage, read_write> dx: array<V>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let m = flatIndex(wid, nwg, lid);
  if (m >= params.rows) { return; }
  let start = m * params.DV;
  let mean = moments[m].x;
  let rstd = moments[m].y;
  var gSum = V(0.0);
  var gxSum = V(0.0);
  for (var d = 0u; d < params.DV; d++) {
    let g = dy[start + d] * gamma[d];
    gSum += g;
    gxSum += g * (x[start + d] - mean) * rstd;
  }
  let gMean = lanesSum(gSum) / params.D;
  let gxMean = lanesSum(gxSum) / params.D;
  for (var d = 0u; d < params.DV; d++) {
    let xHat = (x[start + d] - mean) * rstd;
    dx[start + d] = rstd * (dy[start + d] * gamma[d] - gMean - xHat * gxMean);
  }
}
