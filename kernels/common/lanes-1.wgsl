// Shared: kernels written over `V` process one channel per invocation (D not a multiple of 4).
alias V = f32;
alias VB = bool;
alias VU = u32;
const V_LANES = 1u;

// v as a vec4, zeros past its one lane
fn lanes4(v: V) -> vec4<f32> {
  return vec4<f32>(v, 0.0, 0.0, 0.0);
}

fn lanesSum(v: V) -> f32 {
  return v;
}

// the first V_LANES lanes of a vec4 as a V
fn fromLanes4(v: vec4<f32>) -> V {
  return v.x;
}
