// AverageContext, the last pass of the backward:
//   dx[t] = dy[t]·∂C_t/∂x[t] + dy[t+1]·∂C_{t+1}/∂x[t] (+ dy[0]·∂C_0/∂x[-1] at t = 0, as x[-1] := x[0])
//         + Σ_{u ≥ t} r[u]   (causal)   or   Σ_u r[u]   (whole-sequence mean)
// with the partial derivatives from the forward's picks and r's levels from pass 1 and the level
// sums, an invocation a run of RUN chunks. Each invocation also looks one step past its run for
// dy[t+1]'s share.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl, chunks.wgsl, levels.wgsl and picks.wgsl

@group(0) @binding(0) var<storage, read> dy: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> picks: array<VU>; // [B, numChunks, D], the forward's
@group(0) @binding(2) var<storage, read> levels: array<V>; // [B, rows, D], r's
@group(0) @binding(3) var<storage, read_write> dx: array<V>; // [B, T, D]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = cellOf(i);
  let last = lastChunk(c);
  let later = levelSum(c, last, true);
  // the run's share of r at or after t: its chunks' sums, the first level's entries
  var within = V(0.0);
  if (CAUSAL) {
    for (var r = 0u; r < RUN; r++) {
      within += select(V(0.0), levels[levelAt(c, min(c.k + r, last))], c.k + r <= last);
    }
  }
  var g = dy[at(c, c.t0)];
  let lastNext = min(c.t1, params.seqLen - 1u);
  for (var r = 0u; r < RUN; r++) {
    let first = c.t0 + r * CHUNK;
    if (first < c.t1) {
      let packed = picksOf(c, c.k + r);
      // the next chunk's picks: its first pick takes a share of dy through x[t] at this chunk's last step
      let nextPacked = picksOf(c, c.k + r + 1u);
      // unconditional loads of step t + 1, clamped to the cell and one step past it, as in the forward
      for (var u = 0u; u < CHUNK; u++) {
        let t = min(first + u, c.t1 - 1u);
        let gn = dy[at(c, min(t + 1u, lastNext))];
        if (first + u < c.t1) {
          let w = weightsOf(pickAt(packed, u));
          var acc = w.a * g + later + within;
          if (t == 0u) { acc += w.p * g; }
          if (CAUSAL) { within -= w.c * g * contextWeight(t); }
          if (t + 1u < params.seqLen) {
            let wn = weightsOf(select(pickAt(nextPacked, 0u), pickAt(packed, u + 1u), u + 1u < CHUNK));
            acc += wn.p * gn;
          }
          dx[at(c, t)] = acc;
          g = gn;
        }
      }
    }
  }
}
