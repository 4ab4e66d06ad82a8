// Shared: kernels written over `V` process one channel per invocation (D not a multiple of 4).
alias V = f32;
alias VB = bool;
alias VU = u32;

fn lanesSum(v: V) -> f32 {
  return v;
}
