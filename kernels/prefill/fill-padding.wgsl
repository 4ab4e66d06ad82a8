// A right-padded prompt with its padding filled: out[b, t, ·] = x[b, t, ·] where t < lengths[b],
// else FILL, selected (so a NaN in the padding reaches nothing). FILL is 0 for a prompt's tokens;
// SelectiveSSM fills its Δ's pre-activation with −10³⁰, whose softplus is exactly 0. x is
// [B, T, inner] flat; the lengths are clamped to 0..T by the caller. One launch where tfjs ops
// took five (a range, a comparison, and the broadcast select's fill, tile and select).
// Needs common/grid.wgsl.

override FILL: f32 = 0.0;

struct Params {
  total: u32, // B·T·inner
  T: u32,
  inner: u32, // numbers per token
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> lengths: array<i32>; // [B]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let token = i / params.inner;
  let t = token % params.T;
  let b = token / params.T;
  out[i] = select(FILL, x[i], i32(t) < lengths[b]);
}
