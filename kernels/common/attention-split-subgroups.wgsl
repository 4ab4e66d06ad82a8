// Attention split-K decode skeleton, pass 1, where the device has subgroups: the pass of
// common/attention-split.wgsl with a subgroup per (chunk s, query row i, head h, batch b) instead
// of an invocation. Lane L of a subgroup of S folds tiles L, L + S, … of the chunk into its own
// row state; then the lanes merge their states pairwise with the row hooks' mergeRow, the merge
// pass's algebra, across lanes L and L xor d for d = S/2, S/4, …, 1, after which every lane holds
// the merge of all S; the first lane writes it.
// Correct for any subgroup size WebGPU allows: common/subgroup-job.wgsl gives each subgroup its
// job, and says how.
// needs what common/attention-split.wgsl needs, and common/subgroup-job.wgsl.

// Merges the row states and accumulators of the subgroup's lanes (see above).
fn mergeLanes(lanes: u32) {
  for (var d = lanes / 2u; d > 0u; d /= 2u) {
    let f = mergeRow(&row0, subgroupShuffleXor(packRow(&row0), d));
    for (var x = 0u; x < KL; x++) { acc0[x] = acc0[x] * f.x + subgroupShuffleXor(acc0[x], d) * f.y; }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32) {
  let job = subgroupJob(wid, nwg, lane, lanes);
  if (job >= params.H * params.Tq * params.splits) { return; }
  let c = chunkOf(wid.z, job);
  foldChunk(c, lane, lanes);
  mergeLanes(lanes);
  if (lane == 0u) { writeChunk(c); }
}
