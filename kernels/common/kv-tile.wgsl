// Shared by the tiled attention kernels: the cooperative load of a key/value tile into
// workgroup memory. Expects `k` and `v` bindings and the host's `const KV, BC`.

// Loads keys j0..j0+BC−1 of kv head hk (zeros past Tk) into the tiles, `threads` at a time.
fn loadTile(kt: ptr<workgroup, array<V, BC * KV>>, vt: ptr<workgroup, array<V, BC * KV>>,
            b: u32, hk: u32, j0: u32, lid: u32, threads: u32) {
  for (var e = lid; e < BC * KV; e += threads) {
    let j = j0 + e / KV;
    var kv = V(0.0);
    var vv = V(0.0);
    if (j < params.Tk) {
      let src = ((b * params.Tk + j) * params.Hkv + hk) * KV + e % KV;
      kv = k[src];
      vv = v[src];
    }
    (*kt)[e] = kv;
    (*vt)[e] = vv;
  }
}
