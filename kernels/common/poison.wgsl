// Test-only (the MIXERS_POISON_OUTPUTS flag): fills a kernel's fresh output with quiet-NaN bits
// in the same compute pass, just before the kernel, so an element the kernel never writes reads
// back as NaN (or as int32 2143289344) instead of whatever the pooled buffer held.
// One invocation per 32-bit word, flat over `total` words.

// needs common/grid.wgsl

struct Params {
  total: u32, // 32-bit words of the output
}

@group(0) @binding(0) var<storage, read_write> output: array<u32>; // the output to poison
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  output[i] = 0x7fc00000u;
}
