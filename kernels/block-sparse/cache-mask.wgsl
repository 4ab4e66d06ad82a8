// The mask of a prefill over a decode cache (src/mixers/block-sparse/layer.ts, attendCache): key
// j is visible to query i of batch row b, at position t = queryOffsets[b] + i, where its block
// J = j / blockSize is at most t's block I and active for it (block-rule.wgsl); causality within
// the blocks is flashAttention's. One invocation per (b, i, j), flat; the mask is int32 0 or 1,
// made on the GPU from the offsets there, where tfjs ops took about ten launches.
// needs common/grid.wgsl and block-rule.wgsl

struct Params {
  total: u32, // B·Tq·S
  Tq: u32,
  S: u32,
  blockSize: u32,
  localBlocks: u32,
  globalBlocks: u32,
  stride: u32,
}

@group(0) @binding(0) var<storage, read> queryOffsets: array<i32>; // [B]
@group(0) @binding(1) var<storage, read_write> mask: array<i32>; // [B, Tq, S]
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  let j = n % params.S;
  let i = (n / params.S) % params.Tq;
  let b = n / (params.S * params.Tq);
  let t = max(queryOffsets[b] + i32(i), 0);
  let I = u32(t) / params.blockSize;
  let J = j / params.blockSize;
  let blocks = BlockLayout(params.blockSize, params.localBlocks, params.globalBlocks, params.stride);
  mask[n] = select(0, 1, J <= I && blockActive(I, J, blocks));
}
