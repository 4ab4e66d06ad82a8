// Shared by the tiled forward and dQ (common/attention-forward.wgsl, attention-backward-dq.wgsl):
// the key and value tiles of common/kv-tile.wgsl's sweep in workgroup memory, keys by quads. A
// quad is keys 4·r4 … 4·r4 + 3 of the tile; its keys are stored transposed, one vec4 per channel,
// so that a row forms the scores of a quad as one vec4 (tileScores), with no sum across a
// vector's lanes per key. Values stay by rows. Expects `k` and `v` bindings, common/attention.wgsl,
// common/row-registers.wgsl, the row hooks' `channel` and `rowScores`, and the host's
// `const KV, KL, BC, BC4, NT, RQ` (BC = 4·BC4).

// kQuads[x·BC4 + r4]: channel x of the four keys of quad r4
var<workgroup> kQuads: QuadTile;
var<workgroup> vTile: array<V, BC * KV>;

fn tileValue(r: u32, c: u32) -> V {
  return vTile[r * KV + c];
}

// The scores (scale·q)·k of quad r4's keys for each of the invocation's rows (common/attend-tile.wgsl;
// a key past the tile's n keys is a zero key: its score is 0), which share each channel of the quad
// read here. Each is summed in the order of a lanesSum dot product (per lane of V over the channel
// groups, then across the lanes), the order in which the backward recomputes it: its weight then
// matches the forward's statistic. The lanes are spelled out, as the rows are: SwiftShader makes a
// vector indexed at run time slow. Where four lanes share a row, each sums its channel groups so
// and rowScores adds the four parts (common/row-quarters.wgsl).
fn tileScores(r4: u32, n: u32) -> array<vec4<f32>, RQ> {
  var sx$ = vec4<f32>(0.0);
  var sy$ = vec4<f32>(0.0);
  var sz$ = vec4<f32>(0.0);
  var sw$ = vec4<f32>(0.0);
  for (var x = 0u; x < KL; x++) {
    let at = channel(x) * V_LANES * BC4 + r4;
    let k0 = kQuads[at];
    let q$ = lanes4(qi$[x]);
    sx$ += q$.x * k0;
    if (V_LANES == 4u) {
      let k1 = kQuads[at + BC4];
      let k2 = kQuads[at + 2u * BC4];
      let k3 = kQuads[at + 3u * BC4];
      sy$ += q$.y * k1;
      sz$ += q$.z * k2;
      sw$ += q$.w * k3;
    }
  }
  var s: array<vec4<f32>, RQ>;
  s[$] = rowScores(sx$ + sy$ + sz$ + sw$);
  return s;
}

// Loads keys j0..j0+BC−1 of kv head hk (zeros past Tk) into the tiles, NT lanes at a time: each
// takes channel group c of a quad's four keys and writes it transposed.
fn loadTile(b: u32, hk: u32, j0: u32, lid: u32) {
  for (var e = lid; e < BC4 * KV; e += NT) {
    let r4 = e / KV;
    let c = e % KV;
    var kq: array<vec4<f32>, 4>;
    for (var u = 0u; u < 4u; u++) {
      let r = 4u * r4 + u;
      var vv = V(0.0);
      if (j0 + r < params.Tk) {
        let src = ((b * params.Tk + j0 + r) * params.Hkv + hk) * KV + c;
        kq[u] = lanes4(k[src]);
        vv = v[src];
      }
      vTile[r * KV + c] = vv;
    }
    storeQuad(&kQuads, r4, c, kq);
  }
}
