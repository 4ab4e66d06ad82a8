// Shared by the attention passes that own query rows (the forward, dQ, the split-K decode): each
// row's registers, in the private address space, shared by the pass and its helpers. A line that
// holds the row mark is written once per query row of the invocation, the mark replaced by the
// row's number (src/webgpu/copies.ts, expandCopies): qi0 and acc0 are the first row's. An
// invocation holds KL of a row's KV channel groups, register x holding group channel(x): all of
// them (common/row-whole.wgsl), or a quarter where four lanes share each row
// (common/row-quarters.wgsl). Expects the host's `const KL` and `const RQ` (rows per invocation)
// and the row hooks' `channel`.

var<private> qi$: array<V, KL>; // scale·q of row $, as every score is formed: (scale·q)·k
var<private> acc$: array<V, KL>; // row $'s accumulator: o's numerator, or dq

// Loads the invocation's channels of scale·q of the row at `base` into `to` (one of the rows' qi).
fn loadQuery(to: ptr<private, array<V, KL>>, base: u32) {
  for (var x = 0u; x < KL; x++) { (*to)[x] = q[base + channel(x)] * params.scale; }
}
