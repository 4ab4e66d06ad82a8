// The entry point of a tiled attention pass (the forward, dQ, dK/dV) with an invocation per group
// of RQ rows: invocation lid takes row group lid. Expects the pass's `tiledPass` and
// common/row-whole.wgsl.

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  tiledPass(wid, lid, lid);
}
