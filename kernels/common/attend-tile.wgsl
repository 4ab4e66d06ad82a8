// Shared by the attention passes that run a family's row hooks over tiles of keys (the tiled
// forward, the split-K decode): folds one tile into the row's registers. Expects
// common/row-registers.wgsl, common/dropout.wgsl, the pass's `row`, `tileKey` and `tileValue`,
// the layout's `keySeen`, the row hooks' `weighTile`, and the host's `const KV, BC` (BC ≤ 32:
// the visible keys of a tile are one u32 of bits).

// Folds keys j0..j0+n−1 of the tile into row i's (of head h) state and accumulator: the scores
// s = (scale·q)·k of the visible keys become weights (weighTile, which also updates the row's
// normaliser and says how to rescale the accumulator), and each weight, times its dropout
// multiplier, meets its value.
fn attendTile(b: u32, h: u32, i: u32, j0: u32, n: u32) {
  var w: array<f32, BC>;
  var seen = 0u;
  for (var r = 0u; r < n; r++) {
    // a score is formed for every key, but only a visible one is ever weighed: a non-finite
    // invisible key never reaches the row
    var d = V(0.0);
    for (var c = 0u; c < KV; c++) { d += qi[c] * tileKey(r, c); }
    w[r] = lanesSum(d);
    if (keySeen(b, i, j0 + r)) { seen |= 1u << r; }
  }
  let correction = weighTile(&w, n, seen);
  for (var c = 0u; c < KV; c++) { acc[c] *= correction; }
  for (var r = 0u; r < n; r++) {
    if ((seen & (1u << r)) != 0u) {
      let kept = w[r] * dropKeep(b, h, i, j0 + r);
      for (var c = 0u; c < KV; c++) { acc[c] += kept * tileValue(r, c); }
    }
  }
}
