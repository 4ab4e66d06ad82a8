// Scan pass 3 of the backward: per chunk, the states rerun forwards from the state entering the
// chunk, then the adjoint g run backwards from the one entering from the right. One workgroup
// per (row, chunk, block of WE channels). Per step and state it forms
//   part 0: g·x        (d inN)          part 1: dy·h     (d outN)
//   part 2: g·exp(logDecay)·h[t−1]      (d logDecay, when PARTS is 3: a decay that depends on the
//                                        step and state only)
// and sums them over the channels, first across the workgroup here, then across blocks
// (the mixer's split-grads.wgsl, with part-sums.wgsl), into grads at the hooks' partAt (as their keptPart gives it: 0 where the
// mixer reads an input as 0). Per step it sums over the states
// dxs = Σ_n g·inN (d x), and hands each d logDecay to onDecay; finishGrads writes the rest.
// needs the hooks, scan.wgsl and the backward hooks

const WE: u32 = 32u; // channels per workgroup

@group(0) @binding(INPUTS) var<storage, read> dOut: array<f32>; // indexed by seqAt
@group(0) @binding(INPUTS + 1u) var<storage, read> carries: array<f32>; // [rows, chunks, ·], width 2N: entering state | adjoint
@group(0) @binding(INPUTS + 2u) var<storage, read_write> grads: array<f32>; // the hooks' packed gradients
@group(0) @binding(INPUTS + 3u) var<uniform> params: Params;

// one state's parts of every step and channel of the workgroup
var<workgroup> parts: array<f32, PARTS * L * WE>;

// per step of the cell, for the backward hooks: x, dy, y = Σ_n h·outN, and d x
var<private> xs: array<f32, L>;
var<private> dys: array<f32, L>;
var<private> ys: array<f32, L>;
var<private> dxs: array<f32, L>;

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
  for (var s = 0u; s < cell.len; s++) {
    xs[s] = prepare(cell, s);
    dys[s] = outAdjoint(cell, s, dOut[seqAt(cell, s)]);
    ys[s] = 0.0;
    dxs[s] = 0.0;
  }
  let row = cell.b * params.chunks + cell.c;
  var decays: array<f32, L>; // exp(logDecay)
  var decayed: array<f32, L>; // exp(logDecay)·h[t−1]
  var hs: array<f32, L>;
  for (var n = 0u; n < N; n++) {
    var h = carries[stateIndex(row, cell.e, n, 2u * N)];
    for (var s = 0u; s < cell.len; s++) {
      decays[s] = exp(logDecay(cell, s, n));
      decayed[s] = decays[s] * h;
      h = decayed[s] + xs[s] * inN(cell, s, n);
      hs[s] = h;
      ys[s] += h * outN(cell, s, n);
    }
    var r = carries[stateIndex(row, cell.e, N + n, 2u * N)]; // exp(logDecay[t+1])·g[t+1] at the chunk's end
    for (var k = 0u; k < cell.len; k++) {
      let s = cell.len - 1u - k;
      let g = strongTimes(dys[s], outN(cell, s, n)) + r;
      let dl = strongTimes(g, decayed[s]);
      parts[s * WE + lid] = select(0.0, g * xs[s], inside);
      parts[(L + s) * WE + lid] = select(0.0, strongTimes(dys[s], hs[s]), inside);
      if (PARTS > 2u) { parts[(2u * L + s) * WE + lid] = select(0.0, dl, inside); }
      dxs[s] += strongTimes(g, inN(cell, s, n));
      onDecay(cell, s, n, dl);
      r = strongTimes(g, decays[s]);
    }
    if (inside) { afterState(cell, n); }
    workgroupBarrier();
    for (var p = lid; p < PARTS * L; p += WE) {
      let s = p % L;
      if (s < cell.len) {
        var sum = 0.0;
        for (var j = 0u; j < WE; j++) { sum += parts[p * WE + j]; }
        grads[partAt(cell, s, p / L, n, block)] = keptPart(cell, s, p / L, n, sum);
      }
    }
    workgroupBarrier();
  }
  if (inside) { finishGrads(cell); }
}
