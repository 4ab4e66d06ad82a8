// Scan pass 1 of the backward: the adjoint g[t] = dy[t]·outN[t] + exp(logDecay[t+1])·g[t+1]
// run backwards through each chunk from 0 at its end; writes what leaves the chunk to the left,
// exp(logDecay[t0])·g[t0], per (row, c, e, n). dy is the hooks' outAdjoint of the output's gradient.
// needs common/grid.wgsl, the hooks and scan.wgsl

@group(0) @binding(INPUTS) var<storage, read> dOut: array<f32>; // indexed by seqAt
@group(0) @binding(INPUTS + 1u) var<storage, read_write> ends: array<f32>; // [rows, chunks, ·]
@group(0) @binding(INPUTS + 2u) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.B * params.chunks * params.E) { return; }
  let cell = cellOf(i);
  var dys: array<f32, L>;
  for (var s = 0u; s < cell.len; s++) {
    _ = prepare(cell, s); // the hooks may keep per-step values that logDecay reads
    dys[s] = outAdjoint(cell, s, dOut[seqAt(cell, s)]);
  }
  for (var n = 0u; n < params.N; n++) {
    var r = 0.0;
    for (var k = 0u; k < cell.len; k++) {
      let s = cell.len - 1u - k;
      r = strongTimes(strongTimes(dys[s], outN(cell, s, n)) + r, exp(logDecay(cell, s, n)));
    }
    ends[chunkStateAt(cell, n)] = r;
  }
}
