// Shared by the tiled passes whose invocations hold their query rows in registers (the rows'
// forward, common/attention-forward.wgsl, and dQ): a key quad's scores for those rows, from the
// tile store of common/key-quads.wgsl. Expects common/row-registers.wgsl, the row hooks' `channel`
// and `rowScores`, and the host's `const KL, BC4, RQ`.

// The scores (scale·q)·k of quad r4's keys for each of the invocation's rows (common/attend-tile.wgsl;
// a key past the tile's n keys is a zero key: its score is 0), which share each channel of the quad
// read here. Each is summed in the order of a lanesSum dot product (per lane of V over the channel
// groups, then across the lanes), the order in which the backward recomputes it: its weight then
// matches the forward's statistic. The lanes are spelled out, as the rows are: SwiftShader makes a
// vector indexed at run time slow. Where four lanes share a row, each sums its channel groups so
// and rowScores adds the four parts (common/row-quarters.wgsl).
fn tileScores(r4: u32, n: u32) -> array<vec4<f32>, RQ> {
  var sx$ = vec4<f32>(0.0);
  var sy$ = vec4<f32>(0.0);
  var sz$ = vec4<f32>(0.0);
  var sw$ = vec4<f32>(0.0);
  for (var x = 0u; x < KL; x++) {
    let c = channel(x);
    let k0 = kQuads[c][0][r4];
    let q$ = lanes4(qi$[x]);
    sx$ += q$.x * k0;
    if (V_LANES == 4u) {
      let k1 = kQuads[c][LANE1][r4];
      let k2 = kQuads[c][LANE2][r4];
      let k3 = kQuads[c][LANE3][r4];
      sy$ += q$.y * k1;
      sz$ += q$.z * k2;
      sw$ += q$.w * k3;
    }
  }
  var s: array<vec4<f32>, RQ>;
  s[$] = rowScores(sx$ + sy$ + sz$ + sw$);
  return s;
}
