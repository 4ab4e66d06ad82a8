// Dense's operands as vec4 rows: K and N multiples of 4, and M too when A is transposed. A row of
// C past M is clamped on reading and skipped on writing.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

// four quads of a (or b) from quad `at`, `stride` quads apart, as the columns of a matrix
fn aColumns(at: u32, stride: u32) -> mat4x4<f32> {
  return mat4x4<f32>(a[at], a[at + stride], a[at + 2u * stride], a[at + 3u * stride]);
}

fn bColumns(at: u32, stride: u32) -> mat4x4<f32> {
  return mat4x4<f32>(b[at], b[at + stride], b[at + 2u * stride], b[at + 3u * stride]);
}

// column j: B[k + j, n..n+3]
fn bQuad(k: u32, n: u32) -> mat4x4<f32> {
  if (TRANSPOSE_B) {
    // bᵀ's rows n..n+3 hold B's columns: reading them over k..k+3 gives the block transposed
    return transpose(bColumns((n * params.K + k) / 4u, params.K / 4u));
  }
  return bColumns((k * params.N + n) / 4u, params.N / 4u);
}

// A[m, k..k+3] (A not transposed)
fn aQuad(m: u32, k: u32) -> vec4<f32> {
  return a[(min(m, params.M - 1u) * params.K + k) / 4u];
}

// column r: A[m + r, k..k+3]
fn aQuads(m: u32, k: u32) -> mat4x4<f32> {
  if (TRANSPOSE_A) {
    return transpose(aColumns((k * params.M + m) / 4u, params.M / 4u));
  }
  return mat4x4<f32>(aQuad(m, k), aQuad(m + 1u, k), aQuad(m + 2u, k), aQuad(m + 3u, k));
}

fn biasQuad(n: u32) -> vec4<f32> {
  if (HAS_BIAS) { return bias[n / 4u]; }
  return vec4<f32>(0.0);
}

fn store(m: u32, n: u32, v: vec4<f32>) {
  if (m < params.M) { c[(m * params.N + n) / 4u] = v; }
}
