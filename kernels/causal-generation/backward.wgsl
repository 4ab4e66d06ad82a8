// CausalGeneration backward: dx[t] = dy[t]·∂y[t]/∂x[t] + dy[t+1]·∂y[t+1]/∂x[t].
// min/max route to the selected argument (a tie goes to x[t]); mean sends half to each.
// One invocation per element (or four adjacent channels) of x [B, T, D].

// needs common/grid.wgsl, common/lanes-*.wgsl and reduce.wgsl

struct Params {
  total: u32, // B·T·D / lanes
  rowLen: u32, // T·D / lanes
  width: u32, // D / lanes
}

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> dy: array<V>; // [B, T, D]
@group(0) @binding(2) var<storage, read_write> dx: array<V>; // [B, T, D]
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let pos = i % params.rowLen; // t·D + d
  let xt = x[i];
  var g = dy[i];
  if (pos >= params.width) {
    g *= selfWeight(xt, x[i - params.width]);
  }
  if (pos + params.width < params.rowLen) {
    let j = i + params.width;
    g += dy[j] * (1.0 - selfWeight(x[j], xt));
  }
  dx[i] = g;
}
