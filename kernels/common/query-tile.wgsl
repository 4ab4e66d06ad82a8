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
    let at = c * V_LANES * BC4 + e4;
    qQuads[at] = vec4<f32>(qs[0].x, qs[1].x, qs[2].x, qs[3].x);
    dOQuads[at] = vec4<f32>(ds[0].x, ds[1].x, ds[2].x, ds[3].x);
    if (V_LANES == 4u) {
      qQuads[at + BC4] = vec4<f32>(qs[0].y, qs[1].y, qs[2].y, qs[3].y);
      qQuads[at + 2u * BC4] = vec4<f32>(qs[0].z, qs[1].z, qs[2].z, qs[3].z);
      qQuads[at + 3u * BC4] = vec4<f32>(qs[0].w, qs[1].w, qs[2].w, qs[3].w);
      dOQuads[at + BC4] = vec4<f32>(ds[0].y, ds[1].y, ds[2].y, ds[3].y);
      dOQuads[at + 2u * BC4] = vec4<f32>(ds[0].z, ds[1].z, ds[2].z, ds[3].z);
      dOQuads[at + 3u * BC4] = vec4<f32>(ds[0].w, ds[1].w, ds[2].w, ds[3].w);
    }
  }
}
