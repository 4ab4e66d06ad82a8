// Shared by the attention kernels that own a query row (the forward, dQ): where the row lies,
// its scaled query, and the cooperative load of a key/value tile into workgroup memory. Expects
// `q`, `k` and `v` bindings, a layout's `loadLayout` and `tileRows`, and the host's
// `const KV, BC`.

// The tile of query rows of one workgroup: batch row b, head h (reading kv head hk), and its
// rows [first, end). The same for every invocation (no lane index in it), so that the loops
// bounded by it keep their barriers in uniform control flow.
struct QueryTile {
  b: u32,
  h: u32,
  hk: u32,
  rows: vec2u,
}

// The query tile of workgroup wid (tile, head, batch row); loads the layout.
fn queryTile(wid: vec3u) -> QueryTile {
  loadLayout();
  return QueryTile(wid.z, wid.y, kvHead(wid.y), tileRows(wid.x, params.Tq));
}

// Where the vectors of query i of tile t start in q, o and dO; a lane past the tile's end
// reads the last row, so that every load stays in bounds.
fn queryBase(t: QueryTile, i: u32) -> u32 {
  return ((t.b * params.Tq + min(i, t.rows.y - 1u)) * params.H + t.h) * KV;
}

// scale·q of the row at `base`, as every score is formed: (scale·q)·k
fn scaledQuery(base: u32) -> array<V, KV> {
  var qi: array<V, KV>;
  for (var c = 0u; c < KV; c++) { qi[c] = q[base + c] * params.scale; }
  return qi;
}

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
