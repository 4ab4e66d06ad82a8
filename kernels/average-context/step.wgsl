// AverageContext decode step for one token per sequence, [B, D]:
//   sum' = sum + x,  y = C(x, previous, sum' / (position + 1)),
// with previous := x at position 0, each row at its own position (a negative one counting as
// 0). Writes y, sum' and each row's next position, position + 1, the decode state's.
// needs common/grid.wgsl, common/lanes-*.wgsl and combine.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, D]
@group(0) @binding(1) var<storage, read> previous: array<V>; // [B, D]
@group(0) @binding(2) var<storage, read> sum: array<V>; // [B, D]
@group(0) @binding(3) var<storage, read> positions: array<i32>; // [B]: tokens each row saw before this one
@group(0) @binding(4) var<storage, read_write> y: array<V>; // [B, D]
@group(0) @binding(5) var<storage, read_write> nextSum: array<V>; // [B, D]
@group(0) @binding(6) var<storage, read_write> nextPositions: array<i32>; // [B]
@group(0) @binding(7) var<uniform> step: StepParams;

struct StepParams {
  total: u32, // B·D / lanes
  width: u32, // D / lanes
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= step.total) { return; }
  let position = u32(max(positions[i / step.width], 0));
  if (i % step.width == 0u) { nextPositions[i / step.width] = i32(position + 1u); }
  let xt = x[i];
  let s = sum[i] + xt;
  nextSum[i] = s;
  let p = select(xt, previous[i], position > 0u);
  y[i] = combine3(xt, p, s / f32(position + 1u));
}
