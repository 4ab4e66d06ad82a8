// Shared by the attention skeleton's passes: attention dropout (docs/attention-masks.md). A
// normalised weight a_ij of query head h, batch row b, is kept iff dropHash(b, h, i, j) ≥
// params.dropThreshold, and then scaled by params.dropScale = 1/(1 − p); the row's normaliser
// counts every visible weight, kept or not. The hash is dropoutHash of src/attention/dropout.ts,
// bit for bit. Expects common/attention.wgsl.

// false without dropout: dropKeep is then 1 and compiled away
override DROPOUT: bool = false;

// murmur3's 32-bit finaliser
fn dropMix(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x85ebca6bu;
  x ^= x >> 13u;
  x *= 0xc2b2ae35u;
  x ^= x >> 16u;
  return x;
}

// the u32 hash of weight (b, h, i, j) under params.dropSeed
fn dropHash(b: u32, h: u32, i: u32, j: u32) -> u32 {
  var x = params.dropSeed;
  x = dropMix((x ^ b) + 0x9e3779b9u);
  x = dropMix((x ^ h) + 0x9e3779b9u);
  x = dropMix((x ^ i) + 0x9e3779b9u);
  x = dropMix((x ^ j) + 0x9e3779b9u);
  return x;
}

// the multiplier of weight (b, h, i, j): 1/(1 − p) if kept, 0 if dropped, 1 without dropout
fn dropKeep(b: u32, h: u32, i: u32, j: u32) -> f32 {
  if (!DROPOUT) { return 1.0; }
  return select(0.0, params.dropScale, dropHash(b, h, i, j) >= params.dropThreshold);
}

// the multipliers of weights (b, h, i, j … j + 3), a quad of keys (common/attend-tile*.wgsl)
fn dropKeep4(b: u32, h: u32, i: u32, j: u32) -> vec4<f32> {
  if (!DROPOUT) { return vec4<f32>(1.0); }
  return vec4<f32>(dropKeep(b, h, i, j), dropKeep(b, h, i, j + 1u), dropKeep(b, h, i, j + 2u),
                   dropKeep(b, h, i, j + 3u));
}
