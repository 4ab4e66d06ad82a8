// Dense's one product with its operands as vec4 rows (dense-quads.wgsl reads them).

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

fn aAt0(q: u32) -> vec4<f32> {
  if (A_ONES) { return vec4<f32>(1.0); }
  return a[q];
}
fn bAt0(q: u32) -> vec4<f32> { return b[q]; }
fn biasAt(q: u32) -> vec4<f32> { return bias[q]; }
fn cPut(q: u32, v: vec4<f32>) { c[q] = v; }
