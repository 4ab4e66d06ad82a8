// Shared by the attention passes that own a query row (the forward, dQ, the split-K decode): the
// row's registers, in the private address space so that the pass and its hooks
// (common/online-softmax.wgsl, …) share them without pointers. Expects the host's `const KV`.

var<private> qi: array<V, KV>; // scale·q_i, as every score is formed: (scale·q)·k
var<private> acc: array<V, KV>; // the row's accumulator: o's numerator, or dq

// Loads scale·q of the row at `base` into qi.
fn loadQuery(base: u32) {
  for (var c = 0u; c < KV; c++) { qi[c] = q[base + c] * params.scale; }
}
