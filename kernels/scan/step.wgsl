// One decode step per (row, e): h' = exp(logDecay)·h + x·inN, out = finish(Σ_n h'·outN): the
// recurrence at T = 1, so the hooks index a one-step cell.
// needs common/grid.wgsl, the hooks and scan.wgsl

@group(0) @binding(INPUTS) var<storage, read> state: array<f32>; // [rows, ·]
@group(0) @binding(INPUTS + 1u) var<storage, read_write> out: array<f32>; // indexed by seqAt
@group(0) @binding(INPUTS + 2u) var<storage, read_write> next: array<f32>; // [rows, ·]
@group(0) @binding(INPUTS + 3u) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.E) { return; }
  let cell = cellAt(i / params.E, 0u, i % params.E);
  let x = prepare(cell, 0u);
  var y = 0.0;
  for (var n = 0u; n < params.N; n++) {
    let at = chunkStateAt(cell, n);
    let h = exp(logDecay(cell, 0u, n)) * state[at] + x * inN(cell, 0u, n);
    next[at] = h;
    y += h * outN(cell, 0u, n);
  }
  out[seqAt(cell, 0u)] = finish(cell, 0u, y);
}
