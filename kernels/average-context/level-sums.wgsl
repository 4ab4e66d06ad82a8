// AverageContext, levels of the scan's chunk sums: entry m of the level written is the sum, in
// order, of entries mCHUNK … mCHUNK + CHUNK − 1 of the level read, which is x itself for level 1
// (FROM_X) or the level below in `levels`; with params.pair the level above it too (pairs.wgsl).
// The backward builds the upper levels of its gradient's sums with it.
// needs common/grid.wgsl, common/lanes-*.wgsl, chunks.wgsl and pairs.wgsl

override FROM_X: bool = true;

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read_write> levels: array<V>; // [B, rows, D]
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = groupOf(wid, nwg);
  if (g >= params.total) { return; }
  let slot = slotOf(g, lid, chunksOf(params.srcLen));
  var s = V(0.0);
  if (slot.valid) {
    let c = Cell(slot.b, slot.m, slot.d, 0u, 0u);
    let first = slot.m * CHUNK;
    let last = min(first + CHUNK, params.srcLen) - 1u;
    // unconditional loads (clamped to the entry's span) in a constant trip count: a GPU issues
    // them all before the first add needs one
    for (var j = 0u; j < CHUNK; j++) {
      let row = min(first + j, last);
      var v: V;
      if (FROM_X) {
        v = x[(c.b * params.seqLen + row) * params.width + c.d];
      } else {
        v = levels[levelAt(c, params.srcBase + row)];
      }
      s += select(V(0.0), v, first + j <= last);
    }
  }
  storePair(slot, s, lid);
}
