// Shared entry point of the row kernels on a device with subgroups: a subgroup per row of the
// kernel's `row(m, lane, lanes)`, whose lanes take every lanes-th vector of the row and add their
// sums with subgroupAdd (rowSum). Expects common/grid.wgsl, common/subgroup-job.wgsl and the
// kernel's `params.rows`.

fn rowSum(x: f32) -> f32 {
  return subgroupAdd(x);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32) {
  let m = subgroupJob(wid, nwg, lane, lanes);
  if (m >= params.rows) { return; }
  row(m, lane, lanes);
}
