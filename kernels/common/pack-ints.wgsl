// Packs up to six int32 buffers, after a header of up to eight ints from the uniform, into one:
// the attention kernels read their int inputs (kvLengths, queryOffsets, segment ids, mask, a
// tile plan) from one binding, as WebGPU guarantees only 8 storage buffers per stage.
// One invocation per output int, flat over `total`. An absent slot ends where the one before it
// does (bound to any buffer, never read). Past the last slot lies room a later kernel fills
// (zeros here).

// needs common/grid.wgsl

struct Params {
  total: u32, // ints of the output
  headerLen: u32, // ints of the header, 0..8
  // the header (scalars: the runtime packs the uniform field by field)
  h0: i32, h1: i32, h2: i32, h3: i32, h4: i32, h5: i32, h6: i32, h7: i32,
  // where slots 0..5 end in the output
  e0: u32, e1: u32, e2: u32, e3: u32, e4: u32, e5: u32,
}

@group(0) @binding(0) var<storage, read> slot0: array<i32>;
@group(0) @binding(1) var<storage, read> slot1: array<i32>;
@group(0) @binding(2) var<storage, read> slot2: array<i32>;
@group(0) @binding(3) var<storage, read> slot3: array<i32>;
@group(0) @binding(4) var<storage, read> slot4: array<i32>;
@group(0) @binding(5) var<storage, read> slot5: array<i32>;
@group(0) @binding(6) var<storage, read_write> packed: array<i32>;
@group(0) @binding(7) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  let h = array<i32, 8>(params.h0, params.h1, params.h2, params.h3, params.h4, params.h5, params.h6, params.h7);
  var x = 0;
  if (n < params.headerLen) {
    x = h[n];
  } else if (n < params.e0) {
    x = slot0[n - params.headerLen];
  } else if (n < params.e1) {
    x = slot1[n - params.e0];
  } else if (n < params.e2) {
    x = slot2[n - params.e1];
  } else if (n < params.e3) {
    x = slot3[n - params.e2];
  } else if (n < params.e4) {
    x = slot4[n - params.e3];
  } else if (n < params.e5) {
    x = slot5[n - params.e4];
  }
  packed[n] = x;
}
