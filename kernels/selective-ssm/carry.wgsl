// Selective scan, pass 2: carries a state across the chunks, one invocation per (b, e, n),
// sequential over the ceil(T/L) chunks: h ← exp(A·Σ Δ)·h + (the chunk's end state from 0). Forward: the state entering
// each chunk, from initialState or 0, and the final state. REVERSE (backward): the same
// recurrence from the last chunk to the first on the adjoint, from the final state's gradient;
// it writes, per chunk, the forward's entering state beside the adjoint entering from the
// right, so the backward's last pass reads both from one buffer. Its `last` is the gradient
// of initialState.
// needs common/grid.wgsl and scan.wgsl

override REVERSE: bool = false;
override HAS_START: bool = false;

@group(0) @binding(0) var<storage, read> chan: array<f32>; // [E, N + 2]
@group(0) @binding(1) var<storage, read> dtSum: array<f32>; // [B, chunks, E]
@group(0) @binding(2) var<storage, read> ends: array<f32>; // [B, chunks, E, N]
@group(0) @binding(3) var<storage, read> start: array<f32>; // [B, E, N], read when HAS_START
@group(0) @binding(4) var<storage, read> entering: array<f32>; // [B, chunks, E, N], read when REVERSE
@group(0) @binding(5) var<storage, read_write> carries: array<f32>; // [B, chunks, E, N], or [.., 2N] when REVERSE
@group(0) @binding(6) var<storage, read_write> last: array<f32>; // [B, E, N]
@group(0) @binding(7) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  let N = params.N;
  if (i >= params.B * params.E * N) { return; }
  let n = i % N;
  let e = (i / N) % params.E;
  let b = i / (N * params.E);
  let a = chan[chanAt(e, n)];
  var h = select(0.0, start[i], HAS_START);
  for (var k = 0u; k < params.chunks; k++) {
    let c = select(k, params.chunks - 1u - k, REVERSE);
    let row = (b * params.chunks + c) * params.E + e;
    if (REVERSE) {
      carries[row * 2u * N + n] = entering[row * N + n];
      carries[row * 2u * N + N + n] = h;
    } else {
      carries[row * N + n] = h;
    }
    // a zero adjoint stays 0 across a chunk holding a non-finite Δ (forwards, that chunk's end
    // state is NaN anyway)
    h = strongTimes(h, exp(a * dtSum[row])) + ends[row * N + n];
  }
  last[i] = h;
}
