// Aaren's initial state (m, u, w) as the scan's packed rows [w, u] (src/mixers/aaren/kernel.ts,
// AAREN_INITIAL_STATE), in the frame the frame kernel gives it: the same numbers, times
// e^{m' − m'} = 1 with m' = max(m, HIDDEN), which is NaN where m is, in one launch where tfjs ops
// took five. (m's gradient through that factor is the tfjs side's.)

// needs common/float-bits.wgsl and packed-rows.wgsl

@group(0) @binding(0) var<storage, read> m: array<f32>; // [rows]
@group(0) @binding(1) var<storage, read> u: array<f32>; // [rows]
@group(0) @binding(2) var<storage, read> w: array<f32>; // [rows, K]
@group(0) @binding(3) var<storage, read_write> packed: array<f32>; // [rows, K + 1]: w, then u
@group(0) @binding(4) var<uniform> params: Params;

fn element(n: u32) {
  let row = n / (params.K + 1u);
  let c = n % (params.K + 1u);
  let held = select(w[row * params.K + c], u[row], c == params.K);
  packed[n] = held + select(0.0, nan(), isNan(m[row]));
}
