// Shared by the kernels that place work by subgroup (common/subgroup-job.wgsl,
// common/row-quarters.wgsl): which invocations form a subgroup is the implementation's choice, so
// each subgroup numbers itself with an atomic counter in workgroup memory. Opens with `enable subgroups;` (SUBGROUP_DIRECTIVES in src/webgpu/subgroups.ts).

var<workgroup> subgroupsNumbered: atomic<u32>;

// The calling subgroup's number within its workgroup, 0 to (workgroup size / subgroup size) − 1.
// Call from uniform control flow (it has a barrier).
fn subgroupRank(lane: u32) -> u32 {
  // orders the counter's zero initialisation before every increment: without it SwiftShader
  // numbered every subgroup 0
  workgroupBarrier();
  var rank = 0u;
  if (lane == 0u) { rank = atomicAdd(&subgroupsNumbered, 1u); }
  return subgroupBroadcast(rank, 0u);
}
