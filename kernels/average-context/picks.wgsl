// Shared by the AverageContext backward kernels, which bind the forward's picks as `picks`.
// needs combine.wgsl and chunks.wgsl

// min/max's packed picks of chunk k (none for mean and the context alone, nor past the last chunk)
fn picksOf(c: Cell, k: u32) -> VU {
  if (!combinePicks() || k >= chunksOf(params.seqLen)) { return VU(0u); }
  return picks[picksAt(c, k)];
}
