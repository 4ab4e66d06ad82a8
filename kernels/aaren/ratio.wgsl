// Aaren's output o = w/u from the scan's packed rows [w, u] (src/mixers/aaren/kernel.ts), 0 where
// u = 0 (a padded row that has seen no real token yet), plus the row's poison (NaN from a head's
// first non-finite k or v on, else 0), in one launch where tfjs ops take four.

// needs packed-rows.wgsl

@group(0) @binding(0) var<storage, read> packed: array<f32>; // [rows, K + 1]: w, then u
@group(0) @binding(1) var<storage, read> poison: array<f32>; // [rows]
@group(0) @binding(2) var<storage, read_write> o: array<f32>; // [rows, K]
@group(0) @binding(3) var<uniform> params: Params;

fn element(n: u32) {
  let row = n / params.K;
  let u = packed[row * (params.K + 1u) + params.K];
  o[n] = select(packed[n + row] / u, 0.0, u == 0.0) + poison[row];
}
