// GELU, y = x·Φ(x) with Φ(x) = (1 + erf(x/√2))/2 (the erf form, tfjs-layers' and PyTorch's
// default), elementwise on the output of a dense projection (`ops.dense`'s `activation: 'gelu'`,
// src/dense/gelu.ts): one launch where tfjs ops take five. With GRAD, the gradient instead,
// dx = dy·(Φ(x) + x·φ(x)), φ the standard normal density: one launch where tfjs's gradient of
// those five ops takes about ten. A call that records no gradient takes GELU inside the dense
// kernel instead (dense.wgsl's epilogue). One invocation per element.
// needs common/grid.wgsl and gelu-math.wgsl

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>; // with GRAD; else x stands in, never read
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override GRAD: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.n) { return; }
  let v = x[i];
  let cdf = normalCdf(v);
  if (!GRAD) {
    out[i] = v * cdf;
    return;
  }
  // φ(v) = e^{−v²/2}/√(2π)
  out[i] = dy[i] * (cdf + v * 0.3989422804014327 * exp(-0.5 * v * v));
}
