// Shared by the attention kernels: sizes, the visibility parameters and the GQA head mapping.
// Expects a `params` uniform.

struct Params {
  Tq: u32,
  Tk: u32,
  H: u32,
  Hkv: u32,
  scale: f32,
  causal: u32, // 1: key j is visible to query i only if j ≤ p_i (common/visibility.wgsl)
  chunk: u32, // split-K decode: keys per split; a split tiled pass: rows of the other side per chunk (0 elsewhere)
  splits: u32, // split-K decode, a split tiled pass: chunks of the other side (0 elsewhere)
  window: u32, // w of a sliding window, 0 for none
  planAt: u32, // BlockSparse: where the tile plan, or a decode step's key list, starts in `vis` (0 elsewhere)
  dropThreshold: u32, // attention dropout: a weight is kept iff its hash ≥ this (common/dropout.wgsl)
  dropSeed: u32, // attention dropout: the seed of the hash
  dropScale: f32, // attention dropout: 1/(1 − p), the multiplier of a kept weight
}

// stands for −∞: finite, so that exp(NEG − m) is 0 and NEG − NEG is 0, never NaN
const NEG = -3.0e38;

// query head h reads key/value head ⌊h·Hkv/H⌋
fn kvHead(h: u32) -> u32 {
  return h * params.Hkv / params.H;
}

// Where workgroup x of a tiled pass (the forward, dQ, dK/dV) works: its tile of rows, and the
// rows [first, end) of the other side (of `total`) it sweeps. A launch with params.splits > 0
// cuts the other side into chunks of params.chunk rows, workgroup x taking chunk x % splits of
// tile ⌊x / splits⌋, and writes partial results that a second launch combines
// (src/attention/skeleton.ts): where a launch has too few tiles to fill the GPU, each runs as
// several workgroups.
struct TilePart {
  tile: u32,
  part: u32,
  others: vec2u,
}

fn tilePart(x: u32, total: u32) -> TilePart {
  if (params.splits == 0u) { return TilePart(x, 0u, vec2u(0u, total)); }
  let s = x % params.splits;
  return TilePart(x / params.splits, s, vec2u(s * params.chunk, min(s * params.chunk + params.chunk, total)));
}

// Where a split launch writes chunk `part` of the row whose K channels start at `base` in a
// [B, T, H, K] gradient: its parts [B, T, H, splits, K] lie side by side. Unsplit, `base`.
fn partBase(base: u32, part: u32) -> u32 {
  return base * max(params.splits, 1u) + part * KV;
}

// Which keys of quad r4 (keys 4·r4 … 4·r4 + 3 of a tile, common/attend-tile.wgsl) are visible,
// from the tile's bits `seen`.
fn quadSeen(seen: u32, r4: u32) -> vec4<bool> {
  return (vec4<u32>(seen >> (4u * r4)) & vec4<u32>(1u, 2u, 4u, 8u)) != vec4<u32>(0u);
}

// A tile stored by quads, transposed (common/key-quads.wgsl, common/query-tile.wgsl): entry
// [c][l][r4] holds lane l of channel group c of rows 4·r4 … 4·r4 + 3. Three indices, not one
// flat (c·V_LANES + l)·BC4 + r4 (the same layout): WebGPU clamps every array index it cannot
// prove in bounds, and a pass reads a quad at every channel, so the quad's index, clamped once,
// serves them all, a lane's is a constant, and a channel group's, known once a GPU's compiler
// unrolls the loop over channels (or clamped once for its four lanes), costs little or nothing.
alias QuadTile = array<array<array<vec4<f32>, BC4>, V_LANES>, KV>;

// Lanes 1, 2 and 3 of a V as indices within V_LANES entries (all 0 where V is one float): WGSL
// checks a constant index even under `if (V_LANES == 4u)`, which then never runs.
const LANE1 = min(1u, V_LANES - 1u);
const LANE2 = min(2u, V_LANES - 1u);
const LANE3 = min(3u, V_LANES - 1u);

// Channel group c of quad r4's four rows in a QuadTile: one vec4 per lane of V (the four rows'
// values of that channel), zeros past V_LANES.
fn quadChannels(tile: ptr<workgroup, QuadTile>, r4: u32, c: u32) -> array<vec4<f32>, 4> {
  var x: array<vec4<f32>, 4>;
  x[0] = (*tile)[c][0][r4];
  if (V_LANES == 4u) {
    x[1] = (*tile)[c][LANE1][r4];
    x[2] = (*tile)[c][LANE2][r4];
    x[3] = (*tile)[c][LANE3][r4];
  }
  return x;
}

// Writes channel group c of quad r4's four rows into a QuadTile, transposed (quadChannels reads it
// back): rows[u] is row u's channel group as a vec4 (lanes4).
fn storeQuad(tile: ptr<workgroup, QuadTile>, r4: u32, c: u32, rows: array<vec4<f32>, 4>) {
  let x = transpose(mat4x4<f32>(rows[0], rows[1], rows[2], rows[3]));
  (*tile)[c][0][r4] = x[0];
  if (V_LANES == 4u) {
    (*tile)[c][LANE1][r4] = x[1];
    (*tile)[c][LANE2][r4] = x[2];
    (*tile)[c][LANE3][r4] = x[3];
  }
}

// acc + Σ_u w[u]·(row u of a quad) at one channel group, from its quadChannels `x`, as a V; a row
// outside `take` is read as 0, so that a row that does not meet the weights, which may be
// non-finite, adds nothing. Where every row is taken (a causal triangle's interior) each row's
// product is added to acc in turn, a multiply-add a lane and row; the selects, dot products and
// their sum that the rest takes are more than twice the instructions.
fn quadRowsAdd(acc: V, x: array<vec4<f32>, 4>, w: vec4<f32>, take: vec4<bool>) -> V {
  if (all(take)) {
    let rows = transpose(mat4x4<f32>(x[0], x[1], x[2], x[3]));
    return acc + fromLanes4(rows[0]) * w.x + fromLanes4(rows[1]) * w.y + fromLanes4(rows[2]) * w.z + fromLanes4(rows[3]) * w.w;
  }
  let z = vec4<f32>(0.0);
  return acc + fromLanes4(vec4<f32>(dot(w, select(z, x[0], take)), dot(w, select(z, x[1], take)),
                                    dot(w, select(z, x[2], take)), dot(w, select(z, x[3], take))));
}
