// Shared by the attention backward's passes (dQ, dK/dV): their input bindings, each pass's
// outputs and params bound after them.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>; // [B, H, Tq]: (the forward's row statistic, rowsum(dO∘o))
@group(0) @binding(5) var<storage, read> vis: array<i32>; // the packed int inputs (a tile plan first)
