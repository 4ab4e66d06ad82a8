// Shared by the AverageContext kernels that need c[t] (all but the chunk sums): a chunk's
// offset from the chunk and block sums, which those kernels bind as `sums` and `blockSums`.
// needs chunks.wgsl

// Σ x[s] over the chunks before chunk k (causal), or over all of T, in block then chunk order.
fn contextOffset(c: Cell, k: u32) -> V {
  var s = V(0.0);
  if (!CAUSAL) {
    for (var j = 0u; j < params.numBlocks; j++) { s += blockSums[blockAt(c, j)]; }
    return s;
  }
  let blk = k / params.block;
  for (var j = 0u; j < blk; j++) { s += blockSums[blockAt(c, j)]; }
  for (var j = blk * params.block; j < k; j++) { s += sums[chunkAt(c, j)]; }
  return s;
}
