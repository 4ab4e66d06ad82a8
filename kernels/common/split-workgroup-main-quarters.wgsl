// The entry point of the split-K decode's workgroup pass (common/attention-split-workgroup.wgsl)
// with four lanes of a subgroup per folder, each holding a quarter of the query row's channels
// (common/row-quarters.wgsl): subgroup r of size S takes folders S/4·r onwards.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32) {
  quarter = lane % RL;
  // before the job's test, which returns: the rank's barrier wants the whole workgroup
  let folder = subgroupRank(lane) * (lanes / RL) + lane / RL;
  splitWorkgroup(wid, nwg, folder, folder * RL + quarter);
}
