// Shared by the attention kernels: sizes, the causal mask, GQA head mapping and the
// cooperative load of a key/value tile. Expects `k` and `v` bindings.

struct Params {
  Tq: u32,
  Tk: u32,
  H: u32,
  Hkv: u32,
  scale: f32,
  causal: u32, // 1: key j is visible to query i iff j ≤ i + Tk − Tq (bottom-right aligned)
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

// Loads keys j0..j0+BC−1 of kv head hk (zeros past Tk) into the tiles, `threads` at a time.
fn loadTile(kt: ptr<workgroup, array<V, BC * KV>>, vt: ptr<workgroup, array<V, BC * KV>>,
            b: u32, hk: u32, j0: u32, lid: u32, threads: u32) {
  for (var e = lid; e < BC * KV; e += threads) {
    let j = j0 + e / KV;
    var kv = V(0.0);
    var vv = V(0.0);
    if (j < params.Tk) {
      let src = ((b * params.Tk + j) * params.Hkv + hk) * KV + e % KV;
      kv = k[src];
      vv = v[src];
    }
    (*kt)[e] = kv;
    (*vt)[e] = vv;
  }
}
