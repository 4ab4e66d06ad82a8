// Shared by the AverageContext kernels that read a scan's levels of chunk sums, which they bind
// as `levels`: the forward's of x, or the backward's of the gradient through the context.
// needs chunks.wgsl

// Σ over the chunks before chunk k, or with `after` over the chunks after it; over all chunks for
// the whole-sequence context. Every level below the top adds the entries beside k's ancestor
// under the same parent; the top adds its own. Loads are unconditional, clamped to a valid entry
// and masked, in loops with constant trip counts, so a GPU has them all in flight at once (the
// same loads under a condition took 30% longer on an H100).
fn levelSum(c: Cell, k: u32, after: bool) -> V {
  var s = V(0.0);
  var idx = k;
  var base = 0u;
  var n = chunksOf(params.seqLen);
  loop {
    if (n <= TOP) { break; }
    if (CAUSAL) {
      let first = idx - idx % CHUNK;
      let end = min(first + CHUNK, n);
      for (var j = 0u; j < CHUNK; j++) {
        let e = first + j;
        let beside = select((e < idx), (e > idx) && (e < end), after);
        s += select(V(0.0), levels[levelAt(c, base + min(e, end - 1u))], beside);
      }
    }
    idx /= CHUNK;
    base += n;
    n = chunksOf(n);
  }
  for (var j = 0u; j < TOP; j++) {
    let beside = !CAUSAL || select((j < idx), (j > idx), after);
    s += select(V(0.0), levels[levelAt(c, base + min(j, n - 1u))], beside && j < n);
  }
  return s;
}
