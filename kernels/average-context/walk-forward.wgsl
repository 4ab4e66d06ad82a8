// AverageContext forward for a CPU adapter: one invocation per (b, channel or group of four)
// walks all T steps in order, keeping the running sum, so x is read once and no levels are
// built; the whole-sequence context reads x once more, for its total, first. Writes
// y[t] = C(x[t], x[t-1], c[t]) and, for min/max, the same packed picks as forward.wgsl.
// With HAS_START it continues a decode state (start.wgsl): the running sum starts from the
// state's, the count from its count, and x[-1] is its last token.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl, chunks.wgsl and start.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
// the decode state, read when HAS_START (start.wgsl)
@group(0) @binding(1) var<storage, read> previous: array<V>; // [B, D]
@group(0) @binding(2) var<storage, read> sum: array<V>; // [B, D]
@group(0) @binding(3) var<storage, read> positions: array<i32>; // [B]
@group(0) @binding(4) var<storage, read_write> y: array<V>; // [B, T, D]
@group(0) @binding(5) var<storage, read_write> picks: array<VU>; // [B, numChunks, D]
@group(0) @binding(6) var<uniform> params: Params;

const_assert PICKS_BITS * CHUNK <= 32u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = columnOf(i);
  var offset = V(0.0);
  if (!CAUSAL) {
    for (var t = 0u; t < c.t1; t++) { offset += x[at(c, t)]; }
  }
  let s = startOf(c);
  var run = s.sum;
  var prev = firstPredecessor(s, x[at(c, 0u)]);
  for (var k = 0u; k < chunksOf(c.t1); k++) {
    let t0 = k * CHUNK;
    var packed = VU(0u);
    for (var t = t0; t < min(t0 + CHUNK, c.t1); t++) {
      let j = at(c, t);
      let xt = x[j];
      run += xt;
      let ct = context(offset, run, t, s.count);
      y[j] = combine3(xt, prev, ct);
      if (combinePicks()) { packed |= pickOf(xt, prev, ct) << VU(PICKS_BITS * (t - t0)); }
      prev = xt;
    }
    if (combinePicks()) { picks[picksAt(c, k)] = packed; }
  }
}
