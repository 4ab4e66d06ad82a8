// Packs G vectors end to end, out = [in_0 | in_1 | …] (the biases of dense-groups.wgsl, which
// would otherwise take a binding each). One invocation per element of out. Lines and blocks
// with `$` are written out once per vector (src/webgpu/copies.ts).

// needs common/grid.wgsl
// const GROUPS: u32 = …; (prepended by the kernel)

struct Params {
  n$: u32,
  total: u32,
}

@group(0) @binding($u) var<storage, read> in$: array<f32>;
@group(0) @binding(GROUPS) var<storage, read_write> out: array<f32>;
@group(0) @binding(GROUPS + 1u) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  var start = 0u;
  // $ {
  if (i >= start && i < start + params.n$) { out[i] = in$[i - start]; }
  start += params.n$;
  // $ }
}
