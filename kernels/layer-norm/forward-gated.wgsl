// The LayerNorm forward's bindings (forward.wgsl) for RMSNorm with a swish output gate:
// y·swish(gate) = y·gate·σ(gate), σ(v) = 1/(1 + e^{−v}) as tfjs's sigmoid kernel forms it
// (GatedLinearAttention's readout, where no gradient is recorded: one launch where the norm, the
// gate's activation and the product take three, or two with the activation in a projection's
// epilogue). beta is a stand-in, never read (CENTRED off).

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> gamma: array<V>;
@group(0) @binding(2) var<storage, read> beta: array<V>;
@group(0) @binding(3) var<storage, read> gate: array<V>; // the shape of x
@group(0) @binding(4) var<storage, read_write> y: array<V>;
@group(0) @binding(5) var<storage, read_write> moments: array<vec2<f32>>;
@group(0) @binding(6) var<uniform> params: Params;

fn load(i: u32) -> V {
  return x[i];
}

fn keep(i: u32, v: V) {}

fn finish(i: u32, y: V) -> V {
  let g = gate[i];
  return y * (g * (1.0 / (1.0 + exp(-g))));
}
