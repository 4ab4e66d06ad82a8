// SelectiveSSM's per-channel table for the scan kernels, chan = A | D | deltaBias `[E, N + 2]`
// with A = −exp(ALog), from the layer's weights in one launch where an exp, a negation and a
// concat took three (src/mixers/selective-ssm/kernel.ts); an invocation per entry.
// needs common/grid.wgsl

struct Params {
  // E·(N + 2)
  total: u32,
  N: u32,
}

@group(0) @binding(0) var<storage, read> aLog: array<f32>; // [E, N]
@group(0) @binding(1) var<storage, read> d: array<f32>; // [E]
@group(0) @binding(2) var<storage, read> bias: array<f32>; // [E]
@group(0) @binding(3) var<storage, read_write> chan: array<f32>; // [E, N + 2]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let e = i / (params.N + 2u);
  let n = i % (params.N + 2u);
  if (n < params.N) {
    chan[i] = -exp(aLog[e * params.N + n]);
  } else {
    chan[i] = select(bias[e], d[e], n == params.N);
  }
}
