// Shared by dQ (common/attention-backward-dq.wgsl): the key and value tiles of
// common/kv-tile.wgsl's sweep in workgroup memory, row by row. Expects `k` and `v` bindings,
// common/attention.wgsl and the host's `const KV, BC, NT`.

var<workgroup> kTile: array<V, BC * KV>;
var<workgroup> vTile: array<V, BC * KV>;

// channel group c of key (value) r of the tile in workgroup memory
fn tileKey(r: u32, c: u32) -> V {
  return kTile[r * KV + c];
}

fn tileValue(r: u32, c: u32) -> V {
  return vTile[r * KV + c];
}

// Loads keys j0..j0+BC−1 of kv head hk (zeros past Tk) into the tiles, NT lanes at a time.
fn loadTile(b: u32, hk: u32, j0: u32, lid: u32) {
  for (var e = lid; e < BC * KV; e += NT) {
    let j = j0 + e / KV;
    var kv = V(0.0);
    var vv = V(0.0);
    if (j < params.Tk) {
      let src = ((b * params.Tk + j) * params.Hkv + hk) * KV + e % KV;
      kv = k[src];
      vv = v[src];
    }
    kTile[e] = kv;
    vTile[e] = vv;
  }
}
