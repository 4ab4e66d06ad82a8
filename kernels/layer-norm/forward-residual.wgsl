// The LayerNorm forward's bindings (forward.wgsl) for a residual sum: it normalises x + r, the
// sum formed as it is read, and writes the sum too (`ops.addLayerNorm`, where no gradient is
// recorded: one launch where an add and the norm take two).

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> r: array<V>;
@group(0) @binding(2) var<storage, read> gamma: array<V>;
@group(0) @binding(3) var<storage, read> beta: array<V>;
@group(0) @binding(4) var<storage, read_write> y: array<V>;
@group(0) @binding(5) var<storage, read_write> moments: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> sum: array<V>;
@group(0) @binding(7) var<uniform> params: Params;

fn load(i: u32) -> V {
  return x[i] + r[i];
}

fn keep(i: u32, v: V) {
  sum[i] = v;
}

fn finish(i: u32, y: V) -> V {
  return y;
}
