// The row hooks of the attention skeleton's forward passes (the tiled forward and the split-K
// decode, both through common/attend-tile.wgsl, and its merge) for ExpressiveAttention:
// o_i = Σ_j s_ij²·v_j / (ε + Σ_j s_ij²) over the visible keys, with s = scale·q·kᵀ. Every weight
// s² is ≥ 0, so a row simply sums Z += s² (no running max, no rescaling), and partial rows merge
// by adding. Saves the denominator z = max(ε + Z, 2⁻⁶⁰) per row for the backward. Works on a
// row's state, which the pass keeps in a private variable (`state` points to it). Expects
// common/attention.wgsl, common/float-bits.wgsl and the host's `const BC4`.

// ε of the denominator: a pipeline constant, as the Params uniform is shared by every attention kernel
override EPSILON: f32;

// the floor of the denominator, as MIN_DENOMINATOR in reference.ts
const MIN_DENOMINATOR = 0x1p-60f;

// Z = Σ s² over the keys seen so far, and whether the row has seen a non-finite input (spoilRow)
struct RowState {
  z: f32,
  spoilt: bool,
}

fn initRow() -> RowState {
  return RowState(0.0, false);
}

// Marks the row as one that sees a non-finite input: it comes out NaN whatever its Z.
fn spoilRow(state: ptr<private, RowState>) {
  (*state).spoilt = true;
}

// Turns the scores of a tile's visible keys (bit r of `seen`, quads 0..n4−1) into their weights
// s² and adds them to Z; an invisible key weighs 0. The accumulator keeps its scale (factor 1).
// A non-finite weight (of a non-finite query or key entry, or a score past 2⁶⁴, whose square
// the reference's sums overflow too) makes the tile's sum of weights, which are ≥ 0, non-finite,
// and spoils the row.
fn weighTile(state: ptr<private, RowState>, w: ptr<function, array<vec4<f32>, BC4>>, n4: u32, seen: u32) -> f32 {
  var z = vec4<f32>(0.0);
  for (var r4 = 0u; r4 < n4; r4++) {
    let s = (*w)[r4];
    let a = select(vec4<f32>(0.0), s * s, quadSeen(seen, r4));
    (*w)[r4] = a;
    z += a;
  }
  let tile = z.x + z.y + z.z + z.w;
  if (!isFinite(tile)) { spoilRow(state); }
  (*state).z += tile;
  return 1.0;
}

// The row state as two floats, for the split-K partials: (Z, 1 if spoilt else 0).
fn packRow(state: ptr<private, RowState>) -> vec2<f32> {
  return vec2<f32>((*state).z, select(0.0, 1.0, (*state).spoilt));
}

// Merges a partial row (Z₂, spoilt₂) into the row's state: the sums add, so both accumulators
// keep factor 1; a spoilt partial spoils the row.
fn mergeRow(state: ptr<private, RowState>, part: vec2<f32>) -> vec2<f32> {
  (*state).z += part.x;
  (*state).spoilt = (*state).spoilt || part.y != 0.0;
  return vec2<f32>(1.0);
}

// The row's output, as (the factor 1/z of its accumulator N, the statistic z), z floored as the
// reference does: with ε = 0 a row whose scores are all 0 (or that sees no key) has N = 0 and
// outputs 0, never NaN; a spoilt row gets (NaN, NaN).
fn finishRow(state: ptr<private, RowState>) -> vec2<f32> {
  if ((*state).spoilt) { return vec2<f32>(nan(), nan()); }
  let z = max(EPSILON + (*state).z, MIN_DENOMINATOR);
  return vec2<f32>(1.0 / z, z);
}
