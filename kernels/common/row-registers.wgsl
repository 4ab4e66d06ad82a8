// Shared by the attention passes that own query rows (the forward, dQ, the split-K decode): each
// row's registers, in the private address space, shared by the pass and its helpers. A line that
// holds the row mark is written once per query row of the invocation, the mark replaced by the
// row's number (src/webgpu/copies.ts, expandCopies): qi0 and acc0 are the first row's.
// Expects the host's `const KV` and `const RQ` (rows per invocation).

var<private> qi$: array<V, KV>; // scale·q of row $, as every score is formed: (scale·q)·k
var<private> acc$: array<V, KV>; // row $'s accumulator: o's numerator, or dq

// Loads scale·q of the row at `base` into `to` (one of the rows' qi).
fn loadQuery(to: ptr<private, array<V, KV>>, base: u32) {
  for (var c = 0u; c < KV; c++) { (*to)[c] = q[base + c] * params.scale; }
}
