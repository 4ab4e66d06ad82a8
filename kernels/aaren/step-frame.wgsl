// Aaren's decode step, first launch (src/mixers/aaren/kernel.ts, AAREN_STEP): for each batch row
// b and head h, the token's score s = scale·q_h·k, the state's new max m' = max(m, s), and the two
// factors that move the old sums and the token into the frame of m',
//   f = (e^{m − m'}, e^{s − m'})        (e^{m − m'} = 0 for the empty state's m = −∞).
// A NaN or ±∞ in the token's k or v poisons the head: m' and both factors are NaN, and so is
// everything the second launch forms from them. A NaN or +∞ m (a poisoned state) gives NaN
// factors and m' = m, as the scan kernels give. It also writes each row's position plus one, the
// decode state's next positions (where tfjs's add took a launch of its own). An invocation per
// (b, h).

// needs common/grid.wgsl, common/float-bits.wgsl

struct Params {
  rows: u32, // B·H
  H: u32,
  K: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>; // [H, K]
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, 1, H, K]
@group(0) @binding(2) var<storage, read> v: array<f32>; // [B, 1, H, K]
@group(0) @binding(3) var<storage, read> m: array<f32>; // [B, H]
@group(0) @binding(4) var<storage, read> positions: array<i32>; // [B]
@group(0) @binding(5) var<storage, read_write> mNext: array<f32>; // [B, H]
@group(0) @binding(6) var<storage, read_write> factors: array<vec2<f32>>; // [B, H, 2]
@group(0) @binding(7) var<storage, read_write> nextPositions: array<i32>; // [B]
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = flatIndex(wid, nwg, lid);
  if (row >= params.rows) { return; }
  // B ≤ B·H invocations
  if (row < params.rows / params.H) { nextPositions[row] = positions[row] + 1; }
  let h = row % params.H;
  let at = row * params.K;
  var s = 0.0;
  var finite = true;
  for (var c = 0u; c < params.K; c++) {
    let kc = k[at + c];
    finite = finite && isFinite(kc) && isFinite(v[at + c]);
    s += q[h * params.K + c] * kc;
  }
  s *= params.scale;
  let old = m[row];
  if (!finite) {
    mNext[row] = nan();
    factors[row] = vec2<f32>(nan());
    return;
  }
  // the larger, or the NaN of a poisoned state (or of a NaN query)
  let top = larger(old, s);
  mNext[row] = top;
  if (!isFinite(top)) {
    factors[row] = vec2<f32>(nan());
    return;
  }
  let empty = bitcast<u32>(old) == bitcast<u32>(minusInfinity());
  factors[row] = vec2<f32>(select(exp(old - top), 0.0, empty), exp(s - top));
}
