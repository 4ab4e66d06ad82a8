// Shared by the AverageContext kernels: the three-way combine C(x[t], x[t-1], c[t]) and its derivative.
// COMBINE 3 keeps c[t] alone, which makes the same kernels compute causalMean.

override COMBINE: u32 = 0u; // 0 max, 1 min, 2 mean, 3 context only

fn combine3(a: f32, p: f32, c: f32) -> f32 {
  if (COMBINE == 0u) { return max(max(a, p), c); }
  if (COMBINE == 1u) { return min(min(a, p), c); }
  if (COMBINE == 2u) { return (a + p + c) / 3.0; }
  return c;
}

// (∂C/∂a, ∂C/∂p, ∂C/∂c); min/max ties go to the first of a, p, c.
fn combineWeights(a: f32, p: f32, c: f32) -> vec3f {
  if (COMBINE == 2u) { return vec3f(1.0 / 3.0); }
  if (COMBINE == 3u) { return vec3f(0.0, 0.0, 1.0); }
  var pick = 0u;
  if (COMBINE == 0u) {
    if (!(a >= p && a >= c)) { pick = select(2u, 1u, p >= c); }
  } else {
    if (!(a <= p && a <= c)) { pick = select(2u, 1u, p <= c); }
  }
  return vec3f(select(0.0, 1.0, pick == 0u), select(0.0, 1.0, pick == 1u), select(0.0, 1.0, pick == 2u));
}
