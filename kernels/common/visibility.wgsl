// Shared by the attention kernels: the one visibility predicate (docs/attention-masks.md), and the ranges
// of keys (of queries) a tile of queries (of keys) may see, so that tiles no query sees are
// never loaded. Expects common/attention.wgsl, a `vis: array<i32>` binding (the int inputs
// packed by bindVisibility in src/attention/kernel-source.ts) and the host's `const NT`
// (invocations per workgroup). The int inputs' places are read from the buffer's header;
// causal and window travel in `params`.

// false when the call has no int input: every test below on one is then compiled out
override VISIBILITY: bool = false;

// the field of the call's one int input, kvLengths or queryOffsets, when `vis` is that input
// itself, with no header (a call no gradient reads, such as a decode step); −1 otherwise
override LONE: i32 = -1;

// where int input `field` starts in `vis`, or −1 when the call has none
fn visAt(field: u32) -> i32 {
  if (!VISIBILITY) { return -1; }
  if (LONE >= 0) { return select(-1, 0, field == u32(LONE)); }
  return vis[field];
}

// p_i of query i of batch row b: queryOffsets[b] + i, else Tk − Tq + i (bottom-right aligned)
fn queryPos(b: u32, i: u32) -> i32 {
  var off = i32(params.Tk) - i32(params.Tq);
  let at = visAt(OFFSETS_AT);
  if (at >= 0) { off = vis[u32(at) + b]; }
  return off + i32(i);
}

// the keys row b holds: kvLengths[b], else Tk
fn keyCount(b: u32) -> u32 {
  let at = visAt(LENGTHS_AT);
  if (at >= 0) { return min(u32(max(vis[u32(at) + b], 0)), params.Tk); }
  return params.Tk;
}

// key j is visible to query i of batch row b
fn visible(b: u32, i: u32, j: u32) -> bool {
  let p = queryPos(b, i);
  let jj = i32(j);
  let w = i32(params.window);
  var ok = j < keyCount(b);
  if (params.causal != 0u) { ok = ok && jj <= p; }
  if (w > 0) {
    ok = ok && jj > p - w;
    if (params.causal == 0u) { ok = ok && jj < p + w; }
  }
  let segQ = visAt(SEG_Q_AT);
  if (segQ >= 0) {
    ok = ok && vis[u32(segQ) + b * params.Tq + i] == vis[u32(visAt(SEG_K_AT)) + b * params.Tk + j];
  }
  let mask = visAt(MASK_AT);
  if (mask >= 0) {
    ok = ok && vis[u32(mask) + b * u32(vis[MASK_STRIDE_B]) + i * u32(vis[MASK_STRIDE_I]) + j] != 0;
  }
  return ok;
}

// The keys j0 … j0 + n − 1 (n ≤ 32) that query i of row b sees, as bits (bit r: key j0 + r).
// Without segment ids or a mask a query's keys are one interval, keyRange's for the query alone
// (the bounds `visible` tests), so its bits take a few instructions where testing each key takes
// several a key.
fn visibleKeys(b: u32, i: u32, j0: u32, n: u32) -> u32 {
  if (byIntervals()) { return intervalBits(keyRange(b, i, i + 1u), j0, n); }
  var seen = 0u;
  for (var r = 0u; r < n; r++) {
    if (visible(b, i, j0 + r)) { seen |= 1u << r; }
  }
  return seen;
}

// The queries i0 … i0 + n − 1 (n ≤ 32) of row b that see key j, as bits (bit u: query i0 + u):
// visibleKeys's twin, one interval, queryRange's for the key alone, where the call has no segment
// ids or mask.
fn visibleQueries(b: u32, j: u32, i0: u32, n: u32) -> u32 {
  if (byIntervals()) { return intervalBits(queryRange(b, j, j + 1u), i0, n); }
  var seen = 0u;
  for (var u = 0u; u < n; u++) {
    if (visible(b, i0 + u, j)) { seen |= 1u << u; }
  }
  return seen;
}

// Whether a row's visible rows of the other side are one interval: without segment ids or a mask.
fn byIntervals() -> bool {
  return visAt(SEG_Q_AT) < 0 && visAt(MASK_AT) < 0;
}

// The rows first … first + n − 1 (n ≤ 32) inside the interval [range.x, range.y), as bits.
fn intervalBits(range: vec2u, first: u32, n: u32) -> u32 {
  return lowBits(clamp(range.y, first, first + n) - first) & ~lowBits(clamp(range.x, first, first + n) - first);
}

// The k lowest bits set (k ≤ 32; a shift by 32 would shift by 0).
fn lowBits(k: u32) -> u32 {
  return select((1u << k) - 1u, 0xffffffffu, k >= 32u);
}

