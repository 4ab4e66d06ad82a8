// The values of common/key-quads.wgsl's tile by rows, as the passes by rows read them (and the
// forward by blocks, and dQ by blocks where it forms dP by rows). Expects common/attention.wgsl and
// the host's `const KV, BC`.

var<workgroup> vTile: array<array<V, KV>, BC>; // [r][c]: channel group c of value r (two indices: see QuadTile)

fn tileValue(r: u32, c: u32) -> V {
  return vTile[r][c];
}

// Channel group c of the four values of quad r4.
fn storeValues(r4: u32, c: u32, vq: array<V, 4>) {
  for (var u = 0u; u < 4u; u++) { vTile[4u * r4 + u][c] = vq[u]; }
}
