// Shared by the attention passes that own a query row (the forward, dQ, the split-K decode): the
// row's registers, in the private address space, shared by the pass and its helpers (the
// forward's second row has its own, common/attend-tile-pair.wgsl). Expects the host's `const KV`.

var<private> qi: array<V, KV>; // scale·q_i, as every score is formed: (scale·q)·k
var<private> acc: array<V, KV>; // the row's accumulator: o's numerator, or dq

// Loads scale·q of the row at `base` into `to` (qi, or the tiled forward's second row's).
fn loadQuery(to: ptr<private, array<V, KV>>, base: u32) {
  for (var c = 0u; c < KV; c++) { (*to)[c] = q[base + c] * params.scale; }
}
