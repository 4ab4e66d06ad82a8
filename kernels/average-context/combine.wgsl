// Shared by the AverageContext kernels: the three-way combine C(x[t], x[t-1], c[t]) and its
// derivative, over V (f32 or vec4<f32>, from common/lanes-*.wgsl).
// COMBINE 3 keeps c[t] alone, which makes the same kernels compute causalMean.

override COMBINE: u32 = 0u; // 0 max, 1 min, 2 mean, 3 context only

fn combine3(a: V, p: V, c: V) -> V {
  if (COMBINE == 0u) { return max(max(a, p), c); }
  if (COMBINE == 1u) { return min(min(a, p), c); }
  if (COMBINE == 2u) { return (a + p + c) / 3.0; }
  return c;
}

// Which argument min/max picks, channel by channel: 0 for a, 1 for p, 2 for c; a tie goes to
// the first of a, p, c. The forward saves the picks, so the backward needs neither x nor c[t].
fn pickOf(a: V, p: V, c: V) -> VU {
  var pickA: VB;
  var pBeatsC: VB;
  if (COMBINE == 0u) {
    pickA = (a >= p) & (a >= c);
    pBeatsC = p >= c;
  } else {
    pickA = (a <= p) & (a <= c);
    pBeatsC = p <= c;
  }
  return select(select(VU(2u), VU(1u), pBeatsC), VU(0u), pickA);
}

// ∂C/∂a, ∂C/∂p, ∂C/∂c, channel by channel: min/max send everything to the picked argument.
struct Weights {
  a: V,
  p: V,
  c: V,
}

fn weightsOf(pick: VU) -> Weights {
  if (COMBINE == 2u) { return Weights(V(1.0 / 3.0), V(1.0 / 3.0), V(1.0 / 3.0)); }
  if (COMBINE == 3u) { return Weights(V(0.0), V(0.0), V(1.0)); }
  let one = V(1.0);
  let zero = V(0.0);
  return Weights(select(zero, one, pick == VU(0u)), select(zero, one, pick == VU(1u)), select(zero, one, pick == VU(2u)));
}

// Whether the combine picks (min/max), so that the forward saves its picks for the backward.
const PICKS_BITS = 2u;
fn combinePicks() -> bool {
  return COMBINE < 2u;
}

// The pick of step u of a chunk, from the chunk's packed picks (PICKS_BITS a step).
fn pickAt(picks: VU, u: u32) -> VU {
  return (picks >> VU(PICKS_BITS * u)) & VU(3u);
}
