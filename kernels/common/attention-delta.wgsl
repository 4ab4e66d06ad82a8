// Shared: the attention backward's per-row statistics, stats[b, h, t] = (statistic, delta) with
// delta = Σ_k dO[b, t, h, k]·o[b, t, h, k]: an invocation or a subgroup per row, in place of a
// multiply, a sum, a transpose and a stack (tfjs's sum launches a workgroup per row).
// needs grid.wgsl, lanes-1.wgsl or lanes-4.wgsl, and row-per-invocation.wgsl or
// row-per-subgroup.wgsl (with subgroup-job.wgsl)

struct Params {
  rows: u32,
  Tq: u32,
  H: u32,
  // K in units of V
  KV: u32,
}

@group(0) @binding(0) var<storage, read> dO: array<V>;
@group(0) @binding(1) var<storage, read> o: array<V>;
@group(0) @binding(2) var<storage, read> statistic: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

// Row i = (b·H + h)·Tq + t, the order of statistic and stats, by `lanes` lanes: lane `lane`
// takes every lanes-th vector of it.
fn row(i: u32, lane: u32, lanes: u32) {
  let t = i % params.Tq;
  let bh = i / params.Tq;
  let h = bh % params.H;
  let b = bh / params.H;
  let start = ((b * params.Tq + t) * params.H + h) * params.KV;
  var d = V(0.0);
  for (var k = lane; k < params.KV; k += lanes) { d += dO[start + k] * o[start + k]; }
  let delta = rowSum(lanesSum(d));
  if (lane == 0u) { stats[i] = vec2<f32>(statistic[i], delta); }
}
