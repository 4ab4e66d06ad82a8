// LayerNorm backward, dgamma = Σ_m dy·x̂ and, centred, dbeta = Σ_m dy, in one pass: one invocation
// per V of columns, down the rows (tfjs's sum over rows launches a workgroup per column).
// needs grid.wgsl and lanes-1.wgsl or lanes-4.wgsl

// LayerNorm (dbeta too) or RMSNorm (no beta: its binding is never written)
override CENTRED: bool = true;

struct Params {
  rows: u32,
  // D in units of V
  DV: u32,
}

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> moments: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<V>;
@group(0) @binding(3) var<storage, read_write> dGamma: array<V>;
@group(0) @binding(4) var<storage, read_write> dBeta: array<V>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let d = flatIndex(wid, nwg, lid);
  if (d >= params.DV) { return; }
  var g = V(0.0);
  var b = V(0.0);
  for (var m = 0u; m < params.rows; m++) {
    let at = m * params.DV + d;
    let s = moments[m];
    g += dy[at] * (x[at] - s.x) * s.y;
    b += dy[at];
  }
  dGamma[d] = g;
  if (CENTRED) { dBeta[d] = b; }
}
