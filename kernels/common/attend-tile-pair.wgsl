// The tiled forward's fold of a tile of keys (common/attention-forward.wgsl) into an invocation's
// two query rows: the work of common/attend-tile.wgsl for rows i0 and i0 + 1 at once, so that each
// key quad (tileScoresPair, common/key-quads.wgsl) and each value read from workgroup memory
// serves both. The second row's registers are spelled out beside the first's (qi1, acc1, the
// pass's row1), not indexed: SwiftShader makes an array indexed at run time slow, and the pair
// measured 0.73 of one row's time there (docs/benchmarks.md). Expects common/row-registers.wgsl,
// common/dropout.wgsl, the pass's `row` and `row1`, common/key-quads.wgsl, the layout's
// `keySeen`, the row hooks' `weighTile`, and the host's `const KV, BC, BC4` (BC ≤ 32).

var<private> qi1: array<V, KV>; // the second row's scale·q
var<private> acc1: array<V, KV>; // the second row's accumulator

// Folds keys j0..j0+n−1 of the tile into rows i0 and i1 (of head h; i1 = i0 + 1, or i0 again
// past the tile's last row, which is then never written), as attendTile does for one: each row
// weighs only the keys it sees, a quad both rows see whole meets its four values in one step,
// and a value a row cannot see, which may be non-finite, never reaches that row.
fn attendTilePair(b: u32, h: u32, i0: u32, i1: u32, j0: u32, n: u32) {
  var w0: array<vec4<f32>, BC4>;
  var w1: array<vec4<f32>, BC4>;
  var seen0 = 0u;
  var seen1 = 0u;
  let n4 = (n + 3u) / 4u;
  for (var r = 0u; r < n; r++) {
    if (keySeen(b, i0, j0 + r)) { seen0 |= 1u << r; }
    if (keySeen(b, i1, j0 + r)) { seen1 |= 1u << r; }
  }
  let some = seen0 | seen1;
  let both = seen0 & seen1;
  // a quad no row sees (past the diagonal, outside a window) is skipped
  for (var r4 = 0u; r4 < n4; r4++) {
    if (any(quadSeen(some, r4))) {
      let s = tileScoresPair(r4);
      w0[r4] = s[0];
      w1[r4] = s[1];
    }
  }
  let correction0 = weighTile(&row, &w0, n4, seen0);
  let correction1 = weighTile(&row1, &w1, n4, seen1);
  for (var c = 0u; c < KV; c++) {
    acc[c] *= correction0;
    acc1[c] *= correction1;
  }
  for (var r4 = 0u; r4 < n4; r4++) {
    let r = 4u * r4;
    if (all(quadSeen(both, r4))) {
      let p0 = w0[r4] * dropKeep4(b, h, i0, j0 + r);
      let p1 = w1[r4] * dropKeep4(b, h, i1, j0 + r);
      for (var c = 0u; c < KV; c++) {
        let v0 = tileValue(r, c);
        let v1 = tileValue(r + 1u, c);
        let v2 = tileValue(r + 2u, c);
        let v3 = tileValue(r + 3u, c);
        acc[c] += p0.x * v0 + p0.y * v1 + p0.z * v2 + p0.w * v3;
        acc1[c] += p1.x * v0 + p1.y * v1 + p1.z * v2 + p1.w * v3;
      }
    } else if (any(quadSeen(some, r4))) {
      let quad0 = quadSeen(seen0, r4);
      let quad1 = quadSeen(seen1, r4);
      let p0 = w0[r4] * dropKeep4(b, h, i0, j0 + r);
      let p1 = w1[r4] * dropKeep4(b, h, i1, j0 + r);
      for (var u = 0u; u < 4u; u++) {
        if (quad0[u]) {
          for (var c = 0u; c < KV; c++) { acc[c] += p0[u] * tileValue(r + u, c); }
        }
        if (quad1[u]) {
          for (var c = 0u; c < KV; c++) { acc1[c] += p1[u] * tileValue(r + u, c); }
        }
      }
    }
  }
}
