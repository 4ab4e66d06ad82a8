// Shared by seen.wgsl and seen-chunks.wgsl: what a token's inputs say, read from their bits (a
// shader compiler may assume that no float is NaN or infinite; 0x7fc00000 is a NaN), and the
// first bad token of a chunk. Each kernel binds q, k, v, g, params and its own outputs.

struct Params {
  T: u32,
  H: u32,
  K: u32,
  V: u32,
}

override WG: u32 = 256u;
// tokens per workgroup: src/mixers/gated-linear-attention/kernel.ts's SEEN_CHUNK
override CHUNK: u32 = 256u;
// whether g is a log gate, so that a g > 0 is bad too
override GATE: bool = true;
const NAN_BITS: u32 = 0x7fc00000u;

// the chunk's first bad token (or T), once every invocation has called workgroupMin
var<workgroup> firstBad: atomic<u32>;

fn notFinite(bits: u32) -> bool {
  return (bits & 0x7f800000u) == 0x7f800000u;
}

// not finite or, with GATE, not a log gate: > 0 (a clear sign bit on anything but +0)
fn notGate(bits: u32) -> bool {
  return notFinite(bits) || (GATE && (bits & 0x80000000u) == 0u && bits != 0u);
}

fn chunkCount() -> u32 {
  return (params.T + CHUNK - 1u) / CHUNK;
}

// the min of every invocation's `mine`, firstBad having been set to T before a barrier
fn workgroupMin(mine: u32) -> u32 {
  atomicMin(&firstBad, mine);
  workgroupBarrier();
  return atomicLoad(&firstBad);
}

// The first token in [t0, t1) of batch row b and head h whose k, v or g is bad, or T. The
// invocations walk the chunk's channels as one flat range, so that neighbours read neighbouring
// words; each one's first hit is its least token.
fn firstBadIn(b: u32, h: u32, t0: u32, t1: u32, lid: u32) -> u32 {
  var mine = params.T;
  let perK = (t1 - t0) * params.K;
  for (var i = lid; i < perK && mine == params.T; i += WG) {
    let j = i / params.K;
    let at = ((b * params.T + t0 + j) * params.H + h) * params.K + i - j * params.K;
    if (notFinite(k[at]) || notGate(g[at])) { mine = t0 + j; }
  }
  let perV = (t1 - t0) * params.V;
  for (var i = lid; i < perV && t0 + i / params.V < mine; i += WG) {
    let j = i / params.V;
    if (notFinite(v[((b * params.T + t0 + j) * params.H + h) * params.V + i - j * params.V])) { mine = t0 + j; }
  }
  return workgroupMin(mine);
}
