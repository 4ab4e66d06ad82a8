// Shared: the attention backward's per-row statistics, stats[b, h, t] = (statistic, delta) with
// delta = Σ_k dO[b, t, h, k]·o[b, t, h, k]: one invocation per row, in place of a multiply, a
// sum, a transpose and a stack (tfjs's sum launches a workgroup per row).
// needs grid.wgsl and lanes-1.wgsl or lanes-4.wgsl

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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  // i = (b·H + h)·Tq + t, the order of statistic and stats
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.rows) { return; }
  let t = i % params.Tq;
  let bh = i / params.Tq;
  let h = bh % params.H;
  let b = bh / params.H;
  let start = ((b * params.Tq + t) * params.H + h) * params.KV;
  var d = V(0.0);
  for (var k = 0u; k < params.KV; k++) { d += dO[start + k] * o[start + k]; }
  stats[i] = vec2<f32>(statistic[i], lanesSum(d));
}
