// Aaren's frame on the scan kernels (src/mixers/aaren/kernel.ts): along each row of x [rows, n]
// (m_init, then the scores), the running max floored at HIDDEN, in one launch where tfjs ops
// take four a doubling. A NaN propagates as tfjs's maximum propagates it: from the first on.
// A workgroup per row, folded into x and y past 65535 rows: each invocation takes a run of
// ceil(n / WG) values, the runs' maxima meet in workgroup memory, and each run is rescanned from
// the maximum of the runs before it.

struct Params {
  rows: u32,
  n: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>; // [rows, n]
@group(0) @binding(1) var<storage, read_write> frame: array<f32>; // [rows, n]
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 64u;
// src/mixers/aaren/reference.ts's HIDDEN: the frame's floor, so that every gate is finite
const HIDDEN: f32 = -1e30;

var<workgroup> runs: array<f32, WG>;

// by its bits: a shader compiler may assume that no float is NaN
fn isNan(a: f32) -> bool {
  return (bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u;
}

// the larger of a and b, or the NaN if either is one
fn larger(a: f32, b: f32) -> f32 {
  return select(select(max(a, b), b, isNan(b)), a, isNan(a));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= params.rows) { return; }
  let per = (params.n + WG - 1u) / WG;
  let first = row * params.n + min(lid * per, params.n);
  let end = row * params.n + min((lid + 1u) * per, params.n);
  var m = HIDDEN;
  for (var j = first; j < end; j++) { m = larger(m, x[j]); }
  runs[lid] = m;
  workgroupBarrier();
  var before = HIDDEN;
  for (var r = 0u; r < lid; r++) { before = larger(before, runs[r]); }
  for (var j = first; j < end; j++) {
    before = larger(before, x[j]);
    frame[j] = before;
  }
}
