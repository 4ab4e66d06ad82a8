// Shared entry point of the row kernels (a sum over each row, then a pass over it): one
// invocation per row of the kernel's `row(m, lane, lanes)`, which here has one lane, so that its
// rowSum is the lane's own sum. Expects common/grid.wgsl and the kernel's `params.rows`.

fn rowSum(x: f32) -> f32 {
  return x;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let m = flatIndex(wid, nwg, lid);
  if (m >= params.rows) { return; }
  row(m, 0u, 1u);
}
