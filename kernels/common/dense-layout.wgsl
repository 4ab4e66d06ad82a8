// The layout hooks of common/attention-{forward,backward-dq,backward-dkv}.wgsl for dense
// attention (FlashStyleTiledAttention, ExpressiveAttention): tile t is rows [t·BR, t·BR + BR),
// with one run of every row on the other side, which the skeleton narrows to the visible range.
// Expects common/visibility.wgsl and the host's `const BR`.

fn loadLayout() {}

// rows [first, end) of tile t, of `total` rows
fn tileRows(t: u32, total: u32) -> vec2u {
  return vec2u(t * BR, min(t * BR + BR, total));
}

// the runs [first, end) of tile t: one
fn tileRuns(t: u32) -> vec2u {
  return vec2u(0u, 1u);
}

// run r, over `total` rows of the other side: all of them
fn tileRun(r: u32, total: u32) -> vec2u {
  return vec2u(0u, total);
}

// the keys j0 … j0 + n − 1 that query i of row b sees, as bits
fn keysSeen(b: u32, i: u32, j0: u32, n: u32) -> u32 {
  return visibleKeys(b, i, j0, n);
}

// the queries i0 … i0 + n − 1 of row b that see key j, as bits
fn queriesSeen(b: u32, j: u32, i0: u32, n: u32) -> u32 {
  return visibleQueries(b, j, i0, n);
}
