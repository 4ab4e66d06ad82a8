// Shared by the split tiled attention passes' gradients (dQ; dK and dV): sums each row's parts,
// which a split launch wrote side by side (common/attention.wgsl, partBase):
// out[r, c] = Σ_s parts[r, s, c] for rows of `width` channel groups, s over `splits`, in order.
// One invocation per (row, channel group). Expects common/lanes-*.wgsl and common/grid.wgsl.

struct Params {
  n: u32, // rows · width
  splits: u32,
  width: u32,
}

@group(0) @binding(0) var<storage, read> parts: array<V>; // [rows, splits, width]
@group(0) @binding(1) var<storage, read_write> out: array<V>; // [rows, width]
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = flatIndex(wid, nwg, lid);
  if (e >= params.n) { return; }
  let first = (e / params.width) * params.splits * params.width + e % params.width;
  var sum = V(0.0);
  for (var s = 0u; s < params.splits; s++) { sum += parts[first + s * params.width]; }
  out[e] = sum;
}
