// Shared by the tiled attention passes that own a query row (the forward, dQ): where the row
// lies, and the sweep that streams the key and value tiles its workgroup's queries may see
// through workgroup memory. Expects `q`, `k`, `v` and `vis` bindings, common/visibility.wgsl,
// common/row-registers.wgsl, the tile store (common/key-quads.wgsl: loadTile), a layout's
// `loadLayout`, `tileRows`, `tileRuns` and `tileRun`, the pass's `visitTile`, and the host's
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

// Where the vectors of query i of tile t start in q, o and dO; a row past the tile's end
// reads the last row, so that every load stays in bounds.
fn queryBase(t: QueryTile, i: u32) -> u32 {
  return ((t.b * params.Tq + min(i, t.rows.y - 1u)) * params.H + t.h) * KV;
}

// Streams through the tile store every key tile that the queries of tile t (workgroup wx,
// lane lid) may see: the layout's runs narrowed to keyRange, then to the keys whose segments
// may meet the queries' (keyRangeIn); tiles whose segment ids cannot meet the queries' are
// skipped whole. The invocation's rows, from i, take each tile, keys j0..j0+n−1, through the
// pass's visitTile(t, i, j0, n) when `take`. Call it from uniform control flow.
fn sweepKeys(t: QueryTile, wx: u32, lid: u32, i: u32, take: bool) {
  let qSeg = querySegments(t.b, t.rows.x, t.rows.y - t.rows.x, lid);
  let keys = keyRangeIn(t.b, keyRange(t.b, t.rows.x, t.rows.y), qSeg);
  let runs = tileRuns(wx);
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
