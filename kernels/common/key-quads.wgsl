// Shared by the tiled forwards and dQ (common/attention-forward.wgsl, attention-forward-blocks.wgsl,
// attention-backward-dq.wgsl, attention-backward-dq-blocks.wgsl): the key and value tiles of
// common/kv-tile.wgsl's sweep in workgroup memory, keys by quads. A quad is keys 4·r4 … 4·r4 + 3 of
// the tile; its keys are stored transposed, one vec4 per channel, so that a row forms the scores of
// a quad as one vec4 (common/quad-scores.wgsl), with no sum across a vector's lanes per key. The
// values go where the pass keeps them (`storeValues`: common/value-rows.wgsl or value-quads.wgsl).
// Expects `k` and `v` bindings, common/attention.wgsl, common/float-bits.wgsl and the host's
// `const KV, BC, BC4, NT` (BC = 4·BC4).

// kQuads[c][l][r4]: lane l of channel group c of the four keys of quad r4
var<workgroup> kQuads: QuadTile;

// Bit r: the value of key r of a tile has a non-finite entry (tileBadValues; a non-finite key
// shows in its scores: the row hooks' weighTile). Two, taken by turns: the loads of a tile mark
// theirs while the other, which the previous tile's readers have done with, is cleared for the
// next; workgroup memory starts as zeros.
var<workgroup> badValues: array<atomic<u32>, 2>;
var<private> tilesLoaded: u32; // the same count in every invocation: each loads every tile

// Loads keys j0..j0+BC−1 of kv head hk (zeros past Tk) into the tiles, NT lanes at a time: each
// takes channel group c of a quad's four keys and values, the keys written transposed.
fn loadTile(b: u32, hk: u32, j0: u32, lid: u32) {
  tilesLoaded++;
  let marks = tilesLoaded & 1u;
  if (lid == 0u) { atomicStore(&badValues[marks ^ 1u], 0u); }
  var bad = 0u;
  for (var e = lid; e < BC4 * KV; e += NT) {
    let r4 = e / KV;
    let c = e % KV;
    var kq: array<vec4<f32>, 4>;
    var vq: array<V, 4>;
    for (var u = 0u; u < 4u; u++) {
      let r = 4u * r4 + u;
      if (j0 + r < params.Tk) {
        let src = ((b * params.Tk + j0 + r) * params.Hkv + hk) * KV + c;
        kq[u] = lanes4(k[src]);
        vq[u] = v[src];
        bad |= select(0u, 1u << r, !allFinite(exponents4(lanes4(vq[u]))));
      }
    }
    storeQuad(&kQuads, r4, c, kq);
    storeValues(r4, c, vq);
  }
  if (bad != 0u) { atomicOr(&badValues[marks], bad); }
}

// The keys of the tile last loaded whose value has a non-finite entry, by bits: read after the
// barrier that follows the load.
fn tileBadValues() -> u32 {
  return atomicLoad(&badValues[tilesLoaded & 1u]);
}
