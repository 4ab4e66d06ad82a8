// AverageContext's one-pass forward (lookback.wgsl): its status words made ready for a launch,
// the ticket (word 0) 0 and every published sum NOT_READY. One invocation per word.
// needs common/grid.wgsl

struct Params {
  total: u32, // words
}

@group(0) @binding(0) var<storage, read_write> status: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  status[i] = select(NOT_READY, 0u, i == 0u);
}
