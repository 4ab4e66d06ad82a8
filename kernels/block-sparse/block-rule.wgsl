// BlockSparse's layout and its rule for one block (docs/block-sparse.md), shared by the layout
// hooks (layout.wgsl) and the decode step's gather lists (step-keys.wgsl); blockActive in
// src/mixers/block-sparse/layout.ts is the host's.

struct BlockLayout {
  b: u32, // tokens per block
  w: u32, // local window in blocks, the diagonal included
  g: u32, // global blocks
  s: u32, // stride in blocks, 0 for none
}

// key block J is active for query block I ≥ J: local, global or on the stride
fn blockActive(I: u32, J: u32, l: BlockLayout) -> bool {
  let d = I - J;
  return d < l.w || J < l.g || (l.s > 0u && d % l.s == 0u);
}
