// FlashStyleTiledAttention's weights for the shared attention backward kernels
// (common/attention-backward-*.wgsl): softmax, from the forward's per-row lse.

// The row's factor from the forward's statistic: the lse itself.
fn rowFactor(lse: f32) -> f32 {
  return lse;
}

// (P, dS) of one (query, key) pair from its score s, dp = m·dO·v (m its dropout multiplier,
// 1 without dropout), the row's lse and delta = rowsum(dO∘o): P = exp(s − lse),
// dS = P∘(dp − delta). The skeleton scales P by m for dV.
fn pairGrads(s: f32, dp: f32, lse: f32, delta: f32) -> vec2<f32> {
  let p = exp(s - lse);
  return vec2<f32>(p, p * (dp - delta));
}
