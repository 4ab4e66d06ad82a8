// Sine and cosine of a float32 angle with a known error on every GPU. WGSL's sin and cos promise
// only an absolute error of 2^-11, and only on [-π, π]; a rotary angle p·θ reaches 65536 and
// more. So the angle is reduced here, a = k·π/2 + r with |r| ≤ π/4, and sin r, cos r come from
// their Taylor polynomials (degrees 9 and 10, truncation below 2e-9 on |r| ≤ 0.8).
//
// Cody–Waite reduction: π/2 = C1 + C2 + C3, with C1 and C2 of 8 significant bits each, so that
// k·C1 and k·C2 are exact for |k| < 2^16 (|a| < 102,943) and both subtractions are exact too
// (Sterbenz, then a result of under 24 bits on the grid of k·C2); only k·C3 and the last
// subtraction round, to under 2^-25 together. Contracting any step into an fma gives the same
// or a closer r. See docs/rotary.md for the error budget.

const C1: f32 = 1.5703125; // π/2 to 8 bits
const C2: f32 = 4.825592041015625e-4; // the next 8 bits
const C3: f32 = 1.2675908465098473e-6; // the rest, to float32
const TWO_OVER_PI: f32 = 0.6366197723675814;

// (sin a, cos a)
fn sincos(a: f32) -> vec2<f32> {
  let k = round(a * TWO_OVER_PI);
  let r = ((a - k * C1) - k * C2) - k * C3;
  let r2 = r * r;
  let s = r + r * r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0))));
  let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
  // a = r + q·π/2: rotate (sin r, cos r) by the quadrant q = k mod 4 (two's complement: also for k < 0)
  let q = i32(k) & 3;
  if (q == 0) { return vec2<f32>(s, c); }
  if (q == 1) { return vec2<f32>(c, -s); }
  if (q == 2) { return vec2<f32>(-s, -c); }
  return vec2<f32>(-c, s);
}
