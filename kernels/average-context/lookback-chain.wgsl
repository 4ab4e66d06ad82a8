// Shared by AverageContext's one-pass kernels (lookback-forward.wgsl, lookback-backward.wgsl): a
// chained scan with decoupled look-back and fallback. Where the levels scan reads its input twice,
// once for the chunk sums and once for the output, each workgroup here loads its tile once, into
// registers, and learns the sum of all steps before the tile (in the scan's order: the backward
// scans from the last step) from the tiles before it.
//
// A tile is PARTS chunks of CHUNK steps of COLS channel groups (WG = COLS·PARTS invocations); an
// invocation holds one chunk of one group. Workgroups take tiles in the order they start, from an
// atomic ticket, so a tile's predecessors have all started. Each publishes its tile's sum (the
// aggregate) as soon as it has it, then looks back: the PARTS invocations of a group read the
// nearest PARTS·LOOK predecessors at once, adding aggregates until one has published its
// inclusive sum (everything up to its end). The tile then publishes its own inclusive sum.
//
// WebGPU does not promise that a started workgroup makes progress while another waits on it, so
// a predecessor that has published nothing for SPINS rounds is summed from the input here (the
// fallback, the entry point's `chunkSum`): no wait depends on another workgroup being scheduled.
//
// Published sums are float bits in atomic words (WGSL's atomics are relaxed: a flag in another
// word would not order the sum), NOT_READY (a NaN no arithmetic here produces) where unwritten:
// every word is set to it before each launch (common/fill.wgsl). Word 0 is the ticket; then per tile, in
// ticket order, COLS·V_LANES words of aggregates, then as many of inclusive sums. The entry
// point binds them as `status: array<atomic<u32>>` and defines `fn chunkSum(c: Cell) -> V`.
// needs common/grid.wgsl, common/lanes-*.wgsl and chunks.wgsl

// `const NOT_READY: u32` is prepended by kernel.ts, its single definition
const_assert NOT_READY == 0xffffffffu; // takeTile's first ticket wraps to 0
override COLS: u32 = 64u;
override PARTS: u32 = WG / COLS;
// true: the scan runs from the last step down (the backward's sums over later steps)
override REVERSED: bool = false;
// rounds a workgroup waits on a predecessor that has published nothing before summing it itself
override SPINS: u32 = 16u;
// what tiles publish: 2 both sums; for the tests, which then take one path of the look-back
// back to the first tile whatever the timing, 1 the aggregates alone (the first tile's inclusive
// sum its only one) or 0 nothing, so that every predecessor is summed from the input (the fallback)
override PUBLISHED: u32 = 2u;

// the most predecessors an invocation reads in a round of the look-back: a group's PARTS read 16
// to 64 at once, so that a tile among many started together reaches an inclusive sum in a few rounds
const LOOK = 4u;

const AGGREGATE = 0u;
const INCLUSIVE = 1u;
// an invocation's find in a round of the look-back: the predecessors it added, nearest first,
// and ENDED where the last was an inclusive sum
const ENDED = 0x100u;

var<workgroup> ticket: u32;
// each invocation's chunk sum; in the look-back, the sum it read or (fallback) summed
var<workgroup> sums: array<V, WG>;
var<workgroup> found: array<u32, WG>;
// per channel group: the sum before the tile found so far, 1 + the nearest predecessor not yet
// added (0: the look-back is done), and rounds it has waited on it
var<workgroup> carry: array<V, COLS>;
var<workgroup> lookAt: array<u32, COLS>;
var<workgroup> waited: array<u32, COLS>;
var<workgroup> pending: u32;

// A workgroup's tile, the same for all its invocations.
struct Tile {
  ticket: u32, // its status words' place; at or past params.total, no tile (a folded grid's spare)
  order: u32, // its place in the scan's order of tiles
  perTile: u32, // tickets per place: every batch and block of channel groups
  b: u32,
  block: u32, // its block of COLS channel groups
}

// Takes the next ticket: tiles in the order workgroups start, a place of the scan's order slowest.
fn takeTile(lid: u32) -> Tile {
  // word 0 starts at NOT_READY, all bits set, as every word does: u32 arithmetic wraps, so the
  // first ticket is 0
  if (lid == 0u) { ticket = atomicAdd(&status[0], 1u) + 1u; }
  let g = workgroupUniformLoad(&ticket);
  let perTile = params.total / tilesOf(params.seqLen);
  let blocks = (params.width + COLS - 1u) / COLS;
  return Tile(g, g / perTile, perTile, (g % perTile) / blocks, g % blocks);
}

fn tilesOf(T: u32) -> u32 {
  return (T + PARTS * CHUNK - 1u) / (PARTS * CHUNK);
}

// The chunk (of the sequence, CHUNK steps) at chunk `part` of the tile at `order` in the scan's order.
fn chunkAt(order: u32, part: u32) -> u32 {
  let k = order * PARTS + part;
  return select(k, tilesOf(params.seqLen) * PARTS - 1u - k, REVERSED);
}

// Invocation lid's chunk of the tile at `order` in the scan's order (its own tile's, or a
// predecessor's), in the tile's batch and lid's channel group: its steps past the sequence (the
// last tile's) empty. A group past the width reads the last group's, and writes nothing (groupLive).
fn chunkOf(tile: Tile, lid: u32, order: u32) -> Cell {
  let k = chunkAt(order, lid / COLS);
  return Cell(tile.b, k, min(tile.block * COLS + lid % COLS, params.width - 1u), k * CHUNK, min(k * CHUNK + CHUNK, params.seqLen));
}

