// The row hooks of common/attention-forward.wgsl for ExpressiveAttention:
// o_i = Σ_j s_ij²·v_j / (ε + Σ_j s_ij²) over the visible keys, with s = scale·q·kᵀ. Every term
// s² is ≥ 0, so each row simply accumulates N += s²·v and Z += s² (no running max, no
// rescaling). Saves the denominator z = max(ε + Z, 2⁻⁶⁰) per row for the backward.
// Expects the skeleton's `kTile`, `vTile`, `o` and `stat`, the layout's `keySeen`,
// common/lanes-*.wgsl, common/attention.wgsl, common/dropout.wgsl and the host's `const KV`.

// ε of the denominator: a pipeline constant, as the Params uniform is shared by every attention kernel
override EPSILON: f32;

// the floor of the denominator, as MIN_DENOMINATOR in reference.ts
const MIN_DENOMINATOR = 0x1p-60f;

// Z = Σ s² over the keys seen so far
struct RowState {
  z: f32,
}

fn initRow() -> RowState {
  return RowState(0.0);
}

// Adds keys j0..j0+n−1 of the tiles to row i's (of head h) N (acc) and Z: Z sums every visible
// s², N each s² times its dropout multiplier.
fn attendTile(qi: ptr<function, array<V, KV>>, acc: ptr<function, array<V, KV>>,
              state: ptr<function, RowState>, b: u32, h: u32, i: u32, j0: u32, n: u32) {
  for (var r = 0u; r < n; r++) {
    if (keySeen(b, i, j0 + r)) {
      var d = V(0.0);
      for (var c = 0u; c < KV; c++) { d += (*qi)[c] * kTile[r * KV + c]; }
      let s = lanesSum(d);
      let p = s * s;
      (*state).z += p;
      let kept = p * dropKeep(b, h, i, j0 + r);
      for (var c = 0u; c < KV; c++) { (*acc)[c] += kept * vTile[r * KV + c]; }
    }
  }
}

// Writes o = N / z at oBase and z at statIndex, z floored as the reference does: with ε = 0 a
// row whose scores are all 0 (or that sees no key) has N = 0 and outputs 0, never NaN.
fn finishRow(acc: ptr<function, array<V, KV>>, state: RowState, oBase: u32, statIndex: u32) {
  let denom = max(EPSILON + state.z, MIN_DENOMINATOR);
  let inv = 1.0 / denom;
  for (var c = 0u; c < KV; c++) { o[oBase + c] = (*acc)[c] * inv; }
  stat[statIndex] = denom;
}
