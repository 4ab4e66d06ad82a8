// Attention split-K decode skeleton (Flash-Decoding), pass 1, shared by FlashStyleTiledAttention
// and ExpressiveAttention: the keys are cut into chunks of `chunk`; one invocation per (chunk s,
// query row i, head h, batch b) runs the family's row hooks over its chunk alone, reading keys
// and values straight from the cache, and writes the partial row (the unnormalised accumulator
// and packRow) for the merge pass (common/attention-merge.wgsl), or with a single chunk the
// finished row (common/split-chunk.wgsl's FINISH). Many invocations share one long
// cache, where the tiled forward would give each (row, head) to a single invocation. Each chunk is
// narrowed to the keys its query may see (keyRange), and its keys are told with the layout's
// keysSeen, so chunks past the visible range do no work. Where the adapter offers subgroups,
// common/attention-split-subgroups.wgsl gives each chunk a subgroup instead.
// The invocations are flat over (h, i, s) within a batch, folded into x and y past 65535
// workgroups (H·Tq·splits can exceed it), with the batch b in z.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/grid.wgsl, common/row-registers.wgsl, common/row-whole.wgsl, common/cache-tile.wgsl,
// common/attend-tile.wgsl, a layout, the row hooks (see common/attention-forward.wgsl),
// common/split-chunk.wgsl and the host's `const KV, KL, BC, BC4`.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let flat = flatIndex(wid, nwg, lid);
  if (flat >= params.H * params.Tq * params.splits) { return; }
  let c = chunkOf(wid.z, flat);
  foldChunk(c, 0u, 1u);
  writeChunk(c);
}
