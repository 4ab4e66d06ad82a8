// Advances each row's position by its real tokens, in place: positions[b] += lengths[b]
// (clamped to 0..T). Runs after the cache write and the attention of the same call, which
// read the positions before it. One invocation per row.

// needs common/grid.wgsl

struct Params {
  B: u32, // rows
  T: u32, // tokens in the call, the most a row can advance
}

@group(0) @binding(0) var<storage, read> lengths: array<i32>;         // [B]
@group(0) @binding(1) var<storage, read_write> positions: array<i32>; // [B], updated in place
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let b = flatIndex(wid, nwg, lid);
  if (b >= params.B) { return; }
  positions[b] += clamp(lengths[b], 0, i32(params.T));
}
