// The scan in one pass: one invocation per (row, e) walks the chunks in order, its N states
// carried from one chunk to the next in `state`, the final state's own buffer. It serves a
// forward where no gradient is recorded on a CPU adapter (SwiftShader), where the parallel
// passes compute each step twice (chunk-states.wgsl, then forward.wgsl) and carry between, and
// rows·E invocations are work enough for a few cores; and the decode step (T = 1, from the
// state). It saves nothing for a backward.
// needs common/grid.wgsl, the hooks and scan.wgsl

override HAS_START: bool = false;

@group(0) @binding(INPUTS) var<storage, read> start: array<f32>; // [rows, ·], read when HAS_START
@group(0) @binding(INPUTS + 1u) var<storage, read_write> out: array<f32>; // indexed by seqAt
@group(0) @binding(INPUTS + 2u) var<storage, read_write> state: array<f32>; // [rows, ·]
@group(0) @binding(INPUTS + 3u) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.E) { return; }
  let b = i / params.E;
  let e = i % params.E;
  for (var n = 0u; n < params.N; n++) {
    let at = stateIndex(b, e, n, params.N);
    state[at] = select(0.0, start[at], HAS_START);
  }
  var xs: array<f32, L>;
  var ys: array<f32, L>;
  for (var c = 0u; c < params.chunks; c++) {
    let cell = cellAt(b, c, e);
    for (var s = 0u; s < cell.len; s++) {
      xs[s] = prepare(cell, s);
      ys[s] = 0.0;
    }
    for (var n = 0u; n < params.N; n++) {
      let at = stateIndex(b, e, n, params.N);
      var h = state[at];
      for (var s = 0u; s < cell.len; s++) {
        h = exp(logDecay(cell, s, n)) * h + xs[s] * inN(cell, s, n);
        ys[s] += h * outN(cell, s, n);
      }
      state[at] = h;
    }
    for (var s = 0u; s < cell.len; s++) { out[seqAt(cell, s)] = finish(cell, s, ys[s]); }
  }
}
