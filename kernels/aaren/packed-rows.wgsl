// Shared by Aaren's kernels on rows of K numbers or of K + 1, packed (values.wgsl, ratio.wgsl,
// their gradients, and the step's step-merge.wgsl; src/mixers/aaren/kernel.ts): their params and
// their entry point, an invocation per number `n` of the launch's output, which the kernel's
// `element(n)` writes.

// needs common/grid.wgsl

struct Params {
  // the output's numbers: rows·(K + 1) for a packed output, rows·K otherwise
  total: u32,
  K: u32,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  element(n);
}
