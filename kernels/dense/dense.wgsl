// Dense: C = op(A)·op(B) (+ bias), C [M, N], each op a transpose or not. Each invocation computes
// ROWS rows of C by four adjacent columns, in registers, stepping through K four at a time: per
// step one 4×4 block of B serves every row, and each row meets it as one matrix-vector product.
// No workgroup memory and no barriers: caches serve the reuse (on SwiftShader a barrier costs
// more than the loads it saves).
// A job (dense-one.wgsl, dense-groups.wgsl, dense-sum.wgsl) says which block an invocation
// computes (`locate`) and which parts its sum has: a part per product, written out once per
// product (src/webgpu/copies.ts), so each reads its own bindings without a branch per read.
// A layout reads and writes the blocks (dense-quads.wgsl, or dense-scalar.wgsl for one product).
// needs grid.wgsl, gelu-math.wgsl, a job and a layout

// 1, 4 or 8 rows of C per invocation
override ROWS: u32 = 8u;
// A is read from aᵀ [K, M] (the layout's aQuads assumes ROWS ≥ 4 then)
override TRANSPOSE_A: bool = false;
// B is read from bᵀ [N, K]
override TRANSPOSE_B: bool = false;
override HAS_BIAS: bool = false;
// A is a row of ones [1, K] that no buffer holds (its binding a stand-in): C is B's column sums
override A_ONES: bool = false;
// the epilogue, ops.dense's activation where no gradient is recorded: 0 none, 1 GELU, v·Φ(v),
// 2 swish, v·σ(v) with σ(v) = 1/(1 + e^{−v}), as tfjs's sigmoid kernel forms it
override ACTIVATION: u32 = 0u;

fn activate(v: vec4<f32>) -> vec4<f32> {
  if (ACTIVATION == 1u) { return v * vec4<f32>(normalCdf(v.x), normalCdf(v.y), normalCdf(v.z), normalCdf(v.w)); }
  if (ACTIVATION == 2u) { return v * (1.0 / (1.0 + exp(-v))); }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  // the block's first row and column
  let at = locate(flatIndex(wid, nwg, lid));
  let m = at.x;
  let n = at.y;
  if (m >= params.M) { return; }
  // rows m + 4.. exist (a ROWS = 8 invocation at the last rows may have only four)
  let second = ROWS == 8u && m + 4u < params.M;
  // accumulators spelled out: an array indexed at run time would live in memory
  var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
  var c4 = vec4<f32>(0.0); var c5 = vec4<f32>(0.0); var c6 = vec4<f32>(0.0); var c7 = vec4<f32>(0.0);
  // $ {
  if (hasPart$()) {
    for (var k = 0u; k < depth$(); k += 4u) {
      // column j: row k + j of B over columns n..n+3
      let b = bQuad$(k, n);
      if (ROWS == 1u) {
        c0 += b * aQuad$(m, k);
        continue;
      }
      // column r: row m + r of A over k..k+3
      let a = aQuads$(m, k);
      c0 += b * a[0]; c1 += b * a[1]; c2 += b * a[2]; c3 += b * a[3];
      if (second) {
        let a2 = aQuads$(m + 4u, k);
        c4 += b * a2[0]; c5 += b * a2[1]; c6 += b * a2[2]; c7 += b * a2[3];
      }
    }
  }
  // $ }
  let bias = biasQuad(n);
  store(m, n, activate(c0 + bias));
  if (ROWS == 1u) { return; }
  store(m + 1u, n, activate(c1 + bias)); store(m + 2u, n, activate(c2 + bias)); store(m + 3u, n, activate(c3 + bias));
  if (second) {
    store(m + 4u, n, activate(c4 + bias)); store(m + 5u, n, activate(c5 + bias));
    store(m + 6u, n, activate(c6 + bias)); store(m + 7u, n, activate(c7 + bias));
  }
}
