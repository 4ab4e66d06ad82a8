// The window of the last H tokens of each row once it has consumed its real tokens: token i of
// row b's window is c = lengths[b] + i of the window before the prompt followed by the prompt,
//   out[b, i, d] = c < H ? history[b, c, d] : x[b, c − H, d]      (d < D)
// where x's rows hold W ≥ D numbers and the window takes their first D (SelectiveSSM's inner
// tokens, the first half of its in projection). The lengths are clamped to 0..T by the caller.
// One launch where tfjs ops took four (a range, an add, a concat and a gather).
// Needs common/grid.wgsl.

struct Params {
  total: u32, // B·H·D
  H: u32, // window tokens
  D: u32,
  T: u32,
  W: u32, // numbers per token of x
}

@group(0) @binding(0) var<storage, read> history: array<f32>; // [B, H, D]
@group(0) @binding(1) var<storage, read> x: array<f32>; // [B, T, W]
@group(0) @binding(2) var<storage, read> lengths: array<i32>; // [B]
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [B, H, D]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  let d = n % params.D;
  let i = (n / params.D) % params.H;
  let b = n / (params.D * params.H);
  let c = u32(lengths[b]) + i;
  if (c < params.H) {
    out[n] = history[(b * params.H + c) * params.D + d];
  } else {
    out[n] = x[(b * params.T + c - params.H) * params.W + d];
  }
}
