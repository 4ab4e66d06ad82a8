// AverageContext, the causal forward in one pass over x (lookback-chain.wgsl): each invocation
// loads its chunk of x once, learns the sum of all steps before it, then writes
// y[t] = C(x[t], x[t-1], c[t]) and, for min/max, the chunk's packed picks, as forward.wgsl does.
// With HAS_START it continues a decode state (start.wgsl): the state's sum joins the offset, its
// count the divisor, and x[-1] is its last token.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl, chunks.wgsl, start.wgsl and lookback-chain.wgsl

@group(0) @binding(0) var<storage, read> x: array<V>; // [B, T, D]
// the decode state, read when HAS_START (start.wgsl)
@group(0) @binding(1) var<storage, read> previous: array<V>; // [B, D]
@group(0) @binding(2) var<storage, read> sum: array<V>; // [B, D]
@group(0) @binding(3) var<storage, read> positions: array<i32>; // [B]
@group(0) @binding(4) var<storage, read_write> y: array<V>; // [B, T, D]
@group(0) @binding(5) var<storage, read_write> picks: array<VU>; // [B, numChunks, D]
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>; // lookback-chain.wgsl's
@group(0) @binding(7) var<uniform> params: Params; // total: tiles

const_assert PICKS_BITS * CHUNK <= 32u;

// the fallback's sum of a chunk of x
fn chunkSum(c: Cell) -> V {
  var s = V(0.0);
  for (var u = 0u; u < CHUNK; u++) { s += select(V(0.0), x[at(c, min(c.t0 + u, params.seqLen - 1u))], c.t0 + u < c.t1); }
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let tile = takeTile(lid);
  if (tile.ticket >= params.total) { return; }
  let T = params.seqLen;
  let c = chunkOf(tile, lid, tile.order);

  // the chunk, loaded once (clamped to the sequence: a constant trip count keeps loads in flight)
  var xs: array<V, CHUNK>;
  var own = V(0.0);
  for (var u = 0u; u < CHUNK; u++) {
    xs[u] = x[at(c, min(c.t0 + u, T - 1u))];
    if (c.t0 + u < T) { own += xs[u]; }
  }
  var prev = x[at(c, min(c.t0, T) - select(0u, 1u, c.t0 > 0u))];
  let before = sumBefore(tile, lid, own);
  if (!groupLive(tile, lid) || c.t0 >= T) { return; }

  let s = startOf(c);
  let offset = before + s.sum;
  if (c.t0 == 0u) { prev = firstPredecessor(s, prev); }
  var run = V(0.0);
  var packed = VU(0u);
  for (var u = 0u; u < CHUNK; u++) {
    let t = c.t0 + u;
    if (t < T) {
      run += xs[u];
      let ct = context(offset, run, t, s.count);
      y[at(c, t)] = combine3(xs[u], prev, ct);
      if (combinePicks()) { packed |= pickOf(xs[u], prev, ct) << VU(PICKS_BITS * u); }
      prev = xs[u];
    }
  }
  if (combinePicks()) { picks[picksAt(c, c.k)] = packed; }
}
