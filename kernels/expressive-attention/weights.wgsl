// ExpressiveAttention's weights for the shared attention backward kernels
// (common/attention-backward-*.wgsl): squared scores, from the forward's denominator
// z = ε + Σ s².

// The row's factor from the forward's statistic: 1/z, finite as z ≥ 2⁻⁶⁰ (the forward's floor).
fn rowFactor(z: f32) -> f32 {
  return 1.0 / z;
}

// (p, dS) of one (query, key) pair from its score s, dp = m·dO·v (m its dropout multiplier,
// 1 without dropout), the row's 1/z and delta = rowsum(dO∘o): p = s²/z,
// dS = 2·s·(dp − delta)/z (docs/expressive-attention.md). The skeleton scales p by m for dV.
fn pairGrads(s: f32, dp: f32, invZ: f32, delta: f32) -> vec2<f32> {
  return vec2<f32>(s * s * invZ, 2.0 * s * (dp - delta) * invZ);
}
