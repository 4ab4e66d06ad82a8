// Aaren's decode step, second launch (src/mixers/aaren/kernel.ts, AAREN_STEP): the state's sums
// moved into the new frame and the token added, with the first launch's factors f (step-frame.wgsl),
//   u' = f.x·u + f.y        w' = f.x·w + f.y·v        o = w' / u'   (0 where u' = 0),
// for each batch row b, head h and channel c: an invocation per (b, h, c), n = (b·H + h)·K + c;
// channel 0's also writes u'.

// needs packed-rows.wgsl

@group(0) @binding(0) var<storage, read> v: array<f32>; // [B, 1, H, K]
@group(0) @binding(1) var<storage, read> u: array<f32>; // [B, H]
@group(0) @binding(2) var<storage, read> w: array<f32>; // [B, H, K]
@group(0) @binding(3) var<storage, read> factors: array<vec2<f32>>; // [B, H, 2]
@group(0) @binding(4) var<storage, read_write> o: array<f32>; // [B, 1, H, K]
@group(0) @binding(5) var<storage, read_write> uNext: array<f32>; // [B, H]
@group(0) @binding(6) var<storage, read_write> wNext: array<f32>; // [B, H, K]
@group(0) @binding(7) var<uniform> params: Params;

fn element(n: u32) {
  let row = n / params.K;
  let f = factors[row];
  let sum = f.x * u[row] + f.y;
  let weighted = f.x * w[n] + f.y * v[n];
  wNext[n] = weighted;
  o[n] = select(weighted / sum, 0.0, sum == 0.0);
  if (n % params.K == 0u) { uNext[row] = sum; }
}
