// Dense's job for G products that share A, C_g [M, N_g] = op(A)·B_g + bias_g (a layer's query, key
// and value projections of one input, or the gradients of their kernels and biases): one launch,
// the blocks of C_0 first, then C_1's, …; each invocation's block lies in one product, its part.
// The biases come packed (pack.wgsl), bias_g from quad `biasFrom`. Operands as vec4 rows
// (dense-quads.wgsl). Lines and blocks with `$` are written out once per product (src/webgpu/copies.ts).

// G, the number of products
// const GROUPS: u32 = …; (prepended by the kernel)

struct Params {
  M: u32,
  K: u32,
  N$: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1u + $u) var<storage, read> b$: array<vec4<f32>>;
@group(0) @binding(1u + GROUPS) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(2u + GROUPS + $u) var<storage, read_write> c$: array<vec4<f32>>;
@group(0) @binding(2u + 2u * GROUPS) var<uniform> params: Params;

// the product this invocation's block lies in (GROUPS: none), and its bias's first quad
var<private> group: u32;
var<private> biasFrom: u32;

// the block's first row and column in C_group (a row ≥ M: no block)
fn locate(i: u32) -> vec2<u32> {
  let rows = (params.M + ROWS - 1u) / ROWS;
  var j = i;
  group = GROUPS;
  biasFrom = 0u;
  // $ {
  if (group == GROUPS) {
    if (j < rows * (params.N$ / 4u)) {
      group = $u;
    } else {
      j -= rows * (params.N$ / 4u);
      biasFrom += params.N$ / 4u;
    }
  }
  // $ }
  if (group == GROUPS) { return vec2<u32>(params.M, 0u); }
  let quads = outWidth() / 4u;
  return vec2<u32>((j / quads) * ROWS, (j % quads) * 4u);
}

fn hasPart$() -> bool { return group == $u; }
fn depth$() -> u32 { return params.K; }
fn width$() -> u32 { return params.N$; }

fn outWidth() -> u32 {
  var width = 0u;
  if (group == $u) { width = params.N$; }
  return width;
}

// $ {
fn aAt$(q: u32) -> vec4<f32> {
  if (A_ONES) { return vec4<f32>(1.0); }
  return a[q];
}
// $ }
fn bAt$(q: u32) -> vec4<f32> { return b$[q]; }
fn biasAt(q: u32) -> vec4<f32> { return bias[biasFrom + q]; }

fn cPut(q: u32, v: vec4<f32>) {
  if (group == $u) { c$[q] = v; }
}
