// The row hooks of common/attention-forward.wgsl for softmax attention (FlashStyleTiledAttention,
// BlockSparse): the online softmax of FlashAttention-2 over one key tile in workgroup memory, and
// the row's output. Expects the skeleton's `kTile`, `vTile`, `o` and `stat`, the layout's
// `keySeen`, common/lanes-*.wgsl, common/attention.wgsl, common/dropout.wgsl, and the host's
// `const KV, BC`.

// A query row's running max m of the scores and normaliser l = Σ exp(s − m).
struct RowState {
  m: f32,
  l: f32,
}

fn initRow() -> RowState {
  return RowState(NEG, 0.0);
}

// Folds keys j0..j0+n−1 of the tiles into row i's (of head h) state and output accumulator,
// rescaling the accumulator once per tile. l sums every visible weight; the accumulator takes
// each weight times its dropout multiplier.
fn attendTile(qi: ptr<function, array<V, KV>>, acc: ptr<function, array<V, KV>>,
              state: ptr<function, RowState>, b: u32, h: u32, i: u32, j0: u32, n: u32) {
  var s: array<f32, BC>;
  var tileMax = NEG;
  for (var r = 0u; r < n; r++) {
    var d = V(0.0);
    for (var c = 0u; c < KV; c++) { d += (*qi)[c] * kTile[r * KV + c]; }
    // select, never multiply: a non-finite invisible key never reaches the row
    s[r] = select(NEG, lanesSum(d), keySeen(b, i, j0 + r));
    tileMax = max(tileMax, s[r]);
  }
  let mNew = max((*state).m, tileMax);
  // rows that have seen no visible key yet keep m = NEG and nothing to rescale
  if (mNew > NEG) {
    let correction = exp((*state).m - mNew);
    (*state).l *= correction;
    for (var c = 0u; c < KV; c++) { (*acc)[c] *= correction; }
    for (var r = 0u; r < n; r++) {
      if (s[r] > NEG) {
        let p = exp(s[r] - mNew);
        (*state).l += p;
        let kept = p * dropKeep(b, h, i, j0 + r);
        for (var c = 0u; c < KV; c++) { (*acc)[c] += kept * vTile[r * KV + c]; }
      }
    }
    (*state).m = mNew;
  }
}

// Writes o = acc / l at oBase and the statistic lse = m + log l at statIndex; a row with no
// visible key gets o = 0 and lse = NEG, never NaN.
fn finishRow(acc: ptr<function, array<V, KV>>, state: RowState, oBase: u32, statIndex: u32) {
  let inv = select(0.0, 1.0 / state.l, state.l > 0.0);
  for (var c = 0u; c < KV; c++) { o[oBase + c] = (*acc)[c] * inv; }
  stat[statIndex] = select(NEG, state.m + log(state.l), state.l > 0.0);
}
