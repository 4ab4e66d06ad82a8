// Shared by the attention backward kernels for dK and dV: the cooperative load of a tile of query
// rows and their output gradients into workgroup memory, by quads of four rows transposed (a
// QuadTile, common/attention.wgsl), so that a key row forms the scores of a quad as one vec4.
// Expects `q` and `dO` bindings and the host's `const KV, BC4, NT`.

var<workgroup> qQuads: QuadTile;
var<workgroup> dOQuads: QuadTile;

// Loads rows i0..i0+BC−1 of query head h (zeros from `end` on) into the tiles, NT lanes at a time:
// each takes channel group c of a quad's four rows and writes it transposed. q is scaled as it is
// loaded, so that a score is formed exactly as the forward forms it, (scale·q)·k in the same
// order: otherwise a score much smaller than the products it sums rounds differently, and its
// weight drifts from the forward's.
fn loadQueryTile(b: u32, h: u32, i0: u32, end: u32, lid: u32) {
  for (var e = lid; e < BC4 * KV; e += NT) {
    let e4 = e / KV;
    let c = e % KV;
    var qs: array<vec4<f32>, 4>;
    var ds: array<vec4<f32>, 4>;
    for (var u = 0u; u < 4u; u++) {
      let i = i0 + 4u * e4 + u;
      if (i < end) {
        let src = ((b * params.Tq + i) * params.H + h) * KV + c;
        qs[u] = lanes4(q[src] * params.scale);
        ds[u] = lanes4(dO[src]);
      }
    }
    storeQuad(&qQuads, e4, c, qs);
    storeQuad(&dOQuads, e4, c, ds);
  }
}
