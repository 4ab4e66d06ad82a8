// The values of common/key-quads.wgsl's tile by quads, as the keys, for dQ by blocks where it forms
// dP = dO·v by blocks as it forms the scores (common/dq-dp-blocks.wgsl). Expects
// common/attention.wgsl, common/lanes-4.wgsl and the host's `const KV, BC4`.

// vQuads[c][l][r4]: lane l of channel group c of the four values of quad r4
var<workgroup> vQuads: QuadTile;

// Channel group c of the four values of quad r4, transposed (V is a vec4 here).
fn storeValues(r4: u32, c: u32, vq: array<V, 4>) {
  storeQuad(&vQuads, r4, c, vq);
}
