// GatedLinearAttention's decode step (src/mixers/gated-linear-attention/kernel.ts): one token
// through the recurrence, for each batch row b, head h and value channel e,
//   S'[n, e] = exp(g_n)·S[n, e] + k_n·v_e        o_e = Σ_n scale·q_n·S'[n, e],
// and its poison in the same launch, where the scan's step and seen kernels took two: a NaN or
// ±∞ in the token's k, v or g of the head, or a g > 0, makes the head's outputs and state NaN;
// one in q its outputs only. With GATE_LOW_RANK, g is formed here from the forget gate's low-rank
// features: z = low·up + bias, g = logsigmoid(z)/normalizer (log-gate-math.wgsl), where the up
// projection and the log gate took a launch each. An invocation per (b, h, e).

// needs common/grid.wgsl, common/float-bits.wgsl, log-gate-math.wgsl

struct Params {
  rows: u32, // B·H
  H: u32,
  K: u32,
  V: u32,
  scale: f32,
  normalizer: f32, // with GATE_LOW_RANK
  rank: u32, // with GATE_LOW_RANK
}

@group(0) @binding(0) var<storage, read> q: array<f32>; // [B, 1, H, K]
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, 1, H, K]
@group(0) @binding(2) var<storage, read> v: array<f32>; // [B, 1, H, V]
@group(0) @binding(3) var<storage, read> g: array<f32>; // [B, 1, H, K] log gates, or with GATE_LOW_RANK low [B, rank]
@group(0) @binding(4) var<storage, read> up: array<f32>; // [rank + 1, H·K] with GATE_LOW_RANK (the bias last), else a stand-in
@group(0) @binding(5) var<storage, read> state: array<f32>; // [B, H, K, V]
@group(0) @binding(6) var<storage, read_write> out: array<f32>; // [B, 1, H, V]
@group(0) @binding(7) var<storage, read_write> next: array<f32>; // [B, H, K, V]
@group(0) @binding(8) var<uniform> params: Params;

override GATE_LOW_RANK: bool = false;

// the log gate of key channel n of row b·H + h
fn logGate(row: u32, n: u32) -> f32 {
  if (!GATE_LOW_RANK) { return g[row * params.K + n]; }
  let width = params.H * params.K;
  let column = (row % params.H) * params.K + n;
  let low = (row / params.H) * params.rank;
  var z = up[params.rank * width + column];
  for (var j = 0u; j < params.rank; j++) { z += g[low + j] * up[j * width + column]; }
  return logGateOf(z, params.normalizer);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.rows * params.V) { return; }
  let row = i / params.V;
  let e = i % params.V;
  // at T = 1 the token of (b, h) is row b·H + h
  let keys = row * params.K;
  let values = row * params.V;
  let states = row * params.K * params.V + e;
  var bad = false;
  for (var c = 0u; c < params.V; c++) { bad = bad || !isFinite(v[values + c]); }
  for (var n = 0u; n < params.K; n++) {
    let gn = logGate(row, n);
    // a log gate > 0 is bad too (compared once it is known finite: no NaN meets the comparison)
    bad = bad || !isFinite(k[keys + n]) || !isFinite(gn) || gn > 0.0;
  }
  if (bad) {
    for (var n = 0u; n < params.K; n++) { next[states + n * params.V] = nan(); }
    out[values + e] = nan();
    return;
  }
  let ve = v[values + e];
  var y = 0.0;
  var qBad = false;
  for (var n = 0u; n < params.K; n++) {
    let at = states + n * params.V;
    let h = exp(logGate(row, n)) * state[at] + k[keys + n] * ve;
    next[at] = h;
    let qn = q[keys + n];
    qBad = qBad || !isFinite(qn);
    y += h * (params.scale * qn);
  }
  out[values + e] = select(y, nan(), qBad);
}
