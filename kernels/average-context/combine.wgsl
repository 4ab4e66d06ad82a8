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

// ∂C/∂a, ∂C/∂p, ∂C/∂c, channel by channel.
struct Weights {
  a: V,
  p: V,
  c: V,
}

// min/max send everything to the picked argument; a tie goes to the first of a, p, c.
fn combineWeights(a: V, p: V, c: V) -> Weights {
  if (COMBINE == 2u) { return Weights(V(1.0 / 3.0), V(1.0 / 3.0), V(1.0 / 3.0)); }
  if (COMBINE == 3u) { return Weights(V(0.0), V(0.0), V(1.0)); }
  var pickA: VB;
  var pBeatsC: VB;
  if (COMBINE == 0u) {
    pickA = (a >= p) & (a >= c);
    pBeatsC = p >= c;
  } else {
    pickA = (a <= p) & (a <= c);
    pBeatsC = p <= c;
  }
  let one = V(1.0);
  let zero = V(0.0);
  return Weights(select(zero, one, pickA), select(zero, one, !pickA & pBeatsC), select(zero, one, !pickA & !pBeatsC));
}
