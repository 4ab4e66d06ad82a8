// Shared by the scans' last backward launch (gated-linear-attention/split-grads.wgsl,
// selective-ssm/split-grads.wgsl), which finishes the sums that scan/backward.wgsl leaves in
// `grads` as partial sums side by side, one per block of channels. Expects a `grads` binding.

// the sum of the k partial sums from `start`, in order
fn partSum(start: u32, k: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < k; j++) { s += grads[start + j]; }
  return s;
}
