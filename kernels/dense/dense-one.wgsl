// Dense's job for one product, C [M, N] = op(A)·op(B) + bias: a block of ROWS rows by four
// columns per invocation, its sum in one part.

struct Params {
  M: u32,
  K: u32,
  N: u32,
}

// the block's first row and column (a row ≥ M: no block)
fn locate(i: u32) -> vec2<u32> {
  let quads = (params.N + 3u) / 4u;
  return vec2<u32>((i / quads) * ROWS, (i % quads) * 4u);
}

fn hasPart0() -> bool { return true; }
fn depth0() -> u32 { return params.K; }
fn width0() -> u32 { return params.N; }
fn outWidth() -> u32 { return params.N; }
