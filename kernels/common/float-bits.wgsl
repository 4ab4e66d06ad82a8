// Shared: a float's class, read from its bits (a shader compiler may assume that every float is
// finite, so isNan(x) as x != x may fold away), NaN and −∞ made at run time (a constant
// expression may be neither), and a max that keeps a NaN (WGSL's max need not).

fn isFinite(a: f32) -> bool {
  return (bitcast<u32>(a) & 0x7f800000u) != 0x7f800000u;
}

// The exponent fields of a's lanes: all ones (0x7f800000) exactly where a lane is not finite, so
// the largest of many such fields, kept with max in a loop at one operation a vector, tells
// whether any of them was (allFinite).
fn exponents4(a: vec4<f32>) -> vec4<u32> {
  return bitcast<vec4<u32>>(a) & vec4<u32>(0x7f800000u);
}

fn allFinite(largestExponents: vec4<u32>) -> bool {
  return all(largestExponents != vec4<u32>(0x7f800000u));
}

fn isNan(a: f32) -> bool {
  return (bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u;
}

fn nan() -> f32 {
  let bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}

fn minusInfinity() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}

// the larger of a and b, or the NaN if either is one (a's first)
fn larger(a: f32, b: f32) -> f32 {
  return select(select(max(a, b), b, isNan(b)), a, isNan(a));
}