// The keys [first, end) that queries [i0, i1) of row b may see, from causal, window, the
// query offsets and kvLengths (i1 > i0).
fn keyRange(b: u32, i0: u32, i1: u32) -> vec2u {
  let pLo = queryPos(b, i0);
  let pHi = queryPos(b, i1 - 1u);
  let w = i32(params.window);
  var lo = 0;
  var hi = i32(keyCount(b));
  if (params.causal != 0u) { hi = min(hi, pHi + 1); }
  if (w > 0) {
    lo = max(lo, pLo - w + 1);
    if (params.causal == 0u) { hi = min(hi, pHi + w); }
  }
  return vec2u(u32(lo), u32(max(lo, hi)));
}

// The queries [first, end) of row b that may see a key of [j0, j1), the inverse of keyRange.
fn queryRange(b: u32, j0: u32, j1: u32) -> vec2u {
  let off = queryPos(b, 0u);
  let w = i32(params.window);
  var lo = 0;
  var hi = i32(params.Tq);
  if (j0 >= keyCount(b)) { hi = 0; }
  if (params.causal != 0u) { lo = max(lo, i32(j0) - off); }
  if (w > 0) {
    hi = min(hi, i32(j1) - 1 + w - off);
    if (params.causal == 0u) { lo = max(lo, i32(j0) - w + 1 - off); }
  }
  return vec2u(u32(lo), u32(max(lo, hi)));
}

var<workgroup> spanLo: atomic<i32>;
var<workgroup> spanHi: atomic<i32>;
var<workgroup> span: vec2<i32>;

// The least and greatest of vis[first .. first + n), the same for the whole workgroup: call
// it from uniform control flow.
fn idSpan(first: u32, n: u32, lid: u32) -> vec2<i32> {
  if (lid == 0u) {
    atomicStore(&spanLo, 2147483647);
    atomicStore(&spanHi, -2147483647 - 1);
  }
  workgroupBarrier();
  for (var e = lid; e < n; e += NT) {
    let id = vis[first + e];
    atomicMin(&spanLo, id);
    atomicMax(&spanHi, id);
  }
  workgroupBarrier();
  if (lid == 0u) { span = vec2<i32>(atomicLoad(&spanLo), atomicLoad(&spanHi)); }
  return workgroupUniformLoad(&span);
}

// The segment ids of queries [i0, i0 + n) of row b, as a span (any span without segments).
fn querySegments(b: u32, i0: u32, n: u32, lid: u32) -> vec2<i32> {
  let at = visAt(SEG_Q_AT);
  if (at < 0) { return vec2<i32>(0); }
  return idSpan(u32(at) + b * params.Tq + i0, n, lid);
}

// The segment ids of keys [j0, j0 + n) of row b, as a span.
fn keySegments(b: u32, j0: u32, n: u32, lid: u32) -> vec2<i32> {
  let at = visAt(SEG_K_AT);
  if (at < 0) { return vec2<i32>(0); }
  return idSpan(u32(at) + b * params.Tk + j0, n, lid);
}

// The first e of [lo, hi) with vis[first + e] > x (past) or ≥ x (!past), else hi; the ids
// there ascend.
fn firstPast(first: u32, lo: u32, hi: u32, x: i32, past: bool) -> u32 {
  var l = lo;
  var h = hi;
  while (l < h) {
    let m = (l + h) / 2u;
    let id = vis[first + m];
    if (id < x || (past && id == x)) { l = m + 1u; } else { h = m; }
  }
  return l;
}

// `range` of side `side` (0 queries, 1 keys) of row b, whose segment ids start at `at` (−1 if
// none), `len` per row, narrowed to the ids of `ids`, a tile's span of the other side: when the
// row's ids ascend (packed sequences; its order flag, common/segment-order.wgsl), the ones outside
// the span lie before and after it, so a tile visits only its own segments' rows; otherwise the
// range is kept and the per-tile span test skips.
fn segmentRange(at: i32, side: u32, len: u32, b: u32, range: vec2u, ids: vec2<i32>) -> vec2u {
  if (at < 0 || range.y <= range.x || vis[u32(vis[ORDER_AT]) + 2u * b + side] == 0) { return range; }
  let first = u32(at) + b * len;
  let lo = firstPast(first, range.x, range.y, ids.x, false);
  return vec2u(lo, firstPast(first, lo, range.y, ids.y, true));
}

// The keys of keyRange narrowed to those whose segment ids may meet `qSeg` (querySegments).
fn keyRangeIn(b: u32, keys: vec2u, qSeg: vec2<i32>) -> vec2u {
  return segmentRange(visAt(SEG_K_AT), 1u, params.Tk, b, keys, qSeg);
}

// The queries of queryRange narrowed to those whose segment ids may meet `kSeg` (keySegments).
fn queryRangeIn(b: u32, queries: vec2u, kSeg: vec2<i32>) -> vec2u {
  return segmentRange(visAt(SEG_Q_AT), 0u, params.Tq, b, queries, kSeg);
}

// Whether two spans of segment ids may share an id: packed (sorted) segments make most tiles
// of queries and keys disjoint, so their pairs are skipped whole.
fn segmentsMeet(a: vec2<i32>, c: vec2<i32>) -> bool {
  return a.x <= c.y && c.x <= a.y;
}
