// Selective scan, one decode step per (b, e): h' = exp(Δ·A)·h + Δ·u·B, out = (h'·C + D·u)·silu(z).
// needs common/grid.wgsl, scan.wgsl and gate.wgsl (T = 1: u, delta and z are [B, E], bc is [B, 2N])

@group(0) @binding(0) var<storage, read> u: array<f32>; // [B, E]
@group(0) @binding(1) var<storage, read> delta: array<f32>; // [B, E]
@group(0) @binding(2) var<storage, read> chan: array<f32>; // [E, N + 2]
@group(0) @binding(3) var<storage, read> bc: array<f32>; // [B, 2N]
@group(0) @binding(4) var<storage, read> z: array<f32>; // [B, E], read when HAS_Z
@group(0) @binding(5) var<storage, read> state: array<f32>; // [B, E, N]
@group(0) @binding(6) var<storage, read_write> out: array<f32>; // [B, E]
@group(0) @binding(7) var<storage, read_write> next: array<f32>; // [B, E, N]
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.E) { return; }
  let N = params.N;
  let e = i % params.E;
  let k = (i / params.E) * 2u * N;
  let dt = stepSize(delta[i] + chan[chanAt(e, N + 1u)]);
  let x = dt * u[i];
  var y = 0.0;
  for (var n = 0u; n < N; n++) {
    let h = exp(dt * chan[chanAt(e, n)]) * state[i * N + n] + x * bc[k + n];
    next[i * N + n] = h;
    y += h * bc[k + N + n];
  }
  out[i] = (y + chan[chanAt(e, N)] * u[i]) * gate(i);
}
