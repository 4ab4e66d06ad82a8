// GatedLinearAttention's log forget gate g = logsigmoid(z)/normalizer of its logits z
// (src/mixers/gated-linear-attention/op.ts, logForgetGate), in one launch where tfjs ops take
// three (a negation, a softplus and a product); with BACKWARD, its gradient
// dz = dg·σ(−z)/normalizer, σ(−z) = 1/(1 + e^z) as tfjs's sigmoid forms it, in one where they
// take three. An invocation per number.

// needs common/grid.wgsl, log-gate-math.wgsl

struct Params {
  total: u32,
  normalizer: f32,
}

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> dg: array<f32>; // with BACKWARD; else a stand-in, never read
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // g, or with BACKWARD dz
@group(0) @binding(3) var<uniform> params: Params;

override BACKWARD: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  if (BACKWARD) {
    out[n] = dg[n] * (1.0 / (1.0 + exp(z[n]))) / params.normalizer;
  } else {
    out[n] = logGateOf(z[n], params.normalizer);
  }
}
