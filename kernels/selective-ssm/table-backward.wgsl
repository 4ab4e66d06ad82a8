// The gradient of table.wgsl's chan = −exp(ALog) | D | deltaBias in the three weights, in one
// launch where tfjs's gradients of the concat and the exp took five: dALog = dA·(−exp(ALog)),
// dD and d deltaBias the table's last two columns. An invocation per entry of the table.
// needs common/grid.wgsl

struct Params {
  // E·(N + 2)
  total: u32,
  N: u32,
}

@group(0) @binding(0) var<storage, read> aLog: array<f32>; // [E, N]
@group(0) @binding(1) var<storage, read> dChan: array<f32>; // [E, N + 2]
@group(0) @binding(2) var<storage, read_write> dALog: array<f32>; // [E, N]
@group(0) @binding(3) var<storage, read_write> dD: array<f32>; // [E]
@group(0) @binding(4) var<storage, read_write> dBias: array<f32>; // [E]
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let e = i / (params.N + 2u);
  let n = i % (params.N + 2u);
  let g = dChan[i];
  if (n < params.N) {
    dALog[e * params.N + n] = g * -exp(aLog[e * params.N + n]);
  } else if (n == params.N) {
    dD[e] = g;
  } else {
    dBias[e] = g;
  }
}
