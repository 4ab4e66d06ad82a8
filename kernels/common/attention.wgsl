// Shared by the attention kernels: sizes, the causal mask and the GQA head mapping.
// Expects a `params` uniform.

struct Params {
  Tq: u32,
  Tk: u32,
  H: u32,
  Hkv: u32,
  scale: f32,
  causal: u32, // 1: key j is visible to query i iff j ≤ i + Tk − Tq (bottom-right aligned)
  chunk: u32, // split-K decode: keys per split (0 elsewhere)
  splits: u32, // split-K decode: ceil(Tk / chunk) (0 elsewhere)
}

// stands for −∞: finite, so that exp(NEG − m) is 0 and NEG − NEG is 0, never NaN
const NEG = -3.0e38;

// query head h reads key/value head ⌊h·Hkv/H⌋
fn kvHead(h: u32) -> u32 {
  return h * params.Hkv / params.H;
}

fn visible(i: u32, j: u32) -> bool {
  return params.causal == 0u || j + params.Tq <= i + params.Tk;
}

// One past the last key that any of the `rows` queries from `first` can see.
fn keysSeenByTile(first: u32, rows: u32) -> u32 {
  if (params.causal == 0u) { return params.Tk; }
  let last = min(first + rows, params.Tq); // one past the tile's last row
  return min(params.Tk, select(0u, last + params.Tk - params.Tq, last + params.Tk > params.Tq));
}
