// AverageContext backward for a CPU adapter: one invocation per (b, channel or group of four)
// walks all T steps from the last, so that the sum of r[u] = dy[u]·∂C/∂c[u]·∂c[u]/∂x over
// u ≥ t grows as it goes and dy and the picks are read once (the whole-sequence context reads
// them once more, for r's total, first):
//   dx[t] = dy[t]·∂C_t/∂x[t] + dy[t+1]·∂C_{t+1}/∂x[t] (+ dy[0]·∂C_0/∂x[-1] at t = 0)
//         + Σ_{u ≥ t} r[u]   (causal)   or   Σ_u r[u]   (whole-sequence mean)
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl, chunks.wgsl and picks.wgsl

@group(0) @binding(0) var<storage, read> dy: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> picks: array<VU>; // [B, numChunks, D], the forward's
@group(0) @binding(2) var<storage, read_write> dx: array<V>; // [B, T, D]
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = columnOf(i);
  let numChunks = chunksOf(c.t1);
  // Σ r[u] over u ≥ t (causal, added to as t falls), or over all u
  var later = V(0.0);
  if (!CAUSAL) {
    for (var k = 0u; k < numChunks; k++) {
      let packed = picksOf(c, k);
      for (var t = k * CHUNK; t < min(k * CHUNK + CHUNK, c.t1); t++) {
        later += weightsOf(pickAt(packed, t - k * CHUNK)).c * dy[at(c, t)] * contextWeight(t);
      }
    }
  }
  // dy[t+1]·∂C_{t+1}/∂x[t]: step t + 1's share as the predecessor, carried down to step t
  var fromNext = V(0.0);
  for (var k = numChunks; k > 0u; k--) {
    let t0 = (k - 1u) * CHUNK;
    let packed = picksOf(c, k - 1u);
    for (var t = min(t0 + CHUNK, c.t1); t > t0; t--) {
      let s = t - 1u;
      let g = dy[at(c, s)];
      let w = weightsOf(pickAt(packed, s - t0));
      if (CAUSAL) { later += w.c * g * contextWeight(s); }
      var acc = w.a * g + fromNext + later;
      if (s == 0u) { acc += w.p * g; }
      dx[at(c, s)] = acc;
      fromNext = w.p * g;
    }
  }
}
