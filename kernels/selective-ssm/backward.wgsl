// Selective scan, pass 3 of the backward: per chunk, the states rerun forwards from the
// state entering the chunk, then the adjoint run backwards from the one entering from the
// right, giving every gradient. One workgroup per (b, chunk, block of WE channels); dB and dC
// sum over channels, first across the workgroup here, then across blocks (common/sum-rows.wgsl).
//
// The one packed output `grads` (eight storage buffers is all WebGPU guarantees) holds:
//   [0, offDelta)          du             [B, T, E]
//   [offDelta, offZ)       d delta        [B, T, E]   (before bias and softplus)
//   [offZ, offChan)        dz             [B, T, E]   (when HAS_Z)
//   [offChan, offBC)       d chan parts   [E, N + 2, B·chunks]: dA | dD | d deltaBias per chunk
//   [offBC, ..)            d bc parts     [B, T, 2N, eBlocks]: dB | dC per channel block
// needs scan.wgsl and gate.wgsl

const WE: u32 = 32u; // channels per workgroup

@group(0) @binding(0) var<storage, read> u: array<f32>; // [B, T, E]
@group(0) @binding(1) var<storage, read> delta: array<f32>; // [B, T, E]
@group(0) @binding(2) var<storage, read> chan: array<f32>; // [E, N + 2]
@group(0) @binding(3) var<storage, read> bc: array<f32>; // [B, T, 2N]
@group(0) @binding(4) var<storage, read> z: array<f32>; // [B, T, E], read when HAS_Z
@group(0) @binding(5) var<storage, read> dOut: array<f32>; // [B, T, E]
@group(0) @binding(6) var<storage, read> carries: array<f32>; // [B, chunks, E, 2N]: entering state | adjoint
@group(0) @binding(7) var<storage, read_write> grads: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

// one step's dB (first L) and dC (last L) terms of every channel of the workgroup
var<workgroup> parts: array<f32, 2u * L * WE>;

fn chanPartAt(cell: Cell, j: u32) -> u32 {
  return params.offChan + (cell.e * (params.N + 2u) + j) * (params.B * params.chunks) + cell.b * params.chunks + cell.c;
}

@compute @workgroup_size(WE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= params.B * params.chunks * params.eBlocks) { return; }
  let block = w % params.eBlocks;
  let bc0 = w / params.eBlocks;
  let e = block * WE + lid;
  let inside = e < params.E;
  // channels past E rerun the last one so every invocation reaches the barriers; none of it is kept
  let cell = cellAt(bc0 / params.chunks, bc0 % params.chunks, min(e, params.E - 1u));
  let N = params.N;
  let d = chan[chanAt(cell.e, N)];
  let bias = chan[chanAt(cell.e, N + 1u)];
  var dts: array<f32, L>;
  var us: array<f32, L>;
  var xs: array<f32, L>; // Δ·u
  var dys: array<f32, L>; // dOut·silu(z)
  var ys: array<f32, L>; // Σ_n h·C
  var dus: array<f32, L>;
  var ddts: array<f32, L>; // dL/dΔ
  var decayed: array<f32, L>; // exp(Δ·A)·h[t−1]
  var decays: array<f32, L>; // exp(Δ·A)
  for (var s = 0u; s < cell.len; s++) {
    let j = seqAt(cell, s);
    dts[s] = stepSize(delta[j] + bias);
    us[s] = u[j];
    xs[s] = dts[s] * us[s];
    dys[s] = strongTimes(dOut[j], gate(j));
    ys[s] = 0.0;
    dus[s] = 0.0;
    ddts[s] = 0.0;
  }
  let row = ((cell.b * params.chunks + cell.c) * params.E + cell.e) * 2u * N;
  for (var n = 0u; n < N; n++) {
    let a = chan[chanAt(cell.e, n)];
    var h = carries[row + n];
    for (var s = 0u; s < cell.len; s++) {
      let k = bcAt(cell, s);
      decays[s] = exp(dts[s] * a);
      decayed[s] = decays[s] * h;
      h = decayed[s] + xs[s] * bc[k + n];
      ys[s] += h * bc[k + N + n];
    }
    var r = carries[row + N + n]; // exp(Δ[t+1]·A)·g[t+1] at the chunk's end
    var dA = 0.0;
    for (var k = 0u; k < cell.len; k++) {
      let s = cell.len - 1u - k;
      let bn = bc[bcAt(cell, s) + n];
      let g = strongTimes(dys[s], bc[bcAt(cell, s) + N + n]) + r;
      parts[s * WE + lid] = select(0.0, g * xs[s], inside);
      parts[(L + s) * WE + lid] = select(0.0, strongTimes(dys[s], decayed[s] + xs[s] * bn), inside);
      dus[s] += g * dts[s] * bn;
      ddts[s] += strongTimes(g, a * decayed[s] + us[s] * bn);
      dA += strongTimes(g, dts[s] * decayed[s]);
      r = strongTimes(g, decays[s]);
    }
    if (inside) { grads[chanPartAt(cell, n)] = dA; }
    workgroupBarrier();
    for (var p = lid; p < 2u * L; p += WE) {
      let s = p % L;
      if (s < cell.len) {
        var sum = 0.0;
        for (var j = 0u; j < WE; j++) { sum += parts[p * WE + j]; }
        let which = select(n, N + n, p >= L);
        grads[params.offBC + ((cell.b * params.T + cell.t0 + s) * 2u * N + which) * params.eBlocks + block] = sum;
      }
    }
    workgroupBarrier();
  }
  if (!inside) { return; }
  var dD = 0.0;
  var dBias = 0.0;
  for (var s = 0u; s < cell.len; s++) {
    let j = seqAt(cell, s);
    let pre = delta[j] + bias;
    let dPre = strongTimes(ddts[s], select(1.0, sigmoid(pre), SOFTPLUS));
    grads[j] = dus[s] + d * dys[s];
    grads[params.offDelta + j] = dPre;
    if (HAS_Z) {
      let g = z[j];
      let sg = sigmoid(g);
      grads[params.offZ + j] = strongTimes(dOut[j], (ys[s] + d * us[s]) * sg * (1.0 + g * (1.0 - sg)));
    }
    dD += strongTimes(dys[s], us[s]);
    dBias += dPre;
  }
  grads[chanPartAt(cell, N)] = dD;
  grads[chanPartAt(cell, N + 1u)] = dBias;
}
