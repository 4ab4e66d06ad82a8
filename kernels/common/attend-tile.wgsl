// Shared by the split-K decode's first passes (common/split-chunk.wgsl), which run a family's row
// hooks over tiles of keys read from the cache: folds one tile into the row's registers, a quad of
// keys at a time (keys 4·r4 … 4·r4 + 3 of the tile, scores and weights as one vec4). The tiled
// forward folds two rows at once (common/attend-tile-pair.wgsl). Expects
// common/row-registers.wgsl, common/dropout.wgsl, the pass's `row`, `tileScores` and
// `tileValue`, the layout's `keySeen`, the row hooks' `weighTile`, and the host's
// `const KV, BC, BC4` (BC ≤ 32: the visible keys of a tile are one u32 of bits).

// Folds keys j0..j0+n−1 of the tile into row i's (of head h) state and accumulator: the scores
// s = (scale·q)·k of the visible keys become weights (weighTile, which also updates the row's
// normaliser and says how to rescale the accumulator), and each weight, times its dropout
// multiplier, meets its value.
fn attendTile(b: u32, h: u32, i: u32, j0: u32, n: u32) {
  var w: array<vec4<f32>, BC4>;
  var seen = 0u;
  let n4 = (n + 3u) / 4u;
  for (var r = 0u; r < n; r++) {
    if (keySeen(b, i, j0 + r)) { seen |= 1u << r; }
  }
  // a quad with a visible key has all four scores formed, but only a visible key is ever
  // weighed: a non-finite invisible key never reaches the row. A quad the row cannot see
  // (past the diagonal, outside a window) is skipped.
  for (var r4 = 0u; r4 < n4; r4++) {
    if (any(quadSeen(seen, r4))) { w[r4] = tileScores(r4, n); }
  }
  let correction = weighTile(&row, &w, n4, seen);
  for (var c = 0u; c < KV; c++) { acc[c] *= correction; }
  for (var r4 = 0u; r4 < n4; r4++) {
    let quad = quadSeen(seen, r4);
    let kept = w[r4] * dropKeep4(b, h, i, j0 + 4u * r4);
    let r = 4u * r4;
    if (all(quad)) {
      for (var c = 0u; c < KV; c++) {
        acc[c] += kept.x * tileValue(r, c) + kept.y * tileValue(r + 1u, c) +
          kept.z * tileValue(r + 2u, c) + kept.w * tileValue(r + 3u, c);
      }
    } else if (any(quad)) {
      // an invisible key's value, which may be non-finite, is never read
      for (var u = 0u; u < 4u; u++) {
        if (quad[u]) {
          for (var c = 0u; c < KV; c++) { acc[c] += kept[u] * tileValue(r + u, c); }
        }
      }
    }
  }
}
