// Shared by GELU's kernel (gelu.wgsl) and the dense kernels' epilogue (dense.wgsl): Φ(x), the
// standard normal CDF, as (1 + erf(x/√2))/2, with erf from Abramowitz and Stegun's 7.1.26
// (|error| ≤ 1.5·10⁻⁷), as tfjs's own erf kernels compute it, so the reference (tfjs ops) and
// the kernels agree to rounding.

// erf(z), Abramowitz and Stegun 7.1.26
fn erf(z: f32) -> f32 {
  let a = abs(z);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
  return sign(z) * (1.0 - poly * exp(-a * a));
}

// Φ(v)
fn normalCdf(v: f32) -> f32 {
  return 0.5 * (1.0 + erf(v * 0.7071067811865476));
}
