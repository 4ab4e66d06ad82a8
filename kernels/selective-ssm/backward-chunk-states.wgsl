// Selective scan, pass 1 of the backward: the adjoint g[t] = dy[t]·C[t] + exp(Δ[t+1]·A)·g[t+1]
// run backwards through each chunk from 0 at its end; writes what leaves the chunk to the
// left, exp(Δ[t0]·A)·g[t0], per (b, c, e, n). dy = dOut·silu(z).
// needs common/grid.wgsl, scan.wgsl and gate.wgsl

@group(0) @binding(0) var<storage, read> dOut: array<f32>; // [B, T, E]
@group(0) @binding(1) var<storage, read> z: array<f32>; // [B, T, E], read when HAS_Z
@group(0) @binding(2) var<storage, read> delta: array<f32>; // [B, T, E]
@group(0) @binding(3) var<storage, read> chan: array<f32>; // [E, N + 2]
@group(0) @binding(4) var<storage, read> bc: array<f32>; // [B, T, 2N]
@group(0) @binding(5) var<storage, read_write> ends: array<f32>; // [B, chunks, E, N]
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.chunks * params.E) { return; }
  let cell = cellOf(i);
  let N = params.N;
  let bias = chan[chanAt(cell.e, N + 1u)];
  var dts: array<f32, L>;
  var dys: array<f32, L>;
  for (var s = 0u; s < cell.len; s++) {
    let j = seqAt(cell, s);
    dts[s] = stepSize(delta[j] + bias);
    dys[s] = strongTimes(dOut[j], gate(j));
  }
  for (var n = 0u; n < N; n++) {
    let a = chan[chanAt(cell.e, n)];
    var r = 0.0;
    for (var k = 0u; k < cell.len; k++) {
      let s = cell.len - 1u - k;
      r = strongTimes(strongTimes(dys[s], bc[bcAt(cell, s) + N + n]) + r, exp(dts[s] * a));
    }
    ends[chunkStateAt(cell, n)] = r;
  }
}
