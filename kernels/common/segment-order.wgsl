// Fills the order flags of the packed int inputs (common/vis-header.wgsl), once per attention
// call with segment ids: flag 2b + side is 1 when the ids of row b on that side (0 queries, 1
// keys) never decrease, as packed sequences' do. The attention kernels then narrow a tile's range
// of the other side by binary search (segmentRange in common/visibility.wgsl) without reading the
// row first. One workgroup of WG invocations per (row b, side); the buffer is updated in place.
// needs common/vis-header.wgsl

struct Params {
  Tq: u32,
  Tk: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> vis: array<i32>;
@group(0) @binding(1) var<uniform> params: Params;

var<workgroup> unsorted: atomic<u32>; // zero-initialised

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.x;
  let side = wid.y;
  let len = select(params.Tq, params.Tk, side == 1u);
  let first = u32(vis[SEG_Q_AT + side]) + b * len;
  for (var e = lid + 1u; e < len; e += WG) {
    if (vis[first + e - 1u] > vis[first + e]) { atomicStore(&unsorted, 1u); }
  }
  workgroupBarrier();
  if (lid == 0u) { vis[u32(vis[ORDER_AT]) + 2u * b + side] = select(1, 0, atomicLoad(&unsorted) != 0u); }
}
