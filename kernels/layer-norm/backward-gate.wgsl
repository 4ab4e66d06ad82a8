// The gradient of RMSNorm with a swish output gate (forward-gated.wgsl): y = n·swish(z), with n
// the norm x̂·gamma (x̂ = x·rstd) and swish(z) = z·σ(z). For each number (or V of them) of row m,
//   dn = dy·swish(z)        dz = dy·n·σ(z)·(1 + z·(1 − σ(z)))
// dn is the norm's output gradient, which backward-rows.wgsl and backward-gamma.wgsl carry on to
// x and gamma. One launch where tfjs's gradients of the two products and the sigmoid take eight.
// needs grid.wgsl and lanes-1.wgsl or lanes-4.wgsl

struct Params {
  // M·D in units of V
  total: u32,
  // D in units of V
  DV: u32,
}

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> gamma: array<V>;
@group(0) @binding(2) var<storage, read> moments: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> gate: array<V>;
@group(0) @binding(4) var<storage, read> dy: array<V>;
@group(0) @binding(5) var<storage, read_write> dn: array<V>;
@group(0) @binding(6) var<storage, read_write> dGate: array<V>;
@group(0) @binding(7) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let s = moments[i / params.DV];
  let z = gate[i];
  // σ as tfjs's sigmoid kernel forms it, and the forward
  let sig = 1.0 / (1.0 + exp(-z));
  let g = dy[i];
  dn[i] = g * (z * sig);
  dGate[i] = g * ((x[i] - s.x) * s.y * gamma[i % params.DV]) * (sig * (1.0 + z * (1.0 - sig)));
}
