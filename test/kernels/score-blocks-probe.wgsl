// Reads back how common/score-blocks.wgsl lays out the passes by blocks
// (test/score-blocks-layout.test.ts): each invocation's block (blockAt), the column of sTile that
// holds each row's quads (sColumn), and sTile's row stride in vec4s. Follows lanes-4.wgsl, the
// sizes, attention.wgsl (whose functions name `params`) and score-blocks.wgsl.

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_index) index: u32) {
  let at = blockAt(index);
  out[2u * index] = at.x;
  out[2u * index + 1u] = at.y;
  for (var r4 = 0u; r4 < BC4; r4++) { out[2u * NT + BC4 * index + r4] = sColumn(index, r4); }
  if (index == 0u) { out[2u * NT + BC4 * NT] = SS; }
}
