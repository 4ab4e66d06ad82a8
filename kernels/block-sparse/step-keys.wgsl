// A decode step's key lists (src/mixers/block-sparse/layer.ts): the keys the layout shows a query
// at position t = positions[b], ascending (visibleKeys in layout.ts), as rows of the cache, and
// their number, in one int buffer `listed` that the split-K decode reads as its `vis`
// (common/cache-tile.wgsl's KEY_LIST): counts[b] at b, then row b's list at B + b·M, key j being
// row b·S + j of the cache's B·S (zeros after the list). Key block J is active for query block
// I = t / blockSize where J is global (J < globalBlocks), local (I − J < localBlocks) or strided
// (stride > 0 and (I − J) mod stride = 0); its keys run to t at most. One invocation a row walks
// the blocks up to I: made on the GPU from the positions there, where a list made on the host
// was uploaded at every step.

// needs common/grid.wgsl and block-rule.wgsl

struct Params {
  B: u32,
  M: u32, // the longest row's keys, counted on the host
  S: u32, // the cache's rows a batch row
  blockSize: u32,
  localBlocks: u32,
  globalBlocks: u32,
  stride: u32,
}

@group(0) @binding(0) var<storage, read> positions: array<i32>; // [B]
@group(0) @binding(1) var<storage, read_write> listed: array<i32>; // [B + B·M]
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let b = flatIndex(wid, nwg, lid);
  if (b >= params.B) { return; }
  let t = u32(max(positions[b], 0));
  let I = t / params.blockSize;
  let blocks = BlockLayout(params.blockSize, params.localBlocks, params.globalBlocks, params.stride);
  let at = params.B + b * params.M;
  var n = 0u;
  for (var J = 0u; J <= I; J++) {
    if (!blockActive(I, J, blocks)) { continue; }
    let end = min(J * params.blockSize + params.blockSize, t + 1u);
    for (var j = J * params.blockSize; j < end; j++) {
      if (n < params.M) { listed[at + n] = i32(b * params.S + j); }
      n++;
    }
  }
  listed[b] = i32(n);
  for (var m = n; m < params.M; m++) { listed[at + m] = 0; }
}
