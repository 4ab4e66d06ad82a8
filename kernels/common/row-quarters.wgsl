// The row hooks of the attention passes where the device has subgroups and four lanes of a
// subgroup take each group of RQ rows in place of one invocation (common/row-whole.wgsl): the
// tiled passes (the forward, dQ, dK/dV; entry point common/tiled-main-quarters.wgsl) and the
// split-K decode with a workgroup per chunk (common/split-workgroup-main-quarters.wgsl). Lane
// quarter u of the four holds channel groups u, u + 4, u + 8, … of its rows' registers (KL =
// KV / 4 of each: common/row-registers.wgsl, dK/dV's key rows), reads only those of each tile row
// from its tiles (workgroup memory, or the cache in the split-K decode), and
// forms its part of each dot product; rowScores adds the four parts with two subgroup shuffles,
// in an order that gives the four lanes the same sum to the bit, so that their row states (the
// row hooks' softmax, ExpressiveAttention's sums, a backward's weights and dS) stay identical
// without any further exchange, and the backward forms each score as the forward did. A row then
// takes a quarter of the registers, and a workgroup four times the invocations to hide latency.
// The quarters of a row are lanes 4m … 4m + 3 of one subgroup (WebGPU's subgroup sizes are powers
// of two, at least 4), numbered by subgroup (common/subgroup-rank.wgsl): subgroup r of size S
// takes row groups S/4·r onwards. The host makes the workgroup a multiple of the adapter's largest
// subgroup, so that every subgroup is full, and takes this path only where KV is a multiple of 4.
// Opens with SUBGROUP_DIRECTIVES (src/webgpu/subgroups.ts): the shuffles run under branches that
// are the same for the four lanes of a row, which the uniformity analysis cannot see. The entry
// point sets `quarter`. Expects common/subgroup-rank.wgsl and the host's `const RL` (4).

var<private> quarter: u32; // which quarter of its rows' channels the lane holds

// The channel group held in register x of a row.
fn channel(x: u32) -> u32 {
  return x * RL + quarter;
}

// A quad's dot products from the four lanes' parts s: lane u adds (s_u + s_{u⊕1}) and
// (s_{u⊕2} + s_{u⊕3}), so every lane forms the same two sums, each with its operands in either
// order, and adds them: the same floats on every lane.
fn rowScores(s: vec4<f32>) -> vec4<f32> {
  let pair = s + subgroupShuffleXor(s, 1u);
  return pair + subgroupShuffleXor(pair, 2u);
}

// Whether any of the four lanes has each flag: a test over a row's channels, made whole.
fn rowAny(flags: vec4<bool>) -> vec4<bool> {
  let mine = vec4<u32>(flags);
  let pair = mine | subgroupShuffleXor(mine, 1u);
  return (pair | subgroupShuffleXor(pair, 2u)) != vec4<u32>(0u);
}

// The first quarter writes its rows' per-row outputs (the forward's statistic).
fn rowLead() -> bool {
  return quarter == 0u;
}
