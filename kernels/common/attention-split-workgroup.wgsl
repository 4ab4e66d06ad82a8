// Attention split-K decode skeleton, pass 1, on a GPU without subgroups: the pass of
// common/attention-split.wgsl with a workgroup of WG invocations per (chunk s, query row i, head
// h, batch b). Lane L folds tiles L, L + WG, … of the chunk into its own row state, as a
// subgroup's lanes do (common/attention-split-subgroups.wgsl); then the lanes merge their states
// in workgroup memory with the row hooks' mergeRow, halving at each step: lanes d … 2d − 1 hand
// theirs to lanes 0 … d − 1, for d = WG/2, WG/4, …, 1. Lane 0 then holds the merge of all WG
// and writes it. An invocation per chunk leaves a long cache's read to a few hundred
// invocations, too few to keep a GPU's memory busy; a workgroup per chunk has as many reading
// as a subgroup per chunk has.
// needs what common/attention-split.wgsl needs; the host's WG is a power of two.

// the states and accumulators lanes d … 2d − 1 hand down
var<workgroup> handedRows: array<vec2<f32>, WG / 2u>;
var<workgroup> handedAcc: array<V, WG / 2u * KL>;

// Merges the workgroup's row states and accumulators into lane 0's (see above). Call from
// uniform control flow (it has barriers).
fn mergeLanes(lane: u32) {
  for (var d = WG / 2u; d > 0u; d /= 2u) {
    if (lane >= d && lane < 2u * d) {
      handedRows[lane - d] = packRow(&row0);
      for (var x = 0u; x < KL; x++) { handedAcc[(lane - d) * KL + x] = acc0[x]; }
    }
    workgroupBarrier();
    if (lane < d) {
      let f = mergeRow(&row0, handedRows[lane]);
      for (var x = 0u; x < KL; x++) { acc0[x] = acc0[x] * f.x + handedAcc[lane * KL + x] * f.y; }
    }
    workgroupBarrier();
  }
}

// the launch is flat over (h, i, s) within a batch row, a workgroup each, folded into x and y
// (grid1d), with b in z
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lane: u32) {
  let job = wid.y * nwg.x + wid.x;
  if (job >= params.H * params.Tq * params.splits) { return; }
  let c = chunkOf(wid.z, job);
  foldChunk(c, lane, WG);
  mergeLanes(lane);
  if (lane == 0u) { writeChunk(c); }
}
