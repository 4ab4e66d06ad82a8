// LayerNorm forward, row m of x [M, D]: y = (x − mean)·rstd·gamma + beta with
// rstd = 1/√(var + ε), the variance about the mean (two passes over the row, not E[x²] − mean²,
// which cancels); mean and rstd are kept for the backward. An invocation or a subgroup per row.
// Without CENTRED, RMSNorm: mean 0 and no beta, y = x·rstd·gamma with rstd = 1/√(mean(x²) + ε).
// x is read through the bindings' `load(i)`, `keep(i, v)` sees each of its elements once, in the
// last pass, and `finish(i, y)` gives what is written of each output (forward-x.wgsl: x itself,
// y as it is; forward-residual.wgsl: a sum, which it writes; forward-gated.wgsl: y times a swish
// gate). needs grid.wgsl, lanes-1.wgsl or lanes-4.wgsl, bindings (forward-x.wgsl,
// forward-residual.wgsl or forward-gated.wgsl), and row-per-invocation.wgsl or
// row-per-subgroup.wgsl (with subgroup-job.wgsl)

struct Params {
  rows: u32,
  // D in units of V
  DV: u32,
  D: f32,
  epsilon: f32,
}

// LayerNorm; otherwise RMSNorm, and beta is a stand-in, never read
override CENTRED: bool = true;

// Row m, by `lanes` lanes: lane `lane` takes every lanes-th vector of it.
fn row(m: u32, lane: u32, lanes: u32) {
  let start = m * params.DV;
  var mean = 0.0;
  if (CENTRED) {
    var sum = V(0.0);
    for (var d = lane; d < params.DV; d += lanes) { sum += load(start + d); }
    mean = rowSum(lanesSum(sum)) / params.D;
  }
  var squares = V(0.0);
  for (var d = lane; d < params.DV; d += lanes) {
    let c = load(start + d) - mean;
    squares += c * c;
  }
  let rstd = inverseSqrt(rowSum(lanesSum(squares)) / params.D + params.epsilon);
  for (var d = lane; d < params.DV; d += lanes) {
    let v = load(start + d);
    keep(start + d, v);
    let scaled = (v - mean) * rstd * gamma[d];
    y[start + d] = finish(start + d, select(scaled, scaled + beta[d], CENTRED));
  }
  if (lane == 0u) { moments[m] = vec2<f32>(mean, rstd); }
}
