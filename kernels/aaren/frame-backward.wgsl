// The gradient of frame.wgsl's outputs in the scores, in one launch where tfjs ops take some
// twenty: for each row (b, h), ds_t = dKey_t·key_t, plus, at the first maximiser, m_T's gradient
// dM = dMax − move·dMove (dMax alone where m_T is not finite: move is then a constant 1), or 0
// without HAS_ENDS (no gradient reaches m_T or move; `ends` is then a stand-in). The
// first maximiser is the last token where the frame rises (a gate < 0), or m_init if none does,
// which then takes dM. A workgroup per row (b, h) (row-runs.wgsl): each invocation finds the last
// rise in its run of tokens, the runs meet in workgroup memory, and each writes its run's ds.

// needs common/float-bits.wgsl, row-runs.wgsl

struct Params {
  rows: u32,
  T: u32,
  H: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>; // [B, T, H, 1]
@group(0) @binding(1) var<storage, read> key: array<f32>; // [B, T, H, 1]
@group(0) @binding(2) var<storage, read> dKey: array<f32>; // [B, T, H, 1]
// [B, H, 4]: m_T, move, dMax, dMove, read with HAS_ENDS (floats, not quads: a stand-in may hold one)
@group(0) @binding(3) var<storage, read> ends: array<f32>;
@group(0) @binding(4) var<storage, read_write> ds: array<f32>; // [B, T, H, 1]
@group(0) @binding(5) var<storage, read_write> dmInit: array<f32>; // [B, H]
@group(0) @binding(6) var<uniform> params: Params;

override HAS_ENDS: bool = true;

var<workgroup> rises: array<i32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = workgroupRow(wid, nwg);
  if (row >= params.rows) { return; }
  let b = row / params.H;
  let h = row % params.H;
  let run = tokenRun(lid);
  var last = -1;
  for (var t = run.x; t < run.y; t++) {
    if (gate[(b * params.T + t) * params.H + h] < 0.0) { last = i32(t); }
  }
  rises[lid] = last;
  workgroupBarrier();
  var rise = -1;
  for (var r = 0u; r < WG; r++) { rise = max(rise, rises[r]); }
  var dM = 0.0;
  if (HAS_ENDS) {
    let e = vec4<f32>(ends[4u * row], ends[4u * row + 1u], ends[4u * row + 2u], ends[4u * row + 3u]);
    dM = e.z - select(0.0, e.y * e.w, isFinite(e.x));
  }
  if (lid == 0u) { dmInit[row] = select(0.0, dM, rise < 0); }
  for (var t = run.x; t < run.y; t++) {
    let at = (b * params.T + t) * params.H + h;
    ds[at] = dKey[at] * key[at] + select(0.0, dM, i32(t) == rise);
  }
}
