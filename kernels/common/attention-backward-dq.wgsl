// Attention backward skeleton, dQ (FlashAttention-2's), shared by FlashStyleTiledAttention,
// ExpressiveAttention and BlockSparse: per query row, recompute the scores s = scale·q·kᵀ over
// the same key tiles as the forward and, from the forward's per-row statistic, each visible
// pair's dS (the mixer's `pairGrads`), then dq = scale·Σ_j dS_j·k_j. Same grid as the forward.
// With dropout, a weight a_ij enters o as a_ij·m_ij (m = dropKeep: 0 or 1/(1 − p)), so the loss
// sees the weight through dP_ij·m_ij, and pairGrads takes that in place of dP.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/kv-tile.wgsl,
// a layout (see common/attention-forward.wgsl), the mixer's `rowFactor` and `pairGrads`, and
// the host's `const KV, BR, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>; // [B, H, Tq]: (the forward's row statistic, rowsum(dO∘o))
@group(0) @binding(5) var<storage, read> vis: array<i32>; // the packed int inputs (a tile plan first)
@group(0) @binding(6) var<storage, read_write> dq: array<V>; // [B, Tq, H, K]
@group(0) @binding(7) var<uniform> params: Params;

var<workgroup> kTile: array<V, BC * KV>;
var<workgroup> vTile: array<V, BC * KV>;

@compute @workgroup_size(BR)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = queryTile(wid);
  let b = tile.b;
  let h = tile.h;
  let rows = tile.rows;
  let i = rows.x + lid;
  let rowOk = i < rows.y;
  let base = queryBase(tile, i);
  let rowStats = stats[(b * params.H + h) * params.Tq + min(i, rows.y - 1u)];
  let factor = rowFactor(rowStats.x);

  var qi = scaledQuery(base);
  var doi: array<V, KV>;
  var acc: array<V, KV>; // zero-initialised
  for (var c = 0u; c < KV; c++) { doi[c] = dO[base + c]; }
  // a row whose output gradient is 0 adds nothing: skipping it keeps 0·NaN, from a non-finite
  // key or value it sees, out of the other gradients
  var live = false;
  for (var c = 0u; c < KV; c++) { live = live || any(doi[c] != V(0.0)); }

  let qSeg = querySegments(b, rows.x, rows.y - rows.x, lid);
  let keys = keyRangeIn(b, keyRange(b, rows.x, rows.y), qSeg, lid);
  let runs = tileRuns(wid.x);
  for (var r = runs.x; r < runs.y; r++) {
    let run = tileRun(r, params.Tk);
    let end = min(run.y, keys.y);
    for (var j0 = max(run.x, keys.x); j0 < end; j0 += BC) {
      let n = min(BC, end - j0);
      if (!segmentsMeet(qSeg, keySegments(b, j0, n, lid))) { continue; }
      workgroupBarrier();
      loadTile(&kTile, &vTile, b, tile.hk, j0, lid, BR);
      workgroupBarrier();
      if (rowOk && live) {
        for (var e = 0u; e < n; e++) {
          // an invisible key has weight 0; testing first keeps its values, and exp of a row's
          // NEG statistic, out of the sum
          if (keySeen(b, i, j0 + e)) {
            var sd = V(0.0);
            var pd = V(0.0);
            for (var c = 0u; c < KV; c++) {
              sd += qi[c] * kTile[e * KV + c];
              pd += doi[c] * vTile[e * KV + c];
            }
            // dropout: the weight's gradient is dP times its multiplier (see pairGrads)
            let ds = pairGrads(lanesSum(sd), lanesSum(pd) * dropKeep(b, h, i, j0 + e), factor, rowStats.y).y;
            for (var c = 0u; c < KV; c++) { acc[c] += ds * kTile[e * KV + c]; }
          }
        }
      }
    }
  }
  if (rowOk) {
    for (var c = 0u; c < KV; c++) { dq[base + c] = acc[c] * params.scale; }
  }
}
