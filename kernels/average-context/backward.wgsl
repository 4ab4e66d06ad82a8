// AverageContext, pass 2 of the backward:
//   dx[t] = dy[t]·∂C_t/∂x[t] + dy[t+1]·∂C_{t+1}/∂x[t] (+ dy[0]·∂C_0/∂x[-1] at t = 0, as x[-1] := x[0])
//         + Σ_{u ≥ t} r[u]   (causal)   or   Σ_u r[u]   (whole-sequence mean)
// with r from pass 1. Each invocation also looks one step past its chunk for dy[t+1]'s share.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl and chunks.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> dy: array<V>; // [B, T, D]
@group(0) @binding(2) var<storage, read> sums: array<V>; // [B, numChunks, D], saved by the forward
@group(0) @binding(3) var<storage, read> blockSums: array<V>; // [B, numBlocks, D]
@group(0) @binding(4) var<storage, read> rsums: array<V>; // [B, numChunks, D]
@group(0) @binding(5) var<storage, read> rBlockSums: array<V>; // [B, numBlocks, D]
@group(0) @binding(6) var<storage, read_write> dx: array<V>; // [B, T, D]
@group(0) @binding(7) var<uniform> params: Params;

// Σ r over the chunks after chunk k (causal), or over all of them: the chunks after k in its
// block, then the later blocks.
fn laterGradient(c: Cell, k: u32) -> V {
  var s = V(0.0);
  if (!CAUSAL) {
    for (var j = 0u; j < params.numBlocks; j++) { s += rBlockSums[blockAt(c, j)]; }
    return s;
  }
  let blk = k / params.block;
  let blockEnd = min((blk + 1u) * params.block, params.numChunks);
  for (var j = k + 1u; j < blockEnd; j++) { s += rsums[chunkAt(c, j)]; }
  for (var j = blk + 1u; j < params.numBlocks; j++) { s += rBlockSums[blockAt(c, j)]; }
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = cellOf(i);
  var offset = contextOffset(c, c.k);
  let later = laterGradient(c, c.k);
  // this chunk's share of r at or after t
  var within = select(V(0.0), rsums[chunkAt(c, c.k)], CAUSAL);

  var j = at(c, c.t0);
  var xt = x[j];
  var run = xt;
  var w = combineWeights(xt, x[select(j, j - params.width, c.t0 > 0u)], context(offset, run, c.t0));
  for (var t = c.t0; t < c.t1; t++) {
    let g = dy[j];
    var acc = w.a * g + later + within;
    if (t == 0u) { acc += w.p * g; }
    if (CAUSAL) { within -= w.c * g * contextWeight(t); }
    let next = j + params.width;
    if (t + 1u < params.seqLen) {
      let xn = x[next];
      // crossing into the next chunk: its offset, computed exactly as that chunk does
      if (CAUSAL && t + 1u == c.t1) {
        offset = contextOffset(c, c.k + 1u);
        run = xn;
      } else {
        run += xn;
      }
      let wn = combineWeights(xn, xt, context(offset, run, t + 1u));
      acc += wn.p * dy[next];
      w = wn;
      xt = xn;
    }
    dx[j] = acc;
    j = next;
  }
}
