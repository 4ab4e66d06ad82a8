// AverageContext, the causal backward in one pass over dy (lookback-chain.wgsl, REVERSED: the scan
// runs from the last step): each invocation loads its chunk of dy and the forward's picks once,
// learns the sum of r[u] = dy[u]·∂C/∂c[u]·∂c[u]/∂x over the steps after its chunk, then writes
//   dx[t] = dy[t]·∂C_t/∂x[t] + dy[t+1]·∂C_{t+1}/∂x[t] (+ dy[0]·∂C_0/∂x[-1] at t = 0) + Σ_{u ≥ t} r[u]
// as walk-backward.wgsl does.
// needs common/grid.wgsl, common/lanes-*.wgsl, combine.wgsl, chunks.wgsl, picks.wgsl and lookback-chain.wgsl

@group(0) @binding(0) var<storage, read> dy: array<V>; // [B, T, D]
@group(0) @binding(1) var<storage, read> picks: array<VU>; // [B, numChunks, D], the forward's
@group(0) @binding(2) var<storage, read_write> dx: array<V>; // [B, T, D]
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>; // lookback-chain.wgsl's
@group(0) @binding(4) var<uniform> params: Params; // total: tiles

// r[t] from dy[t] and its pick
fn share(g: V, packed: VU, c: Cell, u: u32) -> V {
  return weightsOf(pickAt(packed, u)).c * g * contextWeight(c.t0 + u);
}

// the fallback's sum of r over a chunk
fn chunkSum(c: Cell) -> V {
  let packed = picksOf(c, c.k);
  var s = V(0.0);
  for (var u = 0u; u < CHUNK; u++) {
    let g = dy[at(c, min(c.t0 + u, params.seqLen - 1u))];
    s += select(V(0.0), share(g, packed, c, u), c.t0 + u < c.t1);
  }
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let tile = takeTile(lid);
  if (tile.ticket >= params.total) { return; }
  let T = params.seqLen;
  let c = chunkOf(tile, lid, tile.order);

  // the chunk and the step after it, loaded once (clamped to the sequence, as in the forward)
  var gs: array<V, CHUNK>;
  let packed = picksOf(c, c.k);
  var own = V(0.0);
  for (var u = 0u; u < CHUNK; u++) {
    gs[u] = dy[at(c, min(c.t0 + u, T - 1u))];
    if (c.t0 + u < T) { own += share(gs[u], packed, c, u); }
  }
  let after = c.t0 + CHUNK;
  // the next step's share as x[t]'s successor: its pick is the first of the next chunk's
  var fromNext = weightsOf(pickAt(picksOf(c, c.k + 1u), 0u)).p * dy[at(c, min(after, T - 1u))];
  fromNext = select(V(0.0), fromNext, after < T);
  var later = sumBefore(tile, lid, own);
  if (!groupLive(tile, lid) || c.t0 >= T) { return; }

  for (var i = 0u; i < CHUNK; i++) {
    let u = CHUNK - 1u - i;
    let t = c.t0 + u;
    if (t < T) {
      let w = weightsOf(pickAt(packed, u));
      later += share(gs[u], packed, c, u);
      var acc = w.a * gs[u] + fromNext + later;
      if (t == 0u) { acc += w.p * gs[u]; }
      dx[at(c, t)] = acc;
      fromNext = w.p * gs[u];
    }
  }
}
