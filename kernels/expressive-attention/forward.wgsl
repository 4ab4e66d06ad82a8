// The row hooks of the attention skeleton's forward passes (the tiled forward and the split-K
// decode, both through common/attend-tile.wgsl, and its merge) for ExpressiveAttention:
// o_i = Σ_j s_ij²·v_j / (ε + Σ_j s_ij²) over the visible keys, with s = scale·q·kᵀ. Every weight
// s² is ≥ 0, so a row simply sums Z += s² (no running max, no rescaling), and partial rows merge
// by adding. Saves the denominator z = max(ε + Z, 2⁻⁶⁰) per row for the backward. Works on a
// row's state, which the pass keeps in a private variable (`state` points to it). Expects
// common/attention.wgsl and the host's `const BC4`.

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

// Turns the scores of a tile's visible keys (bit r of `seen`, quads 0..n4−1) into their weights
// s² and adds them to Z; an invisible key weighs 0. The accumulator keeps its scale (factor 1).
fn weighTile(state: ptr<private, RowState>, w: ptr<function, array<vec4<f32>, BC4>>, n4: u32, seen: u32) -> f32 {
  var z = vec4<f32>(0.0);
  for (var r4 = 0u; r4 < n4; r4++) {
    let s = (*w)[r4];
    let a = select(vec4<f32>(0.0), s * s, quadSeen(seen, r4));
    (*w)[r4] = a;
    z += a;
  }
  (*state).z += z.x + z.y + z.z + z.w;
  return 1.0;
}

// The row state as two floats, for the split-K partials: (Z, 0).
fn packRow(state: ptr<private, RowState>) -> vec2<f32> {
  return vec2<f32>((*state).z, 0.0);
}

// Merges a partial row (Z₂, 0) into the row's state: the sums add, so both accumulators keep factor 1.
fn mergeRow(state: ptr<private, RowState>, part: vec2<f32>) -> vec2<f32> {
  (*state).z += part.x;
  return vec2<f32>(1.0);
}

// The row's output, as (the factor 1/z of its accumulator N, the statistic z), z floored as the
// reference does: with ε = 0 a row whose scores are all 0 (or that sees no key) has N = 0 and
// outputs 0, never NaN.
fn finishRow(state: ptr<private, RowState>) -> vec2<f32> {
  let z = max(EPSILON + (*state).z, MIN_DENOMINATOR);
  return vec2<f32>(1.0 / z, z);
}
