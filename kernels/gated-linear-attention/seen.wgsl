// GatedLinearAttention's poison (src/mixers/gated-linear-attention/kernel.ts): the outputs and
// final states that see a non-finite input, as the reference poisons them (its nonFiniteSeen
// and poisonWhere), in one launch where those take dozens of tfjs ops. A NaN or ±∞ in k, v or g
// at token t, or a g > 0 (which a GPU backend cannot reject), reaches the outputs at t' ≥ t of
// its batch row and head and the final state; one in q only its own output.
// With IN_PLACE (GatedLinearAttention's own kernels), it writes NaN over those outputs
// [B, T, H, V] and final states [B, H, K, V] after the scan, inside the op's kernel, so that
// nothing joins tfjs's tape; without it (Aaren, src/mixers/aaren/kernel.ts, which passes k as q
// and g with GATE off), it writes the terms to add, NaN or 0, [B, T, H, 1] and [B, H, 1, 1].
// A workgroup per (head h, batch row b): its invocations find the first such token, then mark
// every token. Values are read and written as bits: a shader compiler may assume that no float
// is NaN or infinite, and 0x7fc00000 is a NaN.

struct Params {
  T: u32,
  H: u32,
  K: u32,
  V: u32,
}

@group(0) @binding(0) var<storage, read> q: array<u32>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> k: array<u32>; // [B, T, H, K]
@group(0) @binding(2) var<storage, read> v: array<u32>; // [B, T, H, V]
@group(0) @binding(3) var<storage, read> g: array<u32>; // [B, T, H, K]
@group(0) @binding(4) var<storage, read_write> outputs: array<u32>; // [B, T, H, V], or [B, T, H, 1] of terms
@group(0) @binding(5) var<storage, read_write> states: array<u32>; // [B, H, K, V], or [B, H, 1, 1] of terms
@group(0) @binding(6) var<uniform> params: Params;

override WG: u32 = 64u;
// whether g is a log gate, so that a g > 0 is bad too
override GATE: bool = true;
override IN_PLACE: bool = true;
const NAN_BITS: u32 = 0x7fc00000u;

var<workgroup> firstBad: atomic<u32>;

fn notFinite(bits: u32) -> bool {
  return (bits & 0x7f800000u) == 0x7f800000u;
}

// not finite or, with GATE, not a log gate: > 0 (a clear sign bit on anything but +0)
fn notGate(bits: u32) -> bool {
  return notFinite(bits) || (GATE && (bits & 0x80000000u) == 0u && bits != 0u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let b = wid.y;
  if (lid == 0u) { atomicStore(&firstBad, params.T); }
  workgroupBarrier();
  for (var t = lid; t < params.T; t += WG) {
    let token = (b * params.T + t) * params.H + h;
    var bad = false;
    for (var n = 0u; n < params.K; n++) {
      bad = bad || notFinite(k[token * params.K + n]) || notGate(g[token * params.K + n]);
    }
    for (var e = 0u; e < params.V; e++) { bad = bad || notFinite(v[token * params.V + e]); }
    if (bad) { atomicMin(&firstBad, t); }
  }
  workgroupBarrier();
  let first = atomicLoad(&firstBad);
  for (var t = lid; t < params.T; t += WG) {
    let token = (b * params.T + t) * params.H + h;
    var bad = t >= first;
    for (var n = 0u; n < params.K; n++) { bad = bad || notFinite(q[token * params.K + n]); }
    if (!IN_PLACE) {
      outputs[token] = select(0u, NAN_BITS, bad);
    } else if (bad) {
      for (var e = 0u; e < params.V; e++) { outputs[token * params.V + e] = NAN_BITS; }
    }
  }
  let head = b * params.H + h;
  if (!IN_PLACE) {
    if (lid == 0u) { states[head] = select(0u, NAN_BITS, first < params.T); }
  } else if (first < params.T) {
    let size = params.K * params.V;
    for (var j = lid; j < size; j += WG) { states[head * size + j] = NAN_BITS; }
  }
}
