// Attention backward skeleton, dK and dV (FlashAttention-2's), shared by
// FlashStyleTiledAttention, ExpressiveAttention and BlockSparse: per key row j of kv head hk,
// stream the queries that may see its tile (the layout's runs narrowed by queryRange and
// queryRangeIn, query tiles whose segment ids cannot meet the key tile's skipped), for every
// query head that reads hk, recompute s = scale·q·kᵀ and, from the forward's per-row statistic,
// each visible pair's weight p and dS (the mixer's `pairGrads`), and accumulate
// dv = Σ_i p_i·m_i·dO_i and dk = scale·Σ_i dS_i·q_i, m the dropout multiplier
// (common/dropout.wgsl; 1 without dropout). Summing over the query heads of a group is GQA's
// summed dK, dV.
// One workgroup per (tile of key rows, kv head hk, batch b), RQ adjacent key rows per invocation,
// which share every query and output gradient it reads from workgroup memory; a line holding the
// row mark is written once per key row (src/attention/kernel-source.ts, expandRows).
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/query-tile.wgsl, a layout (see common/attention-forward.wgsl; its tiles and runs here
// are the transposed plan's), the mixer's `rowFactor` and `pairGrads`, and the host's
// `const KV, BR, BC, RQ, NT` (NT = BR / RQ invocations per workgroup).

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>; // [B, H, Tq]: (the forward's row statistic, rowsum(dO∘o))
@group(0) @binding(5) var<storage, read> vis: array<i32>; // the packed int inputs (a tile plan first)
@group(0) @binding(6) var<storage, read_write> dk: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(7) var<storage, read_write> dv: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(8) var<uniform> params: Params;

var<workgroup> qTile: array<V, BC * KV>;
var<workgroup> dOTile: array<V, BC * KV>;
var<workgroup> factorTile: array<f32, BC>;
var<workgroup> deltaTile: array<f32, BC>;

var<private> kj$: array<V, KV>; // key row $
var<private> vj$: array<V, KV>; // its value
var<private> dkAcc$: array<V, KV>; // its dk, zero-initialised
var<private> dvAcc$: array<V, KV>; // its dv

// The (weight times its dropout multiplier, dS) of query e of the tile (row i of head h) and a
// key j of score s and dp = dO·v that it sees; (0, 0) for a key it does not see.
fn pairWeights(seen: bool, s: f32, dp: f32, b: u32, h: u32, i: u32, j: u32, e: u32) -> vec2<f32> {
  if (!seen) { return vec2<f32>(0.0); }
  // dropout: dP and the weight v is mixed with both carry the pair's multiplier
  let keep = dropKeep(b, h, i, j);
  let w = pairGrads(s, dp * keep, factorTile[e], deltaTile[e]);
  return vec2<f32>(w.x * keep, w.y);
}

// Folds query e of the tile (row i of head h) into those of the invocation's key rows j, j + 1,
// …, j + RQ − 1 (each at most `last`: a row past the tile's end repeats the last and is never
// written) that see it.
fn visitQuery(b: u32, h: u32, i: u32, e: u32, j: u32, last: u32) {
  let j$ = min(j + $u, last);
  let seen$ = keySeen(b, i, j$);
  var some = false;
  var every = true;
  some = some || seen$;
  every = every && seen$;
  if (!some) { return; }
  var sd$ = V(0.0);
  var pd$ = V(0.0);
  var live = false;
  for (var c = 0u; c < KV; c++) {
    let qc = qTile[e * KV + c];
    let dc = dOTile[e * KV + c];
    sd$ += qc * kj$[c];
    pd$ += vj$[c] * dc;
    live = live || any(dc != V(0.0));
  }
  // a query row whose output gradient is 0 adds nothing: skipping it keeps 0·NaN, from a
  // non-finite input it sees, out of these keys' gradients
  if (!live) { return; }
  let g$ = pairWeights(seen$, lanesSum(sd$), lanesSum(pd$), b, h, i, j$, e);
  if (every) {
    for (var c = 0u; c < KV; c++) {
      let qc = qTile[e * KV + c];
      let dc = dOTile[e * KV + c];
      dvAcc$[c] += g$.x * dc;
      dkAcc$[c] += g$.y * qc;
    }
  } else {
    // a key that cannot see the query never meets it: its q and dO may be non-finite
    if (seen$) { for (var c = 0u; c < KV; c++) { dvAcc$[c] += g$.x * dOTile[e * KV + c]; dkAcc$[c] += g$.y * qTile[e * KV + c]; } }
  }
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let hk = wid.y;
  loadLayout();
  let rows = tileRows(wid.x, params.Tk);
  let j = rows.x + RQ * lid;
  let last = rows.y - 1u;
  let base$ = ((b * params.Tk + min(j + $u, last)) * params.Hkv + hk) * KV;
  for (var c = 0u; c < KV; c++) { kj$[c] = k[base$ + c]; vj$[c] = v[base$ + c]; }

  let kSeg = keySegments(b, rows.x, rows.y - rows.x, lid);
  let queries = queryRangeIn(b, queryRange(b, rows.x, rows.y), kSeg);
  let runs = tileRuns(wid.x);
  let group = params.H / params.Hkv;
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    for (var r = runs.x; r < runs.y; r++) {
      let run = tileRun(r, params.Tq);
      let end = min(run.y, queries.y);
      for (var i0 = max(run.x, queries.x); i0 < end; i0 += BC) {
        let n = min(BC, end - i0);
        if (!segmentsMeet(kSeg, querySegments(b, i0, n, lid))) { continue; }
        workgroupBarrier();
        loadQueryTile(&qTile, &dOTile, b, h, i0, end, lid, NT);
        for (var e = lid; e < BC; e += NT) {
          let st = stats[(b * params.H + h) * params.Tq + min(i0 + e, end - 1u)];
          factorTile[e] = rowFactor(st.x);
          deltaTile[e] = st.y;
        }
        workgroupBarrier();
        if (j < rows.y) {
          for (var e = 0u; e < n; e++) { visitQuery(b, h, i0 + e, e, j, last); }
        }
      }
    }
  }
  // the q tile already carries the scale
  if (j + $u < rows.y) { for (var c = 0u; c < KV; c++) { dk[base$ + c] = dkAcc$[c]; dv[base$ + c] = dvAcc$[c]; } }
}
