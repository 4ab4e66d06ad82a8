// Aaren's inputs to the scan kernels (src/mixers/aaren/kernel.ts), in one launch where tfjs ops
// take some twenty: for each batch row b and head h, the scores s_t = scale·q_h·k_t (k's NaN and
// ±∞ read as 0, a padded token's score HIDDEN below it), the frame (the running max of m_init
// and the scores, floored at HIDDEN, so that every gate is finite) and, in it,
//   key_t = e^{s_t − m_t}·real_t      gate_t = m_{t−1} − m_t
// with m_{−1} the floored m_init; and the unfloored max m_T of (m_init, s_0, …, s_{T−1}) with
// move = e^{m_{T−1} − m_T} (1 where m_T is not finite), which moves the final state from the
// frame to m_T. A NaN propagates from the first on, as tfjs's maximum propagates it; where the
// frame is NaN or +∞, the key and the gate are NaN.
// A workgroup per row (b, h) (row-runs.wgsl): each invocation takes a run of tokens and keeps
// their scores in `key` until it rewrites them; the runs' maxima meet in workgroup memory, and
// each run is rescanned from the maximum of the runs before it.

// needs common/float-bits.wgsl, row-runs.wgsl

struct Params {
  rows: u32,
  T: u32,
  H: u32,
  K: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>; // [H, K]
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, T, H, K]
@group(0) @binding(2) var<storage, read> mInit: array<f32>; // [B, H], or a stand-in without HAS_INIT
@group(0) @binding(3) var<storage, read> real: array<f32>; // [B, T], or a stand-in without HAS_REAL
@group(0) @binding(4) var<storage, read_write> key: array<f32>; // [B, T, H, 1]
@group(0) @binding(5) var<storage, read_write> gate: array<f32>; // [B, T, H, 1]
@group(0) @binding(6) var<storage, read_write> mLast: array<f32>; // [B, H]
@group(0) @binding(7) var<storage, read_write> moveBy: array<f32>; // [B, H]
@group(0) @binding(8) var<uniform> params: Params;

// whether m_init is given (otherwise −∞, the empty state's) and whether tokens may be padding
override HAS_INIT: bool = false;
override HAS_REAL: bool = false;
// src/tensors.ts's hiddenScore() on a float32 backend: the frame's floor and a padded token's score
const HIDDEN: f32 = -1e30;

var<workgroup> runs: array<f32, WG>;

fn score(b: u32, t: u32, h: u32) -> f32 {
  let at = ((b * params.T + t) * params.H + h) * params.K;
  var s = 0.0;
  for (var c = 0u; c < params.K; c++) {
    let x = k[at + c];
    s += q[h * params.K + c] * select(0.0, x, isFinite(x));
  }
  s *= params.scale;
  if (HAS_REAL) { s += (1.0 - real[b * params.T + t]) * HIDDEN; }
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = workgroupRow(wid, nwg);
  if (row >= params.rows) { return; }
  let b = row / params.H;
  let h = row % params.H;
  let run = tokenRun(lid);
  let first = run.x;
  let end = run.y;
  // the scores, kept in `key`, and this run's max
  var m = minusInfinity();
  for (var t = first; t < end; t++) {
    let s = score(b, t, h);
    key[(b * params.T + t) * params.H + h] = s;
    m = larger(m, s);
  }
  runs[lid] = m;
  workgroupBarrier();
  var before = select(minusInfinity(), mInit[row], HAS_INIT);
  if (lid == WG - 1u) {
    var all = before;
    for (var r = 0u; r < WG; r++) { all = larger(all, runs[r]); }
    let last = larger(HIDDEN, all);
    mLast[row] = all;
    moveBy[row] = select(1.0, exp(last - all), isFinite(all));
  }
  for (var r = 0u; r < lid; r++) { before = larger(before, runs[r]); }
  before = larger(HIDDEN, before);
  for (var t = first; t < end; t++) {
    let at = (b * params.T + t) * params.H + h;
    let s = key[at];
    let after = larger(before, s);
    var weight = exp(s - after);
    if (HAS_REAL) { weight *= real[b * params.T + t]; }
    // a NaN or +∞ frame (from m_init or a score) makes both NaN, which exp and a difference
    // need not do: the scan then poisons what the reference's e^{m − m} = NaN reaches
    let bad = !isFinite(after);
    key[at] = select(weight, nan(), bad);
    gate[at] = select(before - after, nan(), bad);
    before = after;
  }
}
