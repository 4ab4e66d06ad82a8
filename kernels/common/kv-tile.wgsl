// Shared by the tiled attention passes over a tile of query rows (the forwards, dQ): where a row
// lies, and the sweep that streams the key and value tiles its workgroup's queries may see
// through workgroup memory. Expects `q`, `k`, `v` and `vis` bindings, common/visibility.wgsl,
// the tile store (common/key-quads.wgsl: loadTile), a layout's
// `loadLayout`, `tileRows`, `tileRuns` and `tileRun`, the pass's `visitTile`, and the host's
// `const KV, BC`.

// The tile of query rows of one workgroup: batch row b, head h (reading kv head hk), its rows
// [first, end), the layout's tile number and, of a split launch, its chunk `part` and the keys
// [first, end) of that chunk (tilePart). The same for every invocation (no lane index in it), so
// that the loops bounded by it keep their barriers in uniform control flow.
struct QueryTile {
  b: u32,
  h: u32,
  hk: u32,
  rows: vec2u,
  tile: u32,
  part: u32,
  keys: vec2u,
}

// The query tile of workgroup wid (tile and chunk, head, batch row); loads the layout.
fn queryTile(wid: vec3u) -> QueryTile {
  loadLayout();
  let p = tilePart(wid.x, params.Tk);
  return QueryTile(wid.z, wid.y, kvHead(wid.y), tileRows(p.tile, params.Tq), p.tile, p.part, p.others);
}

// Where the vectors of query i of tile t start in q, o and dO; a row past the tile's end
// reads the last row, so that every load stays in bounds.
fn queryBase(t: QueryTile, i: u32) -> u32 {
  return ((t.b * params.Tq + min(i, t.rows.y - 1u)) * params.H + t.h) * KV;
}

// Streams through the tile store every key tile of its chunk that the queries of tile t (lane
// lid) may see: the layout's runs narrowed to keyRange, then to the keys whose segments may meet
// the queries' (keyRangeIn), then to the chunk; tiles whose segment ids cannot meet the queries'
// are skipped whole. The invocation's rows, from i, take each tile, keys j0..j0+n−1, through the
// pass's visitTile(t, i, j0, n) when `take`. Call it from uniform control flow.
fn sweepKeys(t: QueryTile, lid: u32, i: u32, take: bool) {
  let qSeg = querySegments(t.b, t.rows.x, t.rows.y - t.rows.x, lid);
  let seen = keyRangeIn(t.b, keyRange(t.b, t.rows.x, t.rows.y), qSeg);
  let keys = vec2u(max(seen.x, t.keys.x), min(seen.y, t.keys.y));
  let runs = tileRuns(t.tile);
  for (var r = runs.x; r < runs.y; r++) {
    let run = tileRun(r, params.Tk);
    let end = min(run.y, keys.y);
    for (var j0 = max(run.x, keys.x); j0 < end; j0 += BC) {
      let n = min(BC, end - j0);
      if (!segmentsMeet(qSeg, keySegments(t.b, j0, n, lid))) { continue; }
      workgroupBarrier(); // the previous tile has been consumed
      loadTile(t.b, t.hk, j0, lid);
      workgroupBarrier();
      if (take) { visitTile(t, i, j0, n); }
    }
  }
}
