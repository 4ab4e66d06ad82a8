// Dense's job for one product and its B's column sums, C [M, N] = op(A)·B and S [N] = 1ᵀ·B (a
// layer's kernel and bias gradients, Aᵀ·dy and 1ᵀ·dy, from one read of dy's layout): the blocks
// of C are part 0, then one row of blocks is part 1, whose A is a row of ones that no buffer
// holds. Part 1's blocks have ROWS equal rows; only the first is written. Operands as vec4 rows
// (dense-quads.wgsl). Lines and blocks with `$` are written out once per part
// (src/webgpu/copies.ts).

struct Params {
  M: u32,
  K: u32,
  N: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> sums: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

// the part this invocation's block lies in
var<private> part: u32;

// the block's first row and column in its part's output (a row ≥ M: no block)
fn locate(i: u32) -> vec2<u32> {
  let quads = params.N / 4u;
  let blocks = ((params.M + ROWS - 1u) / ROWS) * quads;
  part = select(1u, 0u, i < blocks);
  if (part == 0u) { return vec2<u32>((i / quads) * ROWS, (i % quads) * 4u); }
  let j = i - blocks;
  return vec2<u32>(select(params.M, 0u, j < quads), (j % quads) * 4u);
}

fn hasPart$() -> bool { return part == $u; }
fn depth$() -> u32 { return params.K; }
fn width$() -> u32 { return params.N; }
fn outWidth() -> u32 { return params.N; }

fn aAt0(q: u32) -> vec4<f32> { return a[q]; }
fn aAt1(q: u32) -> vec4<f32> { return vec4<f32>(1.0); }
fn bAt$(q: u32) -> vec4<f32> { return b[q]; }
fn biasAt(q: u32) -> vec4<f32> { return vec4<f32>(0.0); }

fn cPut(q: u32, v: vec4<f32>) {
  if (part == 0u) {
    c[q] = v;
  } else if (q < params.N / 4u) {
    sums[q] = v;
  }
}
