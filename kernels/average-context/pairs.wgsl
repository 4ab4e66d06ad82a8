// Shared by the AverageContext kernels that write a levels scan's chunk sums: a workgroup writes
// CHUNK consecutive entries of a level for LANES channel groups, one invocation each, and then
// (params.pair) their sum, one entry of the level above, after a single barrier. Two levels a
// dispatch halve the dispatches, each of which costs a GPU a few µs whatever its size.
// needs common/grid.wgsl, common/lanes-*.wgsl and chunks.wgsl; binds `levels` read_write.

override LANES: u32 = WG / CHUNK;

var<workgroup> partial: array<V, WG>;

struct Slot {
  b: u32,
  m: u32, // entry of the level written
  d: u32, // channel, or group of four
  m2: u32, // entry of the level above
  lane: u32,
  valid: bool, // m and d exist
}

// The flat index of this workgroup; those at or past params.total (grid1d rounds up) return, all
// their invocations together, before the barrier.
fn groupOf(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.y * nwg.x + wid.x;
}

// The entry of workgroup g's invocation lid in a level of `len` entries.
fn slotOf(g: u32, lid: u32, len: u32) -> Slot {
  let laneBlocks = (params.width + LANES - 1u) / LANES;
  let above = chunksOf(len);
  let lane = lid % LANES;
  let m2 = (g / laneBlocks) % above;
  let b = g / laneBlocks / above;
  let m = m2 * CHUNK + lid / LANES;
  let d = (g % laneBlocks) * LANES + lane;
  return Slot(b, m, d, m2, lane, m < len && d < params.width);
}

// Stores `s` as the slot's entry of the level at dstBase, and with params.pair the sum, in order,
// of the workgroup's CHUNK entries as entry m2 of the level at dst2Base.
fn storePair(slot: Slot, s: V, lid: u32) {
  let c = Cell(slot.b, 0u, slot.d, 0u, 0u);
  if (slot.valid) { levels[levelAt(c, params.dstBase + slot.m)] = s; }
  if (params.pair == 0u) { return; }
  partial[lid] = select(V(0.0), s, slot.valid);
  workgroupBarrier();
  if (lid < LANES && slot.d < params.width) {
    var s2 = V(0.0);
    for (var q = 0u; q < CHUNK; q++) { s2 += partial[q * LANES + slot.lane]; }
    levels[levelAt(c, params.dst2Base + slot.m2)] = s2;
  }
}
