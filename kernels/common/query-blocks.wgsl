// Shared by the passes by blocks of scores whose rows are queries (common/attention-forward-
// blocks.wgsl, attention-backward-dq-blocks.wgsl): scale·q of the workgroup's query tile staged
// (common/score-blocks.wgsl's rowTile), the rows' visible keys, and a key tile's steps. The pass
// gives them: `weighKeys(t, i, j0, n)`, the tile's scores and each row's work on them (invocation
// i's own row), and `quadStep(m, u, n)`, a quarter of the channels of query quad m's rows. Expects
// `q`, common/score-blocks.wgsl, common/kv-tile.wgsl (queryBase), common/key-quads.wgsl and a
// layout.

// each row's visible keys of the tile (bit r: key j0 + r), for the last step
var<workgroup> rowSeen: array<u32, BR>;

// Stages scale·q of the tile's rows, NT lanes at a time (each a channel group of a quad of rows).
fn loadQueries(t: QueryTile) {
  for (var e = lid; e < BR4 * KV; e += NT) {
    let m = e / KV;
    let c = e % KV;
    var rows: array<vec4<f32>, 4>;
    for (var u = 0u; u < 4u; u++) {
      let i = t.rows.x + 4u * m + u;
      if (i < t.rows.y) { rows[u] = q[queryBase(t, i) + c] * params.scale; }
    }
    stageRows(&rowTile, m, c, rows);
  }
}

// The start of a pass by blocks: invocation `index` of workgroup wid, its query tile, with scale·q
// staged.
fn startBlocks(wid: vec3u, index: u32) -> QueryTile {
  lid = index;
  let t = queryTile(wid);
  loadQueries(t);
  return t;
}

// The keys j0 … j0 + n − 1 that query row i of tile t sees (none past the tile's rows), as bits.
fn tileSeen(t: QueryTile, i: u32, j0: u32, n: u32) -> u32 {
  if (i < t.rows.y) { return keysSeen(t.b, i, j0, n); }
  return 0u;
}

// The steps over one tile of keys, from uniform control flow (common/kv-tile.wgsl's sweep).
fn visitTile(t: QueryTile, i: u32, j0: u32, n: u32) {
  weighKeys(t, i, j0, n);
  workgroupBarrier();
  let at = blockAt(lid);
  quadStep(at.x, at.y, n);
}
