// AverageContext, pass 1 of the backward: level 1 of the gradient's levels, the sum over chunk k
// of r[t] = dy[t]·∂C/∂c[t]·∂c[t]/∂x, the gradient that reaches x through the context vectors,
// and with params.pair level 2 (pairs.wgsl). The level-sums kernel builds any levels above.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl, chunks.wgsl, pairs.wgsl and picks.wgsl

@group(0) @binding(0) var<storage, read> dy: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> picks: array<VU>; // [B, numChunks, D], the forward's
@group(0) @binding(2) var<storage, read_write> levels: array<V>; // [B, rows, D]
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = groupOf(wid, nwg);
  if (g >= params.total) { return; }
  let numChunks = chunksOf(params.seqLen);
  let slot = slotOf(g, lid, numChunks);
  var r = V(0.0);
  if (slot.valid) {
    let t0 = slot.m * CHUNK;
    let c = Cell(slot.b, slot.m, slot.d, t0, min(t0 + CHUNK, params.seqLen));
    let packed = picksOf(c, c.k);
    // unconditional loads, clamped to the chunk, as in the forward
    for (var u = 0u; u < CHUNK; u++) {
      let t = min(c.t0 + u, c.t1 - 1u);
      let gt = dy[at(c, t)];
      if (c.t0 + u < c.t1) { r += weightsOf(pickAt(packed, u)).c * gt * contextWeight(t); }
    }
  }
  storePair(slot, r, lid);
}
