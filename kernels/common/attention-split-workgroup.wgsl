// Attention split-K decode skeleton, pass 1, with a workgroup per (chunk s, query row i, head h,
// batch b): the pass of common/attention-split.wgsl shared by WG / RL folders. A folder is one
// invocation holding the query row whole (common/row-whole.wgsl, entry point
// common/split-workgroup-main.wgsl) or, where the device has subgroups, four lanes of a subgroup
// holding a quarter of its channels each (common/row-quarters.wgsl, entry point
// common/split-workgroup-main-quarters.wgsl), which read each key row as 64-byte runs where a
// whole row's invocation reads it alone. Folder F folds tiles F, F + folders, … of the chunk into
// its row state, as a subgroup's lanes do (common/attention-split-subgroups.wgsl); then the
// folders merge their states in workgroup memory with the row hooks' mergeRow, halving at each
// step: folders d … 2d − 1 hand theirs to folders 0 … d − 1, for d = folders/2, folders/4, …, 1,
// each lane its own channels. Folder 0 then holds the merge of all and writes it. An invocation
// per chunk leaves a long cache's read to a few hundred invocations, too few to keep a GPU's
// memory busy; a workgroup per chunk has as many reading as a subgroup per chunk has, or with
// quarters four times as many.
// needs what common/attention-split.wgsl needs, one of the entry points above, and the host's
// WG, a power of two and a multiple of RL.

// the states and accumulators the folders d … 2d − 1 hand down, by their lanes' slots (below)
var<workgroup> handedRows: array<vec2<f32>, WG / 2u>;
var<workgroup> handedAcc: array<V, WG / 2u * KL>;

// Merges the workgroup's row states and accumulators into folder 0's (see above). `slot`, the
// lane's place among the workgroup's WG, is folder·RL + its quarter. Call from uniform control
// flow (it has barriers).
fn mergeFolders(folder: u32, slot: u32) {
  for (var d = WG / RL / 2u; d > 0u; d /= 2u) {
    if (folder >= d && folder < 2u * d) {
      let to = slot - d * RL;
      handedRows[to] = packRow(&row0);
      for (var x = 0u; x < KL; x++) { handedAcc[to * KL + x] = acc0[x]; }
    }
    workgroupBarrier();
    if (folder < d) {
      let f = mergeRow(&row0, handedRows[slot]);
      for (var x = 0u; x < KL; x++) { acc0[x] = acc0[x] * f.x + handedAcc[slot * KL + x] * f.y; }
    }
    workgroupBarrier();
  }
}

// The pass for the calling lane of folder `folder` (slot as in mergeFolders). The launch is
// flat over (h, i, s) within a batch row, a workgroup each, folded into x and y (grid1d), with
// b in z. Call from uniform control flow.
fn splitWorkgroup(wid: vec3u, nwg: vec3u, folder: u32, slot: u32) {
  let job = wid.y * nwg.x + wid.x;
  if (job >= params.H * params.Tq * params.splits) { return; }
  let c = chunkOf(wid.z, job);
  foldChunk(c, folder, WG / RL);
  mergeFolders(folder, slot);
  if (folder == 0u) { writeChunk(c); }
}
