// Shared by the attention backward's dQ passes (common/attention-backward-dq.wgsl, by rows, and
// common/attention-backward-dq-blocks.wgsl, by blocks of scores): their output and params
// bindings, and a quad of keys' dS. Expects common/backward-bindings.wgsl and the mixer's
// `pairGrads`.

@group(0) @binding(6) var<storage, read_write> dq: array<V>; // [B, Tq, H, K]; of a split launch, [B, Tq, H, splits, K]
@group(0) @binding(7) var<uniform> params: Params;

// The dS of a quad of keys for one row, from their scores s, dp = dO·v (times each key's dropout
// multiplier: see pairGrads) and the row's factor and delta; 0 for a key the row does not see.
fn quadGrads(seen: vec4<bool>, s: vec4<f32>, dp: vec4<f32>, factor: f32, delta: f32) -> vec4<f32> {
  let ds = vec4<f32>(pairGrads(s.x, dp.x, factor, delta).y, pairGrads(s.y, dp.y, factor, delta).y,
                     pairGrads(s.z, dp.z, factor, delta).y, pairGrads(s.w, dp.w, factor, delta).y);
  return select(vec4<f32>(0.0), ds, seen);
}
