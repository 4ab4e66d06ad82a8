// CausalGeneration forward: y[b, t, :] = R(x[b, t, :], x[b, t-1, :]), and y[b, 0, :] = x[b, 0, :].
// One invocation per element (or four adjacent channels) of x [B, T, D], flat. With HAS_START (a
// prefill continuing a decode state) x[b, -1] is the state's `previous[b]`, as the step takes it:
// R(x[b, 0], previous[b]), or R(x[b, 0], x[b, 0]) for a row at position 0 (a negative one as 0).

// needs common/grid.wgsl, common/lanes-*.wgsl and reduce.wgsl

struct Params {
  total: u32, // B·T·D / lanes
  rowLen: u32, // T·D / lanes / lanes: elements per batch row
  width: u32, // D / lanes
}

override HAS_START: bool = false;

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> previous: array<V>; // [B, D], read with HAS_START
@group(0) @binding(2) var<storage, read> positions: array<i32>; // [B], read with HAS_START
@group(0) @binding(3) var<storage, read_write> y: array<V>; // [B, T, D]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let xt = x[i];
  let d = i % params.rowLen;
  if (d < params.width) {
    // a sequence's first token passes through, or continuing a state meets its last token
    if (HAS_START) {
      let b = i / params.rowLen;
      y[i] = reduce2(xt, select(xt, previous[b * params.width + d], positions[b] > 0));
    } else {
      y[i] = xt;
    }
  } else {
    y[i] = reduce2(xt, x[i - params.width]);
  }
}
