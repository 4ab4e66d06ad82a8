// ExpressiveAttention's quadratic features, shared by the recurrent step (recurrent-step.wgsl)
// and the prefill's kernels (recurrent-sums.wgsl, recurrent-prompt-readout.wgsl): φ(x) packs x⊗x
// into P = K(K+1)/2 rows, row p < K being x_p², then √2·x_a·x_b for a < b, row-major
// (quadraticFeatures in src/mixers/expressive-attention/reference.ts); and the compensated sum
// of a readout over them. Expects common/lanes-*.wgsl and the host's `const K`.

// √2 rounded to f32, the weight tfjs's reference multiplies by
const SQRT2 = 0x1.6a09e6p+0f;

// start of a's pairs (a, a+1 …) among the off-diagonal rows: Σ_{i<a} (K − 1 − i)
fn pairStart(a: u32) -> u32 {
  return a * (2u * K - 1u - a) / 2u;
}

// the (a, b) of state row p, a ≤ b
fn pairOf(p: u32) -> vec2u {
  if (p < K) { return vec2u(p, p); }
  let r = p - K;
  // the root of pairStart(a) = r, then exact integer corrections for its rounding
  let n = f32(2u * K - 1u);
  var a = u32(max(0.0, floor((n - sqrt(max(0.0, n * n - 8.0 * f32(r)))) * 0.5)));
  a = min(a, K - min(K, 2u)); // K ≥ 2 here; min keeps the constant expression valid for K = 1
  while (a + 1u < K - 1u && pairStart(a + 1u) <= r) { a += 1u; }
  while (a > 0u && pairStart(a) > r) { a -= 1u; }
  return vec2u(a, a + 1u + r - pairStart(a));
}

// φ(x)_p from x_a, x_b: the operations of the reference, (x_a·x_b)·w
fn feature(xa: f32, xb: f32, diagonal: bool) -> f32 {
  let product = xa * xb;
  return select(product * SQRT2, product, diagonal);
}

// (a, b) of row p + 1, from row p's: the diagonal in order, then (a, b) row-major over a < b
fn nextPair(p: u32, ab: vec2u) -> vec2u {
  if (p + 1u < K) { return vec2u(p + 1u, p + 1u); }
  if (p + 1u == K) { return vec2u(0u, 1u); }
  if (ab.y + 1u < K) { return vec2u(ab.x, ab.y + 1u); }
  return vec2u(ab.x + 1u, ab.x + 2u);
}

// Neumaier's step: adds x to the running sum *s and the exact rounding error of that addition
// (Knuth's FastTwoSum, the larger operand first, lane by lane) to the compensation *c
fn addCompensated(s: ptr<function, V>, c: ptr<function, V>, x: V) {
  let t = *s + x;
  *c += select((x - t) + *s, (*s - t) + x, abs(*s) >= abs(x));
  *s = t;
}

// addCompensated for one float, where V has four lanes
fn addCompensatedScalar(s: ptr<function, f32>, c: ptr<function, f32>, x: f32) {
  let t = *s + x;
  *c += select((x - t) + *s, (*s - t) + x, abs(*s) >= abs(x));
  *s = t;
}
