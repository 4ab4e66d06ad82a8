// LayerNorm backward, dx of row m. With x̂ = (x − mean)·rstd and g = dy·gamma,
// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)). An invocation or a subgroup per row.
// needs grid.wgsl, lanes-1.wgsl or lanes-4.wgsl, and row-per-invocation.wgsl or
// row-per-subgroup.wgsl (with subgroup-job.wgsl)

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

// LayerNorm's; otherwise RMSNorm's (its moments hold mean 0)
override CENTRED: bool = true;

// Row m, by `lanes` lanes: lane `lane` takes every lanes-th vector of it.
fn row(m: u32, lane: u32, lanes: u32) {
  let start = m * params.DV;
  let mean = moments[m].x;
  let rstd = moments[m].y;
  var gSum = V(0.0);
  var gxSum = V(0.0);
  for (var d = lane; d < params.DV; d += lanes) {
    let g = dy[start + d] * gamma[d];
    gSum += g;
    gxSum += g * (x[start + d] - mean) * rstd;
  }
  // RMSNorm's x̂ = x·rstd does not subtract the mean, so its dx has no mean(g) term
  let gMean = select(0.0, rowSum(lanesSum(gSum)) / params.D, CENTRED);
  let gxMean = rowSum(lanesSum(gxSum)) / params.D;
  for (var d = lane; d < params.DV; d += lanes) {
    let xHat = (x[start + d] - mean) * rstd;
    dx[start + d] = rstd * (dy[start + d] * gamma[d] - gMean - xHat * gxMean);
  }
}
