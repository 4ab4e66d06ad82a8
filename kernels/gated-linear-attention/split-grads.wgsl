// The backward scan's one buffer of gradients cut into GLA's inputs' gradients, in one launch
// where a sum of the key blocks' parts, four slices and a product took six. The buffer holds dv
// `[B, T, H, V]` first, then from `offset` the per-key-block partial sums of dk, d(scale·q) and
// dg, `[3, B, T, H, K]` rows of `k` parts each (kernels/gated-linear-attention/backward-hooks.wgsl):
// each of those numbers is the sum of its row, and q's is then times scale.
// needs common/grid.wgsl, scan/part-sums.wgsl

struct Params {
  // numbers of q, k and g: B·T·H·K
  total: u32,
  // of v: B·T·H·V
  vTotal: u32,
  // partial sums per number
  k: u32,
  offset: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> dq: array<f32>;
@group(0) @binding(2) var<storage, read_write> dk: array<f32>;
@group(0) @binding(3) var<storage, read_write> dv: array<f32>;
@group(0) @binding(4) var<storage, read_write> dg: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// the sum of part p's row i
fn partOf(p: u32, i: u32) -> f32 {
  return partSum(params.offset + (p * params.total + i) * params.k, params.k);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i < params.vTotal) { dv[i] = grads[i]; }
  if (i < params.total) {
    dk[i] = partOf(0u, i);
    dq[i] = partOf(1u, i) * params.scale;
    dg[i] = partOf(2u, i);
  }
}
