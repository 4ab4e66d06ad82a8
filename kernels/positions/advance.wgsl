// Each row's position one token on, next[b] = positions[b] + 1, int32 [B]: the positions a
// decode step leaves where none of its kernels forms them. tfjs's add of a scalar 1 would make
// the scalar on the CPU and upload it every step. Needs common/grid.wgsl.

struct Params {
  B: u32, // rows
}

@group(0) @binding(0) var<storage, read> positions: array<i32>; // [B]
@group(0) @binding(1) var<storage, read_write> next: array<i32>; // [B]
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let b = flatIndex(wid, nwg, lid);
  if (b < params.B) { next[b] = positions[b] + 1; }
}
