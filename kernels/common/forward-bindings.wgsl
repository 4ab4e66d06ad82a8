// Shared by the tiled attention forwards (common/attention-forward.wgsl, by rows, and
// common/attention-forward-blocks.wgsl, by blocks of scores): their bindings.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> vis: array<i32>; // the packed int inputs (a tile plan first)
// [B, Tq, H, K]; of a split launch (tilePart), each chunk's unnormalised accumulator [B, H, Tq, splits, K]
@group(0) @binding(4) var<storage, read_write> o: array<V>;
// [B, H, Tq]: the row statistic; of a split launch, each chunk's packRow [B, H, Tq, splits, 2]
@group(0) @binding(5) var<storage, read_write> stat: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
