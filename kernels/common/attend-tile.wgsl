// Shared by the attention passes that fold tiles of keys into query rows' registers: the tiled
// forward (common/attention-forward.wgsl: several rows per invocation, keys staged in workgroup
// memory by common/key-quads.wgsl) and the split-K decode's first passes (common/split-chunk.wgsl:
// one row, keys read from the cache by common/cache-tile.wgsl). Works a quad of keys at a time
// (keys 4·r4 … 4·r4 + 3 of the tile, scores and weights as one vec4), and each key quad and value
// it reads serves all the invocation's rows. A line holding the row mark is written once per
// row (src/webgpu/copies.ts, expandCopies), so each row's registers are spelled out:
// SwiftShader makes an array indexed at run time slow. Expects common/row-registers.wgsl,
// common/dropout.wgsl, the pass's row states (row0 …), the tile store's `tileScores`, `tileValue`
// and `tileBadValues`, the layout's `keysSeen`, the row hooks' `weighTile`, `spoilRow` and
// `channel`, and the host's `const KL, BC, BC4, RQ` (BC ≤ 32: the visible keys of a tile are one
// u32 of bits).

// Folds keys j0..j0+n−1 of the tile into the invocation's rows i, i + 1, …, i + RQ − 1 of head h
// (each at most `last`: a row past the tile's end repeats the last and is never written). Each
// row's scores s = (scale·q)·k of the keys it sees become weights (weighTile, which also updates
// the row's normaliser and says how to rescale its accumulator), and each weight, times its
// dropout multiplier, meets its value. A quad that some row sees has all its scores formed, but
// a row only ever weighs a key it sees, and a value a row cannot see, which may be non-finite,
// never reaches that row. A quad no row sees (past the diagonal, outside a window) is skipped.
// A row that sees a non-finite query, key or value entry is spoilt (the row hooks' spoilRow,
// which weighTile calls on a non-finite score; the tile store's tileBadValues): it comes out NaN.
fn attendTile(b: u32, h: u32, i: u32, last: u32, j0: u32, n: u32) {
  let i$ = min(i + $u, last);
  var w$: array<vec4<f32>, BC4>;
  let seen$ = keysSeen(b, i$, j0, n);
  let n4 = (n + 3u) / 4u;
  var some = 0u; // the keys some row sees
  var both = 0xffffffffu; // the keys every row sees
  some |= seen$;
  both &= seen$;
  for (var r4 = 0u; r4 < n4; r4++) {
    if (any(quadSeen(some, r4))) {
      let s = tileScores(r4, n);
      w$[r4] = s[$];
    }
  }
  let correction$ = weighTile(&row$, &w$, n4, seen$);
  for (var x = 0u; x < KL; x++) {
    acc$[x] *= correction$;
  }
  for (var r4 = 0u; r4 < n4; r4++) {
    let r = 4u * r4;
    if (all(quadSeen(both, r4))) {
      let p$ = w$[r4] * dropKeep4(b, h, i$, j0 + r);
      for (var x = 0u; x < KL; x++) {
        let c = channel(x);
        let v0 = tileValue(r, c);
        let v1 = tileValue(r + 1u, c);
        let v2 = tileValue(r + 2u, c);
        let v3 = tileValue(r + 3u, c);
        acc$[x] = acc$[x] + p$.x * v0 + p$.y * v1 + p$.z * v2 + p$.w * v3;
      }
    } else if (any(quadSeen(some, r4))) {
      let quad$ = quadSeen(seen$, r4);
      let p$ = w$[r4] * dropKeep4(b, h, i$, j0 + r);
      for (var u = 0u; u < 4u; u++) {
        if (quad$[u]) { for (var x = 0u; x < KL; x++) { acc$[x] += p$[u] * tileValue(r + u, channel(x)); } }
      }
    }
  }
  let bad = tileBadValues();
  if ((seen$ & bad) != 0u) { spoilRow(&row$); }
}