fn groupLive(tile: Tile, lid: u32) -> bool {
  return tile.block * COLS + lid % COLS < params.width;
}

fn statusAt(tileTicket: u32, kind: u32, col: u32) -> u32 {
  return 1u + ((tileTicket * 2u + kind) * COLS + col) * V_LANES;
}

fn publish(word: u32, v: V) {
  let bits = bitcast<vec4<u32>>(lanes4(v));
  for (var l = 0u; l < V_LANES; l++) {
    // a NaN whose bits are NOT_READY (from the input itself) is published as the usual quiet NaN
    atomicStore(&status[word + l], select(bits[l], 0x7fc00000u, bits[l] == NOT_READY));
  }
}

struct Published {
  ready: bool, // every lane's word written
  value: V,
}

fn peek(word: u32) -> Published {
  var bits = vec4<u32>(0u);
  var ready = true;
  for (var l = 0u; l < V_LANES; l++) {
    bits[l] = atomicLoad(&status[word + l]);
    ready = ready && bits[l] != NOT_READY;
  }
  return Published(ready, fromLanes4(bitcast<vec4<f32>>(bits)));
}

// The sum of everything before invocation lid's chunk in the scan's order, for its channel group:
// the tiles before (the look-back) and the chunks before it in the tile. `own` is its chunk's
// sum. Publishes the tile's sums. Every invocation calls it, in uniform control flow.
fn sumBefore(tile: Tile, lid: u32, own: V) -> V {
  let live = groupLive(tile, lid);
  let col = lid % COLS;
  let part = lid / COLS;
  sums[lid] = own;
  workgroupBarrier();
  var before = V(0.0);
  for (var p = 0u; p < part; p++) { before += sums[p * COLS + col]; }
  let aggregate = before + own;
  if (part == PARTS - 1u) {
    if (PUBLISHED > 0u && live) { publish(statusAt(tile.ticket, select(AGGREGATE, INCLUSIVE, tile.order == 0u), col), aggregate); }
    carry[col] = V(0.0);
    lookAt[col] = select(0u, tile.order, live);
    waited[col] = 0u;
  }
  workgroupBarrier();
  if (tile.order == 0u) { return before; }

  // predecessors each invocation reads a round: 1 at first, so that a tile whose predecessor is
  // done reads little, then twice as many a round up to LOOK
  var span = 1u;
  loop {
    // each invocation reads the part-th `span` nearest predecessors of its group not yet added, at
    // once, and adds them nearest first up to the first gap or inclusive sum
    let next = lookAt[col];
    var reached = 0u;
    var ended = false;
    var value = V(0.0);
    var theirs: array<Published, LOOK>; // not ready unless read
    var inclusive: array<Published, LOOK>;
    for (var j = 0u; j < LOOK; j++) {
      let back = part * span + j;
      if (j < span && back < next) {
        let pred = (next - 1u - back) * tile.perTile + tile.ticket % tile.perTile;
        theirs[j] = peek(statusAt(pred, AGGREGATE, col));
        inclusive[j] = peek(statusAt(pred, INCLUSIVE, col));
      }
    }
    for (var j = 0u; j < span; j++) {
      if (!theirs[j].ready && !inclusive[j].ready) { break; }
      value += select(theirs[j].value, inclusive[j].value, inclusive[j].ready);
      reached += 1u;
      if (inclusive[j].ready) {
        ended = true;
        break;
      }
    }
    found[lid] = reached | select(0u, ENDED, ended);
    sums[lid] = value;
    workgroupBarrier();
    // one invocation per group adds the invocations' finds, nearest first, up to the first gap
    if (part == 0u && next > 0u) {
      var acc = carry[col];
      var nearest = next;
      for (var p = 0u; p < PARTS; p++) {
        let f = found[p * COLS + col];
        acc += sums[p * COLS + col];
        nearest = select(nearest - (f & ~ENDED), 0u, (f & ENDED) != 0u);
        if ((f & ENDED) != 0u || f < span) { break; }
      }
      carry[col] = acc;
      waited[col] = select(0u, waited[col] + 1u, nearest == next);
      lookAt[col] = nearest;
    }
    workgroupBarrier();
    // the fallback: a predecessor that has published nothing for SPINS rounds, summed from the input
    let recompute = lookAt[col] > 0u && waited[col] > SPINS;
    if (recompute) {
      sums[lid] = chunkSum(chunkOf(tile, lid, lookAt[col] - 1u));
    }
    workgroupBarrier();
    if (part == 0u && recompute) {
      var acc = carry[col];
      for (var p = 0u; p < PARTS; p++) { acc += sums[p * COLS + col]; }
      carry[col] = acc;
      lookAt[col] -= 1u;
      waited[col] = 0u;
    }
    workgroupBarrier();
    if (lid == 0u) {
      var n = 0u;
      for (var cc = 0u; cc < COLS; cc++) { n += select(0u, 1u, lookAt[cc] > 0u); }
      pending = n;
    }
    if (workgroupUniformLoad(&pending) == 0u) { break; }
    span = min(2u * span, LOOK);
  }
  if (PUBLISHED == 2u && live && part == PARTS - 1u) { publish(statusAt(tile.ticket, INCLUSIVE, col), carry[col] + aggregate); }
  return carry[col] + before;
}
