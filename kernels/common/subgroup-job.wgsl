// Shared by the kernels that give each job (a row, a chunk of keys) a subgroup, on a device with
// subgroups: the job of the calling subgroup. Workgroup w's subgroups (common/subgroup-rank.wgsl
// numbers them) take jobs w·(WG / S) onwards, S the subgroup size. The host sizes WG as a
// multiple of 128, so every subgroup is full (WebGPU's subgroup sizes are powers of two, 4 to
// 128), and launches enough workgroups for the adapter's largest subgroups: smaller ones leave
// the jobs past the last idle. It opens the module with `enable subgroups;` and turns off the
// subgroup_uniformity diagnostic: a job is the same across its subgroup (subgroupBroadcast),
// which the uniformity analysis cannot see, so a subgroup operation after `job >= count` returns
// still runs with all of its subgroup's lanes. Expects common/grid.wgsl's `WG`.

// Call from uniform control flow (it has a barrier).
fn subgroupJob(wid: vec3u, nwg: vec3u, lane: u32, lanes: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * (WG / lanes) + subgroupRank(lane);
}
