// The entry point of the split-K decode's workgroup pass (common/attention-split-workgroup.wgsl)
// with an invocation per folder, holding its query row whole (common/row-whole.wgsl).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lane: u32) {
  splitWorkgroup(wid, nwg, lane, lane);
}
