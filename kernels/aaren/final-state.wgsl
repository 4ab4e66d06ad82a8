// Aaren's final state (m, u, w) from the scan's packed final rows [w, u], kept in the frame of
// the last token's running max (src/mixers/aaren/kernel.ts, AAREN_FINAL_STATE): u and w moved to
// the frame of m = max(m_init, the real scores) by the factor `moveBy`, m = −∞ for a row that saw
// no real token and has no initial state (u = 0, with HAS_REAL), and each plus the head's poison
// (NaN from its first non-finite k or v on, else 0), in one launch where tfjs ops took nine.
// One invocation per number of the packed rows: its w, or at column K its u and m.

// needs common/float-bits.wgsl and packed-rows.wgsl

override HAS_REAL: bool = false;

@group(0) @binding(0) var<storage, read> state: array<f32>; // [rows, K + 1]: w, then u
@group(0) @binding(1) var<storage, read> moveBy: array<f32>; // [rows]: e^{m_{T−1} − m}
@group(0) @binding(2) var<storage, read> mMax: array<f32>; // [rows]
@group(0) @binding(3) var<storage, read> poison: array<f32>; // [rows]
@group(0) @binding(4) var<storage, read_write> m: array<f32>; // [rows]
@group(0) @binding(5) var<storage, read_write> u: array<f32>; // [rows]
@group(0) @binding(6) var<storage, read_write> w: array<f32>; // [rows, K]
@group(0) @binding(7) var<uniform> params: Params;

fn element(n: u32) {
  let row = n / (params.K + 1u);
  let c = n % (params.K + 1u);
  let moved = state[n] * moveBy[row];
  if (c < params.K) {
    w[row * params.K + c] = moved + poison[row];
    return;
  }
  u[row] = moved + poison[row];
  m[row] = select(mMax[row], minusInfinity(), HAS_REAL && moved == 0.0) + poison[row];
}
