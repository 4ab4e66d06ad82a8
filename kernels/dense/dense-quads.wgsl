// Dense's operands as vec4 rows, read through the job's aAt$ and bAt$ (a quad's index in part $'s
// A and B), biasAt and cPut: every part's K (`depth$`) and B's row length (`width$`) multiples
// of 4, and M too when A is transposed. A row of C past M is clamped on reading and skipped on
// writing. The readers are written out once per part (src/webgpu/copies.ts).

// $ {
// four quads of part $'s a (or b) from quad `at`, `stride` quads apart, as the columns of a matrix
fn aColumns$(at: u32, stride: u32) -> mat4x4<f32> {
  return mat4x4<f32>(aAt$(at), aAt$(at + stride), aAt$(at + 2u * stride), aAt$(at + 3u * stride));
}

fn bColumns$(at: u32, stride: u32) -> mat4x4<f32> {
  return mat4x4<f32>(bAt$(at), bAt$(at + stride), bAt$(at + 2u * stride), bAt$(at + 3u * stride));
}

// column j: B[k + j, n..n+3]
fn bQuad$(k: u32, n: u32) -> mat4x4<f32> {
  if (TRANSPOSE_B) {
    // bᵀ's rows n..n+3 hold B's columns: reading them over k..k+3 gives the block transposed
    return transpose(bColumns$((n * depth$() + k) / 4u, depth$() / 4u));
  }
  return bColumns$((k * width$() + n) / 4u, width$() / 4u);
}

// A[m, k..k+3] (A not transposed)
fn aQuad$(m: u32, k: u32) -> vec4<f32> {
  return aAt$((min(m, params.M - 1u) * depth$() + k) / 4u);
}

// column r: A[m + r, k..k+3]
fn aQuads$(m: u32, k: u32) -> mat4x4<f32> {
  if (TRANSPOSE_A) {
    return transpose(aColumns$((k * params.M + m) / 4u, params.M / 4u));
  }
  return mat4x4<f32>(aQuad$(m, k), aQuad$(m + 1u, k), aQuad$(m + 2u, k), aQuad$(m + 3u, k));
}
// $ }

fn biasQuad(n: u32) -> vec4<f32> {
  if (HAS_BIAS) { return biasAt(n / 4u); }
  return vec4<f32>(0.0);
}

fn store(m: u32, n: u32, v: vec4<f32>) {
  if (m < params.M) { cPut((m * outWidth() + n) / 4u, v); }
}
