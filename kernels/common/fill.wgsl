// Fills a buffer of 32-bit words with one value, one invocation a word, flat over `total` words:
// a kernel's fresh output with quiet-NaN bits under the test flag MIXERS_POISON_OUTPUTS
// (runtime.ts), in the same compute pass just before the kernel, so that an element the kernel
// never writes reads back as NaN (or as int32 2143289344) instead of whatever the pooled buffer
// held; or a one-pass scan's status words with NOT_READY (average-context/lookback-chain.wgsl).

// needs common/grid.wgsl

struct Params {
  total: u32, // 32-bit words of the output
  value: u32, // the bits each word gets
}

@group(0) @binding(0) var<storage, read_write> output: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  output[i] = params.value;
}
