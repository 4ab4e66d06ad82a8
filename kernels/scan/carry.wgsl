// Scan pass 2: carries a state across the chunks, one invocation per (row, e, n), sequential
// over the ceil(T/L) chunks: h ← exp(the chunk's total log decay)·h + (its end state from 0).
// Forward: the state entering each chunk, from `start` or 0, and the final state. REVERSE
// (backward): the same recurrence from the last chunk to the first on the adjoint, from the
// final state's gradient; it writes, per chunk, the forward's entering state beside the adjoint
// entering from the right, so the backward's last pass reads both from one buffer. Its `last` is
// the gradient of the initial state. The same pipeline serves every mixer.
// needs common/grid.wgsl and scan.wgsl

override REVERSE: bool = false;
override HAS_START: bool = false;

struct Params {
  B: u32,
  T: u32,
  E: u32,
  N: u32,
  chunks: u32,
}

@group(0) @binding(0) var<storage, read> decays: array<f32>; // [rows, chunks, ·]
@group(0) @binding(1) var<storage, read> ends: array<f32>; // [rows, chunks, ·]
@group(0) @binding(2) var<storage, read> start: array<f32>; // [rows, ·], read when HAS_START
@group(0) @binding(3) var<storage, read> entering: array<f32>; // [rows, chunks, ·], read when REVERSE
@group(0) @binding(4) var<storage, read_write> carries: array<f32>; // [rows, chunks, ·], width 2N when REVERSE
@group(0) @binding(5) var<storage, read_write> last: array<f32>; // [rows, ·]
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  let N = params.N;
  let E = params.E;
  if (i >= params.B * E * N) { return; }
  // i runs over the state layout itself, so that start and last are read and written at i
  let e = select((i / N) % E, i % E, N_FIRST);
  let n = select(i % N, (i / E) % N, N_FIRST);
  let b = i / (N * E);
  var h = select(0.0, start[i], HAS_START);
  for (var k = 0u; k < params.chunks; k++) {
    let c = select(k, params.chunks - 1u - k, REVERSE);
    let block = b * params.chunks + c;
    let at = stateIndex(block, e, n, N);
    if (REVERSE) {
      carries[stateIndex(block, e, n, 2u * N)] = entering[at];
      carries[stateIndex(block, e, N + n, 2u * N)] = h;
    } else {
      carries[at] = h;
    }
    // a zero adjoint stays 0 across a chunk holding a non-finite decay (forwards, that chunk's
    // end state is NaN anyway)
    h = strongTimes(h, exp(decays[at])) + ends[at];
  }
  last[i] = h;
}
