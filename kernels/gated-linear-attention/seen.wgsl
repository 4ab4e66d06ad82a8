// GatedLinearAttention's poison (src/mixers/gated-linear-attention/kernel.ts): the outputs and
// final states that see a non-finite input, as the reference poisons them (its nonFiniteSeen
// and poisonWhere), in one or two launches where those take dozens of tfjs ops. A NaN or ±∞ in
// k, v or g at token t, or a g > 0 (which a GPU backend cannot reject), reaches the outputs at
// t' ≥ t of its batch row and head and the final state; one in q only its own output.
// With IN_PLACE (GatedLinearAttention's own kernels), it writes NaN over those outputs
// [B, T, H, V] and final states [B, H, K, V] after the scan, inside the op's kernel, so that
// nothing joins tfjs's tape; without it (Aaren, src/mixers/aaren/kernel.ts, which passes k as q
// and g with GATE off), it writes the terms to add, NaN or 0, [B, T, H, 1] and [B, H, 1, 1].
// A workgroup per (chunk of CHUNK tokens, head h, batch row b) marks its chunk's tokens from the
// first bad token of the row and head: alone, where T fits in one chunk, it finds that token
// itself; otherwise (FIRSTS) seen-chunks.wgsl has written each chunk's first to `firsts`, and it
// takes the least of those up to its own chunk (a later chunk's cannot reach it). The workgroup
// of the last chunk writes the final state. Values are read and written as bits (seen-find.wgsl).
// needs seen-find.wgsl

@group(0) @binding(0) var<storage, read> q: array<u32>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> k: array<u32>; // [B, T, H, K]
@group(0) @binding(2) var<storage, read> v: array<u32>; // [B, T, H, V]
@group(0) @binding(3) var<storage, read> g: array<u32>; // [B, T, H, K]
@group(0) @binding(4) var<storage, read> firsts: array<u32>; // [B, H, chunks] with FIRSTS, else a stand-in never read
@group(0) @binding(5) var<storage, read_write> outputs: array<u32>; // [B, T, H, V], or [B, T, H, 1] of terms
@group(0) @binding(6) var<storage, read_write> states: array<u32>; // [B, H, K, V], or [B, H, 1, 1] of terms
@group(0) @binding(7) var<uniform> params: Params;

override IN_PLACE: bool = true;
// whether seen-chunks.wgsl has found each chunk's first bad token
override FIRSTS: bool = false;

// the chunk's tokens whose q is not finite, by token within the chunk
var<workgroup> qBad: array<atomic<u32>, CHUNK>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.x;
  let h = wid.y;
  let b = wid.z;
  let t0 = chunk * CHUNK;
  let n = min(CHUNK, params.T - t0);
  if (lid == 0u) { atomicStore(&firstBad, params.T); }
  for (var j = lid; j < CHUNK; j += WG) { atomicStore(&qBad[j], 0u); }
  workgroupBarrier();
  var first: u32;
  if (FIRSTS) {
    let row = (b * params.H + h) * chunkCount();
    var mine = params.T;
    for (var c = lid; c <= chunk; c += WG) { mine = min(mine, firsts[row + c]); }
    first = workgroupMin(mine);
  } else {
    first = firstBadIn(b, h, t0, t0 + n, lid);
  }
  let perK = n * params.K;
  for (var i = lid; i < perK; i += WG) {
    let j = i / params.K;
    if (notFinite(q[((b * params.T + t0 + j) * params.H + h) * params.K + i - j * params.K])) { atomicStore(&qBad[j], 1u); }
  }
  workgroupBarrier();
  for (var j = lid; j < n; j += WG) {
    let token = (b * params.T + t0 + j) * params.H + h;
    let bad = t0 + j >= first || atomicLoad(&qBad[j]) != 0u;
    if (!IN_PLACE) {
      outputs[token] = select(0u, NAN_BITS, bad);
    } else if (bad) {
      for (var e = 0u; e < params.V; e++) { outputs[token * params.V + e] = NAN_BITS; }
    }
  }
  if (chunk + 1u < chunkCount()) { return; }
  let head = b * params.H + h;
  if (!IN_PLACE) {
    if (lid == 0u) { states[head] = select(0u, NAN_BITS, first < params.T); }
  } else if (first < params.T) {
    let size = params.K * params.V;
    for (var j = lid; j < size; j += WG) { states[head * size + j] = NAN_BITS; }
  }
}
