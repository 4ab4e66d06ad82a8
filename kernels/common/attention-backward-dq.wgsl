// Attention backward, dQ (FlashAttention-2's), shared by FlashStyleTiledAttention and
// ExpressiveAttention: per query row, recompute the scores s = scale·q·kᵀ tile by tile and, from
// the forward's per-row statistic, each pair's dS (the mixer's `pairGrads`), then
// dq = scale·Σ_j dS_j·k_j. Same grid as the forward: one workgroup per (tile of BR query rows,
// head h, batch b).
// needs common/lanes-*.wgsl, common/attention.wgsl, common/kv-tile.wgsl, the mixer's
// `rowFactor` and `pairGrads`, and the host's `const KV, BR, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> dO: array<V>; // [B, Tq, H, K]
@group(0) @binding(4) var<storage, read> saved: array<f32>; // [B, H, Tq]: the forward's row statistic
@group(0) @binding(5) var<storage, read> delta: array<f32>; // [B, H, Tq]: rowsum(dO∘o)
@group(0) @binding(6) var<storage, read_write> dq: array<V>; // [B, Tq, H, K]
@group(0) @binding(7) var<uniform> params: Params; // sizes, scale, causal

var<workgroup> kTile: array<V, BC * KV>;
var<workgroup> vTile: array<V, BC * KV>;

@compute @workgroup_size(BR)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let hk = kvHead(h);
  let i = wid.x * BR + lid;
  let rowOk = i < params.Tq;
  let row = (b * params.H + h) * params.Tq + min(i, params.Tq - 1u);
  let factor = rowFactor(saved[row]);
  let rowDelta = delta[row];

  var qi: array<V, KV>;
  var doi: array<V, KV>;
  var acc: array<V, KV>;
  let base = ((b * params.Tq + min(i, params.Tq - 1u)) * params.H + h) * KV;
  for (var c = 0u; c < KV; c++) {
    qi[c] = q[base + c] * params.scale;
    doi[c] = dO[base + c];
    acc[c] = V(0.0);
  }
  // a row whose output gradient is 0 adds nothing: skipping it keeps 0·NaN, from a non-finite
  // key or value it sees, out of the other gradients (MIXERS.md §7)
  var live = false;
  for (var c = 0u; c < KV; c++) { live = live || any(doi[c] != V(0.0)); }

  let kEnd = keysSeenByTile(wid.x * BR, BR);
  for (var j0 = 0u; j0 < kEnd; j0 += BC) {
    workgroupBarrier();
    loadTile(&kTile, &vTile, b, hk, j0, lid, BR);
    workgroupBarrier();
    if (rowOk && live) {
      let n = min(BC, kEnd - j0);
      for (var r = 0u; r < n; r++) {
        // a masked key has weight 0; testing first keeps softmax's exp away from a row's NEG lse
        if (visible(i, j0 + r)) {
          var sd = V(0.0);
          var pd = V(0.0);
          for (var c = 0u; c < KV; c++) {
            sd += qi[c] * kTile[r * KV + c];
            pd += doi[c] * vTile[r * KV + c];
          }
          let ds = pairGrads(lanesSum(sd), lanesSum(pd), factor, rowDelta).y;
          for (var c = 0u; c < KV; c++) { acc[c] += ds * kTile[r * KV + c]; }
        }
      }
    }
  }
  if (rowOk) {
    for (var c = 0u; c < KV; c++) { dq[base + c] = acc[c] * params.scale; }
  }
}
