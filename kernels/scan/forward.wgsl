// Scan pass 3 of the forward: each chunk rerun from the state entering it; writes
// finish(y) with y = Σ_n h·outN at every step.
// needs common/grid.wgsl, the hooks and scan.wgsl

@group(0) @binding(INPUTS) var<storage, read> entering: array<f32>; // [rows, chunks, ·]
@group(0) @binding(INPUTS + 1u) var<storage, read_write> out: array<f32>; // indexed by seqAt
@group(0) @binding(INPUTS + 2u) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.chunks * params.E) { return; }
  let cell = cellOf(i);
  var xs: array<f32, L>;
  var ys: array<f32, L>;
  for (var s = 0u; s < cell.len; s++) {
    xs[s] = prepare(cell, s);
    ys[s] = 0.0;
  }
  for (var n = 0u; n < params.N; n++) {
    var h = entering[chunkStateAt(cell, n)];
    for (var s = 0u; s < cell.len; s++) {
      h = exp(logDecay(cell, s, n)) * h + xs[s] * inN(cell, s, n);
      ys[s] += h * outN(cell, s, n);
    }
  }
  for (var s = 0u; s < cell.len; s++) { out[seqAt(cell, s)] = finish(cell, s, ys[s]); }
}
