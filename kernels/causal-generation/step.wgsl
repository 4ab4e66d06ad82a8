// CausalGeneration decode step: y = R(x, previous) for one token per sequence, [B, D], a row at
// position 0 (a negative one counting as 0) being its own predecessor (previous := x); and each
// row's next position, position + 1, the decode state's.

// needs common/grid.wgsl, common/lanes-*.wgsl and reduce.wgsl

struct Params {
  total: u32, // B·D / lanes
  width: u32, // D / lanes
}

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, D]
@group(0) @binding(1) var<storage, read> previous: array<V>; // [B, D]
@group(0) @binding(2) var<storage, read> positions: array<i32>; // [B]: tokens each row saw before x
@group(0) @binding(3) var<storage, read_write> y: array<V>; // [B, D]
@group(0) @binding(4) var<storage, read_write> nextPositions: array<i32>; // [B]
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let b = i / params.width;
  let position = max(positions[b], 0);
  if (i % params.width == 0u) { nextPositions[b] = position + 1; }
  let xt = x[i];
  y[i] = reduce2(xt, select(xt, previous[i], position > 0));
}
