// The row hooks of the attention skeleton's forward passes (the tiled forward and the split-K
// decode, both through common/attend-tile.wgsl, and its merge) for softmax attention
// (FlashStyleTiledAttention, BlockSparse): the row algebra of FlashAttention-2's online softmax
// on a row's state, which the pass keeps in a private variable (`state` points to it). Expects
// common/attention.wgsl, common/float-bits.wgsl and the host's `const BC4`.

// A query row's running max m of the scores and normaliser l = Σ exp(s − m), and whether it has
// seen a non-finite input (spoilRow).
struct RowState {
  m: f32,
  l: f32,
  spoilt: bool,
}

fn initRow() -> RowState {
  return RowState(NEG, 0.0, false);
}

// Marks the row as one that sees a non-finite input: it comes out NaN whatever its m and l.
fn spoilRow(state: ptr<private, RowState>) {
  (*state).spoilt = true;
}

// Turns the scores of a tile's visible keys (bit r of `seen`, quads 0..n4−1) into their weights
// exp(s − m) and adds them to l, after moving the running max m to the tile's; returns the factor
// e^{m_old − m} by which the row's accumulator is rescaled, once per tile. An invisible key
// weighs 0. Rows that have seen no visible key yet keep m = NEG, weigh nothing and rescale nothing.
// A non-finite score (of a non-finite query or key entry) spoils the row.
fn weighTile(state: ptr<private, RowState>, w: ptr<function, array<vec4<f32>, BC4>>, n4: u32, seen: u32) -> f32 {
  var quadMax = vec4<f32>(NEG);
  var exponents = vec4<u32>(0u);
  for (var r4 = 0u; r4 < n4; r4++) {
    let s = select(vec4<f32>(NEG), (*w)[r4], quadSeen(seen, r4));
    quadMax = max(quadMax, s);
    exponents = max(exponents, exponents4(s));
  }
  if (!allFinite(exponents)) { spoilRow(state); }
  let old = *state;
  let m = max(old.m, max(max(quadMax.x, quadMax.y), max(quadMax.z, quadMax.w)));
  if (m <= NEG) {
    for (var r4 = 0u; r4 < n4; r4++) { (*w)[r4] = vec4<f32>(0.0); }
    return 1.0;
  }
  let correction = exp(old.m - m);
  var l = vec4<f32>(0.0);
  for (var r4 = 0u; r4 < n4; r4++) {
    let p = select(vec4<f32>(0.0), exp((*w)[r4] - m), quadSeen(seen, r4));
    (*w)[r4] = p;
    l += p;
  }
  *state = RowState(m, old.l * correction + (l.x + l.y + l.z + l.w), old.spoilt);
  return correction;
}

// The row state as two floats, for the split-K partials: (m, l), with l = −1 for a spoilt row
// (a true l is never negative).
fn packRow(state: ptr<private, RowState>) -> vec2<f32> {
  return vec2<f32>((*state).m, select((*state).l, -1.0, (*state).spoilt));
}

// Merges a partial row (m₂, l₂) into the row's state: m = max(m₁, m₂), l = e^{m₁−m}·l₁ + e^{m₂−m}·l₂.
// Returns the factors (e^{m₁−m}, e^{m₂−m}) of the row's accumulator and the partial's. A partial
// that saw no key (m = NEG, l = 0, O = 0) adds nothing; a spoilt one spoils the row.
fn mergeRow(state: ptr<private, RowState>, part: vec2<f32>) -> vec2<f32> {
  let old = *state;
  let m = max(old.m, part.x);
  let f = vec2<f32>(exp(old.m - m), exp(part.x - m));
  *state = RowState(m, f.x * old.l + f.y * part.y, old.spoilt || part.y < 0.0);
  return f;
}

// The row's output, as (the factor 1/l of its accumulator, the statistic lse = m + log l); a
// row with no visible key gets (0, NEG), never NaN; a spoilt row (NaN, NaN).
fn finishRow(state: ptr<private, RowState>) -> vec2<f32> {
  let row = *state;
  if (row.spoilt) { return vec2<f32>(nan(), nan()); }
  if (row.l > 0.0) { return vec2<f32>(1.0 / row.l, row.m + log(row.l)); }
  return vec2<f32>(0.0, NEG);
}
