// The entry point of a tiled attention pass (the forward, dQ, dK/dV) with four lanes of a
// subgroup per group of RQ rows (common/row-quarters.wgsl): subgroup r of size S takes row groups
// S/4·r onwards. Expects the pass's `tiledPass`.

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32) {
  quarter = lane % RL;
  tiledPass(wid, lid, subgroupRank(lane) * (lanes / RL) + lane / RL);
}
