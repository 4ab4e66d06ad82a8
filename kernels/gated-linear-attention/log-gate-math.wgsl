// Shared by GatedLinearAttention's step (step.wgsl) and its log gate (log-gate.wgsl): the layer's
// log forget gate of its logits z, logsigmoid(z)/normalizer = −softplus(−z)/normalizer, with
// softplus as tfjs's webgpu kernel forms it, so that the kernels and tfjs's ops agree to the bit.

fn softplus(a: f32) -> f32 {
  let threshold = log(1.1920928955078125e-7) + 2.0;
  if (a > -threshold) { return a; }
  if (a < threshold) { return exp(a); }
  return log(exp(a) + 1.0);
}

fn logGateOf(z: f32, normalizer: f32) -> f32 {
  return -softplus(-z) / normalizer;
}
