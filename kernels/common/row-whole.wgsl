// Shared by the attention passes whose invocation holds its rows whole (the tiled passes without
// subgroups, the split-K decode): the row hooks that common/row-quarters.wgsl defines for a row
// shared by four lanes. Register x of a row (common/row-registers.wgsl) is its channel group x,
// an invocation's part of a dot product is the whole of it, and it writes its rows' statistics.

fn channel(x: u32) -> u32 {
  return x;
}

fn rowScores(s: vec4<f32>) -> vec4<f32> {
  return s;
}

fn rowAny(flags: vec4<bool>) -> vec4<bool> {
  return flags;
}

fn rowLead() -> bool {
  return true;
}
