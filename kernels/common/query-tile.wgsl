// Shared by the attention backward kernels for dK and dV: the cooperative load of a tile of query
// rows and their output gradients into workgroup memory. Expects `q` and `dO` bindings and the
// host's `const KV, BC`.

// Loads rows i0..i0+BC−1 of query head h (zeros from `end` on) into the tiles, `threads` at a
// time. q is scaled as it is loaded, so that a score is formed exactly as the forward forms it,
// (scale·q)·k in the same order: otherwise a score much smaller than the products it sums rounds
// differently, and its weight drifts from the forward's.
fn loadQueryTile(qt: ptr<workgroup, array<V, BC * KV>>, dOt: ptr<workgroup, array<V, BC * KV>>,
                 b: u32, h: u32, i0: u32, end: u32, lid: u32, threads: u32) {
  for (var e = lid; e < BC * KV; e += threads) {
    let i = i0 + e / KV;
    var qv = V(0.0);
    var dov = V(0.0);
    if (i < end) {
      let src = ((b * params.Tq + i) * params.H + h) * KV + e % KV;
      qv = q[src] * params.scale;
      dov = dO[src];
    }
    (*qt)[e] = qv;
    (*dOt)[e] = dov;
  }
}
