// Rotary position embedding (MIXERS.md §8), or its inverse (DIRECTION = -1, the gradient):
// one invocation per rotated pair (b, t, m), m < R/2, or per copied channel R..K-1, of
// x [B, T, H, K], looping over the H heads: the sine and cosine of p·θ_m serve every head.
// The pair (a, b) is (m, m + R/2), or (2m, 2m + 1) when INTERLEAVED.
//   y_a = x_a·cos(p·θ_m) − x_b·sin(p·θ_m)
//   y_b = x_a·sin(p·θ_m) + x_b·cos(p·θ_m)
// Position p = params.offset + t·tStep (+ positions[b·posStrideB + t·posStrideT] with
// HAS_POSITIONS) covers the three forms of the op: a [B, T] table (strides T, 1; tStep 0), per-row
// offsets [B] (1, 0; 1), one offset, a param (no positions; tStep 1).

// needs common/grid.wgsl and sincos.wgsl

override INTERLEAVED: bool = false;
override DIRECTION: f32 = 1.0; // 1 rotates by p·θ, -1 back
override HAS_POSITIONS: bool = true; // false: positions is a stand-in, never read

struct Params {
  total: u32, // B·T·W
  width: u32, // W = R/2 + K − R: invocations per token
  T: u32,
  H: u32,
  K: u32,
  halfR: u32, // R/2
  posStrideB: u32,
  posStrideT: u32,
  tStep: u32,
  offset: i32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> theta: array<f32>; // [R/2], base^(−2m/R) rounded once to float32
@group(0) @binding(2) var<storage, read> positions: array<i32>; // [B, T] or [B]
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // [B, T, H, K]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let j = i % params.width;
  let bt = i / params.width; // b·T + t
  let token = bt * params.H * params.K;
  if (j >= params.halfR) {
    // channels ≥ R pass through
    let c = token + 2u * params.halfR + (j - params.halfR);
    for (var h = 0u; h < params.H; h++) {
      y[c + h * params.K] = x[c + h * params.K];
    }
    return;
  }
  let t = bt % params.T;
  let b = bt / params.T;
  var p = params.offset + i32(t * params.tStep);
  if (HAS_POSITIONS) { p += positions[b * params.posStrideB + t * params.posStrideT]; }
  // the angle as §8 forms it, one float32 product (as the reference implementations do)
  let sc = sincos(f32(p) * theta[j]);
  let s = DIRECTION * sc.x;
  let cs = sc.y;
  var ia = token + j;
  var ib = token + j + params.halfR;
  if (INTERLEAVED) {
    ia = token + 2u * j;
    ib = ia + 1u;
  }
  for (var h = 0u; h < params.H; h++) {
    let xa = x[ia];
    let xb = x[ib];
    y[ia] = xa * cs - xb * s;
    y[ib] = xa * s + xb * cs;
    ia += params.K;
    ib += params.K;
  }
}
