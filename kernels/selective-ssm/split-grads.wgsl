// The backward scan's one buffer (backward-hooks.wgsl) cut into the scan's inputs' gradients, in
// one launch where two sums of partial sums and three slices took five: du, d delta and (HAS_Z)
// dz `[B, T, E]`, side by side from 0; d chan `[E, N + 2]`, each number the sum of its
// `chanParts` partial sums (one per row and chunk) from `offChan`; d bc `[B, T, 2N]`, each the sum
// of its `bcParts` (one per block of channels) from `offBC`.
// needs common/grid.wgsl, scan/part-sums.wgsl

override HAS_Z: bool = false;

struct Params {
  // numbers of u: B·T·E
  seq: u32,
  chanCount: u32,
  chanParts: u32,
  offChan: u32,
  bcCount: u32,
  bcParts: u32,
  offBC: u32,
}

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> du: array<f32>;
@group(0) @binding(2) var<storage, read_write> dDelta: array<f32>;
@group(0) @binding(3) var<storage, read_write> dz: array<f32>; // one number, never written, without HAS_Z
@group(0) @binding(4) var<storage, read_write> dChan: array<f32>;
@group(0) @binding(5) var<storage, read_write> dBC: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i < params.seq) {
    du[i] = grads[i];
    dDelta[i] = grads[params.seq + i];
    if (HAS_Z) { dz[i] = grads[2u * params.seq + i]; }
  }
  if (i < params.chanCount) { dChan[i] = partSum(params.offChan + i * params.chanParts, params.chanParts); }
  if (i < params.bcCount) { dBC[i] = partSum(params.offBC + i * params.bcParts, params.bcParts); }
}
