// Shared by the tiled forward (common/attention-forward.wgsl): the key and value tiles of
// common/kv-tile.wgsl's sweep in workgroup memory, keys by quads. A quad is keys 4·r4 … 4·r4 + 3
// of the tile; its keys are stored transposed, one vec4 per channel, so that a row forms the
// scores of a quad as one vec4 (tileScoresPair, for common/attend-tile-pair.wgsl), with no sum
// across a vector's lanes per key. Values stay by rows. Expects `k` and `v` bindings,
// common/attention.wgsl, common/row-registers.wgsl, common/attend-tile-pair.wgsl's `qi1` and the
// host's `const KV, BC, BC4, NT` (BC = 4·BC4).

// kQuads[x·BC4 + r4]: channel x of the four keys of quad r4
var<workgroup> kQuads: array<vec4<f32>, KV * V_LANES * BC4>;
var<workgroup> vTile: array<V, BC * KV>;

fn tileValue(r: u32, c: u32) -> V {
  return vTile[r * KV + c];
}

// The scores (scale·q)·k of quad r4's keys for the invocation's two rows (qi and qi1), which
// share each channel of the quad read here. Each is summed in the order of a lanesSum dot product
// (per lane of V over the channel groups, then across the lanes), the order in which the backward
// recomputes it: its weight then matches the forward's statistic. The lanes and the two rows are
// spelled out: SwiftShader makes a vector or an array indexed at run time slow.
fn tileScoresPair(r4: u32) -> array<vec4<f32>, 2> {
  var d0 = vec4<f32>(0.0);
  var d1 = vec4<f32>(0.0);
  var d2 = vec4<f32>(0.0);
  var d3 = vec4<f32>(0.0);
  var e0 = vec4<f32>(0.0);
  var e1 = vec4<f32>(0.0);
  var e2 = vec4<f32>(0.0);
  var e3 = vec4<f32>(0.0);
  for (var c = 0u; c < KV; c++) {
    let qa = lanes4(qi[c]);
    let qb = lanes4(qi1[c]);
    let at = c * V_LANES * BC4 + r4;
    let k0 = kQuads[at];
    d0 += qa.x * k0;
    e0 += qb.x * k0;
    if (V_LANES == 4u) {
      let k1 = kQuads[at + BC4];
      let k2 = kQuads[at + 2u * BC4];
      let k3 = kQuads[at + 3u * BC4];
      d1 += qa.y * k1;
      d2 += qa.z * k2;
      d3 += qa.w * k3;
      e1 += qb.y * k1;
      e2 += qb.z * k2;
      e3 += qb.w * k3;
    }
  }
  return array<vec4<f32>, 2>(d0 + d1 + d2 + d3, e0 + e1 + e2 + e3);
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
    let at = c * V_LANES * BC4 + r4;
    kQuads[at] = vec4<f32>(kq[0].x, kq[1].x, kq[2].x, kq[3].x);
    if (V_LANES == 4u) {
      kQuads[at + BC4] = vec4<f32>(kq[0].y, kq[1].y, kq[2].y, kq[3].y);
      kQuads[at + 2u * BC4] = vec4<f32>(kq[0].z, kq[1].z, kq[2].z, kq[3].z);
      kQuads[at + 3u * BC4] = vec4<f32>(kq[0].w, kq[1].w, kq[2].w, kq[3].w);
    }
  }
}
