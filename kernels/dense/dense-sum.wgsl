// Dense's job for a sum of G products, C [M, N] = Σ_g A_g·B_gᵀ, A_g [M, K_g] and B_g [N, K_g] (the
// input's gradient through a layer's query, key and value projections): a block of ROWS rows by
// four columns per invocation, its sum in a part per product. Operands as vec4 rows
// (dense-quads.wgsl). Lines with `$` are written out once per product (src/webgpu/copies.ts).

// G, the number of products
// const GROUPS: u32 = …; (prepended by the kernel)

struct Params {
  M: u32,
  N: u32,
  K$: u32,
}

@group(0) @binding($u) var<storage, read> a$: array<vec4<f32>>;
@group(0) @binding(GROUPS + $u) var<storage, read> b$: array<vec4<f32>>;
@group(0) @binding(2u * GROUPS) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(2u * GROUPS + 1u) var<uniform> params: Params;

fn locate(i: u32) -> vec2<u32> {
  let quads = params.N / 4u;
  return vec2<u32>((i / quads) * ROWS, (i % quads) * 4u);
}

fn hasPart$() -> bool { return true; }
fn depth$() -> u32 { return params.K$; }
fn width$() -> u32 { return params.N; }
fn outWidth() -> u32 { return params.N; }

fn aAt$(q: u32) -> vec4<f32> { return a$[q]; }
fn bAt$(q: u32) -> vec4<f32> { return b$[q]; }
fn biasAt(q: u32) -> vec4<f32> { return vec4<f32>(0.0); }
fn cPut(q: u32, v: vec4<f32>) { c[q] = v; }
