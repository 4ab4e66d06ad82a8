// The gradients of frame.wgsl's scores s = scale·q·k (k's NaN and ±∞ read as 0) in its inputs,
// from ds (frame-backward.wgsl), in one launch where tfjs ops take six: for each number n of
// k `[B, T, H, K]` (row (b, t, h), channel c),
//   dk = ds·(scale·q_hc), 0 where k is not finite        part = ds·finite(k)·scale
// q's gradient is the column sums of `part` over the B·T rows of each head (src/mixers/aaren/kernel.ts).

// needs common/grid.wgsl, common/float-bits.wgsl

struct Params {
  total: u32, // B·T·H·K
  H: u32,
  K: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>; // [H, K]
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, T, H, K]
@group(0) @binding(2) var<storage, read> ds: array<f32>; // [B, T, H, 1]
@group(0) @binding(3) var<storage, read_write> dk: array<f32>; // [B, T, H, K]
@group(0) @binding(4) var<storage, read_write> part: array<f32>; // [B, T, H, K]
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  let row = n / params.K;
  let c = n % params.K;
  let x = k[n];
  let finite = isFinite(x);
  let d = ds[row];
  dk[n] = select(0.0, d * (q[(row % params.H) * params.K + c] * params.scale), finite);
  part[n] = d * select(0.0, x, finite) * params.scale;
}
