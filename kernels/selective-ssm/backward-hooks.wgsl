// SelectiveSSM's backward hooks (after scan/backward.wgsl's declarations). The one packed output
// `grads` (eight storage buffers is all WebGPU guarantees) holds:
//   [0, offDelta)          du             [B, T, E]
//   [offDelta, offZ)       d delta        [B, T, E]   (before bias and softplus)
//   [offZ, offChan)        dz             [B, T, E]   (when HAS_Z)
//   [offChan, offBC)       d chan parts   [E, N + 2, B·chunks]: dA | dD | d deltaBias per chunk
//   [offBC, ..)            d bc parts     [B, T, 2N, eBlocks]: dB | dC per channel block

// Δ's decay depends on the channel, so its gradient is summed here, not across channels
const PARTS: u32 = 2u;

var<private> dLogDecayA: array<f32, L>; // Σ_n d logDecay·A[e, n] per step
var<private> dA: f32; // Σ_t d logDecay·Δ for the current state

fn chanPartAt(cell: Cell, j: u32) -> u32 {
  return params.offChan + (cell.e * (params.N + 2u) + j) * (params.B * params.chunks) + cell.b * params.chunks + cell.c;
}

fn partAt(cell: Cell, s: u32, p: u32, n: u32, block: u32) -> u32 {
  return params.offBC + ((cell.b * params.T + cell.t0 + s) * 2u * params.N + p * params.N + n) * params.eBlocks + block;
}

fn keptPart(cell: Cell, s: u32, p: u32, n: u32, sum: f32) -> f32 {
  return sum;
}

fn onDecay(cell: Cell, s: u32, n: u32, dl: f32) {
  if (s == cell.len - 1u) { dA = 0.0; } // the first step of the reverse loop: a new state
  if (n == 0u) { dLogDecayA[s] = 0.0; }
  dLogDecayA[s] += strongTimes(dl, chan[chanAt(cell.e, n)]);
  dA += strongTimes(dl, dts[s]);
}

fn afterState(cell: Cell, n: u32) {
  grads[chanPartAt(cell, n)] = dA;
}

fn finishGrads(cell: Cell) {
  let N = params.N;
  let d = chan[chanAt(cell.e, N)];
  let bias = chan[chanAt(cell.e, N + 1u)];
  var dD = 0.0;
  var dBias = 0.0;
  for (var s = 0u; s < cell.len; s++) {
    let j = seqAt(cell, s);
    let pre = delta[j] + bias;
    let ddt = dLogDecayA[s] + strongTimes(dxs[s], us[s]);
    let dPre = strongTimes(ddt, select(1.0, sigmoid(pre), SOFTPLUS));
    grads[j] = dxs[s] * dts[s] + d * dys[s];
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
