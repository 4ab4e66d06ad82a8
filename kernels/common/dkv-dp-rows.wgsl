// dK/dV by blocks (common/attention-backward-dkv-blocks.wgsl) with dp = v_j·dO_i formed by key
// rows: only the keys are staged (the workgroup memory of adapters that grant 32 KB at K = 64), and
// invocation j, after the tile's blocks of scores, takes its own key row, its value read from
// memory where used and the output gradients by quads: a float of workgroup memory for each
// multiply-add, a vec4 of the cache for each 16.

var<private> ds: array<vec4<f32>, BC4>; // the key row's dS, by query quads

fn stageOwn() {
  loadRows(&rowTile, false);
}

// The scores, then key row j (the invocation's) weighs the tile's queries i0 … i0 + n − 1 of head h.
fn weighQueries(b: u32, h: u32, i0: u32, n: u32) {
  blockScores(&qQuads);
  workgroupBarrier();
  let j = tile.rows.x + lid;
  let base = keyBase(b, tile.hk, min(j, tile.rows.y - 1u));
  var seen = 0u;
  if (j < tile.rows.y) { seen = queriesSeen(b, j, i0, n); }
  var taken = 0u;
  for (var e4 = 0u; e4 < (n + 3u) / 4u; e4++) {
    var px = vec4<f32>(0.0);
    var py = vec4<f32>(0.0);
    var pz = vec4<f32>(0.0);
    var pw = vec4<f32>(0.0);
    for (var x = 0u; x < KV; x++) {
      let dc = quadChannels(&dOQuads, e4, x);
      let vj = lanes4(v[base + x]);
      px += vj.x * dc[0];
      py += vj.y * dc[1];
      pz += vj.z * dc[2];
      pw += vj.w * dc[3];
    }
    // the queries whose output gradient is 0 stay out (liveQueries)
    let take = quadSeen(seen, e4) & quadSeen(liveTile[e4], 0u);
    let g = quadWeights(take, sRead(lid, e4), px + py + pz + pw, b, h, i0 + 4u * e4, j, e4);
    sWrite(lid, e4, g[0]);
    ds[e4] = g[1];
    let bits = select(vec4<u32>(0u), vec4<u32>(1u, 2u, 4u, 8u), take);
    taken |= (bits.x | bits.y | bits.z | bits.w) << (4u * e4);
  }
  keySeenBits[lid] = taken;
}

// The key row's dS in place of its weights.
fn writeDs(n: u32) {
  for (var e4 = 0u; e4 < (n + 3u) / 4u; e4++) { sWrite(lid, e4, ds[e4]); }
}
