// Shared: kernels written over `V` process four adjacent channels per invocation (D a multiple
// of 4), with 16-byte loads and stores; every array of channels is then indexed in vec4 units.
alias V = vec4<f32>;
alias VB = vec4<bool>;
alias VU = vec4<u32>;
const V_LANES = 4u;

// v as a vec4
fn lanes4(v: V) -> vec4<f32> {
  return v;
}

fn lanesSum(v: V) -> f32 {
  return v.x + v.y + v.z + v.w;
}

// the first V_LANES lanes of a vec4 as a V
fn fromLanes4(v: vec4<f32>) -> V {
  return v;
}
