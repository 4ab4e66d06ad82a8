// Aaren's initial state (u, w) as the scan's packed rows [w, u] (src/mixers/aaren/kernel.ts,
// AAREN_INITIAL_STATE), one launch where tfjs ops took five. Its m is the frame kernel's to read
// (a NaN there reaches the outputs and the state through the frame); here it is the input that
// m's gradient reaches, through the tfjs side's factor e^{m − m} = 1.

// needs packed-rows.wgsl

@group(0) @binding(0) var<storage, read> u: array<f32>; // [rows]
@group(0) @binding(1) var<storage, read> w: array<f32>; // [rows, K]
@group(0) @binding(2) var<storage, read_write> packed: array<f32>; // [rows, K + 1]: w, then u
@group(0) @binding(3) var<uniform> params: Params;

fn element(n: u32) {
  let row = n / (params.K + 1u);
  let c = n % (params.K + 1u);
  packed[n] = select(w[row * params.K + c], u[row], c == params.K);
}
