// Shared by the CausalGeneration kernels: the pairwise reduction R and its derivative, over
// V (f32 or vec4<f32>, from common/lanes-*.wgsl).

override REDUCE: u32 = 0u; // 0 min, 1 max, 2 mean

fn reduce2(a: V, b: V) -> V {
  if (REDUCE == 0u) { return min(a, b); }
  if (REDUCE == 1u) { return max(a, b); }
  return 0.5 * (a + b);
}

// ∂R(a, b)/∂a; ∂R/∂b is 1 minus it. A min/max tie goes to a, the current token.
fn selfWeight(a: V, b: V) -> V {
  if (REDUCE == 0u) { return select(V(0.0), V(1.0), a <= b); }
  if (REDUCE == 1u) { return select(V(0.0), V(1.0), a >= b); }
  return V(0.5);
}
