// Shared by the attention backward's dK/dV passes (common/attention-backward-dkv.wgsl, by rows,
// and common/attention-backward-dkv-blocks.wgsl, by blocks of scores): their output and params
// bindings, the sweep over the query tiles a key tile may meet, and a quad of queries' weights and
// dS. Expects common/backward-bindings.wgsl, common/query-tile.wgsl, a layout (its tiles and runs
// here are the transposed plan's), the mixer's `rowFactor` and `pairGrads`, common/dropout.wgsl,
// the pass's `visitQueries` and the host's `const KV, BC, BC4, NT`.

// [B, Tk, Hkv, K] each; of a split launch (tilePart: chunks of the queries), each chunk's part,
// [B, Tk, Hkv, splits, K], which a later launch sums (common/sum-parts.wgsl)
@group(0) @binding(6) var<storage, read_write> dk: array<V>;
@group(0) @binding(7) var<storage, read_write> dv: array<V>;
@group(0) @binding(8) var<uniform> params: Params;

var<workgroup> factorTile: array<vec4<f32>, BC4>; // rowFactor of each query's statistic, by quads
var<workgroup> deltaTile: array<vec4<f32>, BC4>; // each query's rowsum(dO∘o), by quads
var<workgroup> liveTile: array<u32, BC4>; // bit u of entry e4: query 4·e4 + u's output gradient is nonzero

// The tile of key rows of one workgroup: batch row b, kv head hk, its rows [first, end), and the
// layout's tile, chunk and queries of that chunk (tilePart). The same for every invocation, so
// that the loops bounded by it keep their barriers in uniform control flow.
struct KeyTile {
  b: u32,
  hk: u32,
  rows: vec2u,
  p: TilePart,
}

// The key tile of workgroup wid (tile and chunk, kv head, batch row); loads the layout.
fn keyTile(wid: vec3u) -> KeyTile {
  loadLayout();
  let p = tilePart(wid.x, params.Tq);
  return KeyTile(wid.z, wid.y, tileRows(p.tile, params.Tk), p);
}

// Where the vectors of key row j of kv head hk start in k, v, dk and dv (unsplit).
fn keyBase(b: u32, hk: u32, j: u32) -> u32 {
  return ((b * params.Tk + j) * params.Hkv + hk) * KV;
}

// Streams through workgroup memory, for every query head that reads kv head t.hk, each query tile
// that the keys of tile t (lane lid) may meet: the layout's runs narrowed by queryRange and
// queryRangeIn, then to the chunk; tiles whose segment ids cannot meet the keys' are skipped
// whole. Each tile (its q and dO, and each query's factor and delta) goes through the pass's
// visitQueries(b, h, i0, n) for queries i0 … i0 + n − 1 of head h. Call it from uniform control
// flow.
fn sweepQueries(t: KeyTile, lid: u32) {
  let kSeg = keySegments(t.b, t.rows.x, t.rows.y - t.rows.x, lid);
  let seen = queryRangeIn(t.b, queryRange(t.b, t.rows.x, t.rows.y), kSeg);
  let queries = vec2u(max(seen.x, t.p.others.x), min(seen.y, t.p.others.y));
  let runs = tileRuns(t.p.tile);
  let group = params.H / params.Hkv;
  for (var g = 0u; g < group; g++) {
    let h = t.hk * group + g;
    for (var r = runs.x; r < runs.y; r++) {
      let run = tileRun(r, params.Tq);
      let end = min(run.y, queries.y);
      for (var i0 = max(run.x, queries.x); i0 < end; i0 += BC) {
        let n = min(BC, end - i0);
        if (!segmentsMeet(kSeg, querySegments(t.b, i0, n, lid))) { continue; }
        workgroupBarrier();
        loadQueryTile(t.b, h, i0, end, lid);
        for (var e4 = lid; e4 < BC4; e4 += NT) {
          let row = (t.b * params.H + h) * params.Tq;
          let i = i0 + 4u * e4;
          let s0 = stats[row + min(i, end - 1u)];
          let s1 = stats[row + min(i + 1u, end - 1u)];
          let s2 = stats[row + min(i + 2u, end - 1u)];
          let s3 = stats[row + min(i + 3u, end - 1u)];
          factorTile[e4] = vec4<f32>(rowFactor(s0.x), rowFactor(s1.x), rowFactor(s2.x), rowFactor(s3.x));
          deltaTile[e4] = vec4<f32>(s0.y, s1.y, s2.y, s3.y);
          liveTile[e4] = liveQueries(t.b, h, i, end);
        }
        workgroupBarrier();
        visitQueries(t.b, h, i0, n);
      }
    }
  }
}

// Bit u set where query i + u of head h (before `end`) has a nonzero output gradient. A query
// whose output gradient is 0 adds nothing to a key's gradients, and leaving it out keeps 0·NaN,
// from a non-finite input it sees, out of them. Read once a tile from dO, which the tile's load
// has just brought into the GPU's caches, where each key row would test every channel.
fn liveQueries(b: u32, h: u32, i: u32, end: u32) -> u32 {
  var bits = 0u;
  for (var u = 0u; u < 4u; u++) {
    if (i + u < end) {
      let base = ((b * params.Tq + i + u) * params.H + h) * KV;
      var nonzero = false;
      for (var c = 0u; c < KV; c++) { nonzero = nonzero | any(dO[base + c] != V(0.0)); }
      bits |= select(0u, 1u << u, nonzero);
    }
  }
  return bits;
}

// The weights times their dropout multipliers (first) and the dS (second) of quad e4 of the tile
// (rows i … i + 3 of head h) and a key j, from the scores s and dp = dO·v; 0 for a query outside
// `take` (which the key does not see, or whose output gradient is 0).
fn quadWeights(take: vec4<bool>, s: vec4<f32>, dp: vec4<f32>, b: u32, h: u32, i: u32, j: u32, e4: u32) -> array<vec4<f32>, 2> {
  // dropout: dP and the weight v is mixed with both carry the pair's multiplier
  let keep = vec4<f32>(dropKeep(b, h, i, j), dropKeep(b, h, i + 1u, j), dropKeep(b, h, i + 2u, j), dropKeep(b, h, i + 3u, j));
  let f = factorTile[e4];
  let d = deltaTile[e4];
  let dpk = dp * keep;
  let w0 = pairGrads(s.x, dpk.x, f.x, d.x);
  let w1 = pairGrads(s.y, dpk.y, f.y, d.y);
  let w2 = pairGrads(s.z, dpk.z, f.z, d.z);
  let w3 = pairGrads(s.w, dpk.w, f.w, d.w);
  let z = vec4<f32>(0.0);
  return array<vec4<f32>, 2>(select(z, vec4<f32>(w0.x, w1.x, w2.x, w3.x) * keep, take),
                             select(z, vec4<f32>(w0.y, w1.y, w2.y, w3.y), take));
}
