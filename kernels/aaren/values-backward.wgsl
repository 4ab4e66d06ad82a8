// The gradient of values.wgsl's packed rows [v, 1] in v: the packed gradient's first K numbers
// of each row, 0 where v is NaN or ±∞ (read as 0, so it has no gradient), in one launch where
// tfjs ops take three.

// needs packed-rows.wgsl, common/float-bits.wgsl

@group(0) @binding(0) var<storage, read> v: array<f32>; // [rows, K]
@group(0) @binding(1) var<storage, read> dPacked: array<f32>; // [rows, K + 1]
@group(0) @binding(2) var<storage, read_write> dv: array<f32>; // [rows, K]
@group(0) @binding(3) var<uniform> params: Params;

fn element(n: u32) {
  let row = n / params.K;
  dv[n] = select(0.0, dPacked[n + row], isFinite(v[n]));
}
