// Dense's one product element by element, any M, K and N. Reads are clamped into the matrices and
// only elements inside C are written, so a block's rows past M and columns past N, which only
// such elements sum, may read whatever the clamp gives; an element past K reads as 0, so that the
// last step of four adds nothing past K. Selects on clamped reads, not branches around them: the
// branches made the kernel 1.5–2 times slower on SwiftShader (docs/benchmarks.md). Its readers
// are part 0's (`$`, src/webgpu/copies.ts).

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

fn aAt(m: u32, k: u32) -> f32 {
  if (A_ONES) { return select(0.0, 1.0, k < params.K); }
  let mc = min(m, params.M - 1u);
  let kc = min(k, params.K - 1u);
  var v: f32;
  if (TRANSPOSE_A) { v = a[kc * params.M + mc]; } else { v = a[mc * params.K + kc]; }
  return select(0.0, v, k < params.K);
}

fn bAt(k: u32, n: u32) -> f32 {
  let kc = min(k, params.K - 1u);
  let nc = min(n, params.N - 1u);
  var v: f32;
  if (TRANSPOSE_B) { v = b[nc * params.K + kc]; } else { v = b[kc * params.N + nc]; }
  return select(0.0, v, k < params.K);
}

fn bRow(k: u32, n: u32) -> vec4<f32> {
  return vec4<f32>(bAt(k, n), bAt(k, n + 1u), bAt(k, n + 2u), bAt(k, n + 3u));
}

// column j: B[k + j, n..n+3]
fn bQuad$(k: u32, n: u32) -> mat4x4<f32> {
  return mat4x4<f32>(bRow(k, n), bRow(k + 1u, n), bRow(k + 2u, n), bRow(k + 3u, n));
}

// A[m, k..k+3]
fn aQuad$(m: u32, k: u32) -> vec4<f32> {
  return vec4<f32>(aAt(m, k), aAt(m, k + 1u), aAt(m, k + 2u), aAt(m, k + 3u));
}

// column r: A[m + r, k..k+3]
fn aQuads$(m: u32, k: u32) -> mat4x4<f32> {
  return mat4x4<f32>(aQuad$(m, k), aQuad$(m + 1u, k), aQuad$(m + 2u, k), aQuad$(m + 3u, k));
}

fn biasQuad(n: u32) -> vec4<f32> {
  if (!HAS_BIAS) { return vec4<f32>(0.0); }
  let last = params.N - 1u;
  return vec4<f32>(bias[n], bias[min(n + 1u, last)], bias[min(n + 2u, last)], bias[min(n + 3u, last)]);
}

fn store(m: u32, n: u32, v: vec4<f32>) {
  if (m >= params.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (n + j < params.N) { c[m * params.N + n + j] = v[j]; }
  }
}
