// Shared by the split-K decode's first pass (common/attention-split*.wgsl): a tile of keys read
// straight from the cache, for common/attend-tile.wgsl (tileScores, tileValue), where the tiled
// forward stages its tiles in workgroup memory. Expects `k` and `v` bindings,
// common/row-registers.wgsl, the row hooks' `channel` and `rowScores` (common/row-whole.wgsl, or
// common/row-quarters.wgsl where four lanes share each row: rowScores, rowAny),
// common/float-bits.wgsl and the host's `const KV, KL, RQ`.

// With KEY_LIST, row b's key j is not row j of its cache but the row of k and v (of all B·S)
// that `vis` lists at params.planAt + b·Tk + j (BlockSparse's decode step, whose keys are the
// layout's blocks: kernels/block-sparse/step-keys.wgsl), read there where a gather would copy them.
override KEY_LIST: bool = false;

var<private> tileAt: u32; // where key j0 of the current tile starts in k and v
var<private> listAt: u32; // with KEY_LIST, where key j0's entry sits in the list
var<private> headAt: u32; // with KEY_LIST, the kv head's channels in a row
var<private> valueExponents: vec4<u32>; // the largest exponent fields of the current tile's values read (exponents4)

// Makes key j0 of kv head hk, batch row b, the current tile's first.
fn atKey(b: u32, hk: u32, j0: u32) {
  tileAt = ((b * params.Tk + j0) * params.Hkv + hk) * KV;
  listAt = params.planAt + b * params.Tk + j0;
  headAt = hk * KV;
  valueExponents = vec4<u32>(0u);
}

// where the current tile's key r starts in k and v
fn keyAt(r: u32) -> u32 {
  if (KEY_LIST) { return u32(vis[listAt + r]) * params.Hkv * KV + headAt; }
  return tileAt + r * params.Hkv * KV;
}

// The scores (scale·q)·k of quad r4's keys for each of the invocation's rows (0 past the tile's
// n keys, which are not read): the invocation's part of each, over its channels, then the row
// hooks' rowScores (the whole, or the four quarters' parts added).
fn tileScores(r4: u32, n: u32) -> array<vec4<f32>, RQ> {
  var s: array<vec4<f32>, RQ>;
  for (var u = 0u; u < 4u; u++) {
    let r = 4u * r4 + u;
    if (r < n) {
      let at = keyAt(r);
      var d$ = V(0.0);
      for (var x = 0u; x < KL; x++) {
        let kc = k[at + channel(x)];
        d$ += qi$[x] * kc;
      }
      s[$][u] = lanesSum(d$);
    }
  }
  s[$] = rowScores(s[$]);
  return s;
}

// Value r's channel group c; notes a non-finite entry (the row reads only the values of keys it sees).
fn tileValue(r: u32, c: u32) -> V {
  let x = v[keyAt(r) + c];
  valueExponents = max(valueExponents, exponents4(lanes4(x)));
  return x;
}

// After the row has read the tile's values: every key if one of them had a non-finite entry in
// any of the row's channels (rowAny over the lanes that share it), else none. A non-finite key
// shows in its score (the row hooks' weighTile).
fn tileBadValues() -> u32 {
  return select(0u, 0xffffffffu, rowAny(vec4<bool>(!allFinite(valueExponents))).x);
}
