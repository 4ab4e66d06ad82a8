// Selective scan, pass 3 of the forward: each chunk rerun from the state entering it,
// out = (Σ_n h·C + D·u)·silu(z).
// needs common/grid.wgsl, scan.wgsl and gate.wgsl

@group(0) @binding(0) var<storage, read> u: array<f32>; // [B, T, E]
@group(0) @binding(1) var<storage, read> delta: array<f32>; // [B, T, E]
@group(0) @binding(2) var<storage, read> chan: array<f32>; // [E, N + 2]
@group(0) @binding(3) var<storage, read> bc: array<f32>; // [B, T, 2N]
@group(0) @binding(4) var<storage, read> z: array<f32>; // [B, T, E], read when HAS_Z
@group(0) @binding(5) var<storage, read> entering: array<f32>; // [B, chunks, E, N]
@group(0) @binding(6) var<storage, read_write> out: array<f32>; // [B, T, E]
@group(0) @binding(7) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.chunks * params.E) { return; }
  let cell = cellOf(i);
  let N = params.N;
  let bias = chan[chanAt(cell.e, N + 1u)];
  var dts: array<f32, L>;
  var xs: array<f32, L>; // Δ·u
  var ys: array<f32, L>;
  for (var s = 0u; s < cell.len; s++) {
    let dt = stepSize(delta[seqAt(cell, s)] + bias);
    dts[s] = dt;
    xs[s] = dt * u[seqAt(cell, s)];
    ys[s] = 0.0;
  }
  for (var n = 0u; n < N; n++) {
    let a = chan[chanAt(cell.e, n)];
    var h = entering[chunkStateAt(cell, n)];
    for (var s = 0u; s < cell.len; s++) {
      let k = bcAt(cell, s);
      h = exp(dts[s] * a) * h + xs[s] * bc[k + n];
      ys[s] += h * bc[k + N + n];
    }
  }
  let d = chan[chanAt(cell.e, N)];
  for (var s = 0u; s < cell.len; s++) {
    let j = seqAt(cell, s);
    out[j] = (ys[s] + d * u[j]) * gate(j);
  }
}
