// Scan pass 1 of the forward: each chunk's end state when entered with h = 0,
// ends[row, c, e, n], and its total log decay Σ logDecay over the chunk, decays[row, c, e, n].
// needs common/grid.wgsl, the hooks and scan.wgsl

@group(0) @binding(INPUTS) var<storage, read_write> ends: array<f32>;
@group(0) @binding(INPUTS + 1u) var<storage, read_write> decays: array<f32>;
@group(0) @binding(INPUTS + 2u) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.chunks * params.E) { return; }
  let cell = cellOf(i);
  var xs: array<f32, L>;
  for (var s = 0u; s < cell.len; s++) { xs[s] = prepare(cell, s); }
  for (var n = 0u; n < params.N; n++) {
    var h = 0.0;
    var total = 0.0;
    for (var s = 0u; s < cell.len; s++) {
      let ld = logDecay(cell, s, n);
      total += ld;
      h = exp(ld) * h + xs[s] * inN(cell, s, n);
    }
    ends[chunkStateAt(cell, n)] = h;
    decays[chunkStateAt(cell, n)] = total;
  }
}
