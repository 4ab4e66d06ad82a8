// AverageContext, the last pass of the forward: y[t] = C(x[t], x[t-1], c[t]) with x[-1] := x[0],
// c[t] the causal running mean (or the whole-sequence mean), from the levels of chunk sums, an
// invocation a run of RUN chunks. For min/max it also saves each step's pick, packed PICKS_BITS
// a step, a u32 a chunk and channel.
// With HAS_START it continues a decode state (start.wgsl): the state's sum joins every offset,
// its count every divisor, and x[-1] is its last token.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl, chunks.wgsl, levels.wgsl and start.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> levels: array<V>; // [B, rows, D]
// the decode state, read when HAS_START (start.wgsl)
@group(0) @binding(2) var<storage, read> previous: array<V>; // [B, D]
@group(0) @binding(3) var<storage, read> sum: array<V>; // [B, D]
@group(0) @binding(4) var<storage, read> positions: array<i32>; // [B]
@group(0) @binding(5) var<storage, read_write> y: array<V>; // [B, T, D]
@group(0) @binding(6) var<storage, read_write> picks: array<VU>; // [B, numChunks, D]
@group(0) @binding(7) var<uniform> params: Params;

const_assert PICKS_BITS * CHUNK <= 32u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wid, nwg, lid);
  if (i >= params.total) { return; }
  let c = cellOf(i);
  let s = startOf(c);
  let offset = levelSum(c, c.k, false) + s.sum;
  let j0 = at(c, c.t0);
  var prev = x[select(j0, j0 - params.width, c.t0 > 0u)];
  if (c.t0 == 0u) { prev = firstPredecessor(s, prev); }
  var run = V(0.0);
  for (var r = 0u; r < RUN; r++) {
    let first = c.t0 + r * CHUNK;
    if (first < c.t1) {
      var packed = VU(0u);
      // unconditional loads (clamped to the cell) in a constant trip count, so a GPU can issue
      // them all before the first is used
      for (var u = 0u; u < CHUNK; u++) {
        let t = min(first + u, c.t1 - 1u);
        let j = at(c, t);
        let xt = x[j];
        if (first + u < c.t1) {
          run += xt;
          let ct = context(offset, run, t, s.count);
          y[j] = combine3(xt, prev, ct);
          if (combinePicks()) { packed |= pickOf(xt, prev, ct) << VU(PICKS_BITS * u); }
          prev = xt;
        }
      }
      if (combinePicks()) { picks[picksAt(c, c.k + r)] = packed; }
    }
  }
}
