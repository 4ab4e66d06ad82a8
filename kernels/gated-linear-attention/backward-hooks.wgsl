// GatedLinearAttention's backward hooks (after scan/backward.wgsl's declarations). The packed
// output `grads` holds dv [B, T, H, V], then from offParts the per-key parts
// [3, B, T, H, K, eBlocks]: dk | d(scale·q) | dg per channel block, summed over the blocks
// afterwards.

// g's decay depends on the step and key only, so its gradient is the third part summed over channels
const PARTS: u32 = 3u;

fn partAt(cell: Cell, s: u32, p: u32, n: u32, block: u32) -> u32 {
  return params.offParts + ((p * params.B * params.T + tokenAt(cell, s)) * params.N + n) * params.eBlocks + block;
}

// part p of key channel n at step s, or 0 where hooks.wgsl read its input (k, q, g) as 0: such an
// input gets no gradient
fn keptPart(cell: Cell, s: u32, p: u32, n: u32, sum: f32) -> f32 {
  let at = keyAt(cell, s, n);
  let x = select(select(g[at], q[at], p == 1u), k[at], p == 0u);
  return select(0.0, sum, isFinite(x) && (p != 2u || x <= 0.0));
}

fn onDecay(cell: Cell, s: u32, n: u32, dl: f32) {}

fn afterState(cell: Cell, n: u32) {}

fn finishGrads(cell: Cell) {
  for (var s = 0u; s < cell.len; s++) {
    let at = seqAt(cell, s);
    grads[at] = select(0.0, dxs[s], isFinite(v[at]));
  }
}
