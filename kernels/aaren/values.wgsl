// Aaren's values for GLA's scan (src/mixers/aaren/kernel.ts), the packed rows [v, 1] with v's
// NaN and ±∞ read as 0, in one launch where tfjs ops take four (a finite test, zeros, a select
// and a concat), and the scan's query, a 1 a row, written by the invocation of the row's 1.

// needs packed-rows.wgsl, common/float-bits.wgsl

@group(0) @binding(0) var<storage, read> v: array<f32>; // [rows, K]
@group(0) @binding(1) var<storage, read_write> packed: array<f32>; // [rows, K + 1]
@group(0) @binding(2) var<storage, read_write> query: array<f32>; // [rows]
@group(0) @binding(3) var<uniform> params: Params;

fn element(n: u32) {
  let row = n / (params.K + 1u);
  let c = n % (params.K + 1u);
  var value = 1.0;
  if (c < params.K) {
    let x = v[row * params.K + c];
    value = select(0.0, x, isFinite(x));
  } else {
    query[row] = 1.0;
  }
  packed[n] = value;
}
