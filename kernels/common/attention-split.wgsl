// Attention split-K decode skeleton (Flash-Decoding), pass 1, shared by FlashStyleTiledAttention
// and ExpressiveAttention: the keys are cut into chunks of `chunk`; one invocation per (chunk s,
// query row i, head h, batch b) runs the family's row hooks over its chunk alone, reading keys
// and values straight from the cache, and writes the partial row (the unnormalised accumulator
// and packRow) for the merge pass (common/attention-merge.wgsl). Many invocations share one long
// cache, where the tiled forward would give each (row, head) to a single invocation. Each chunk is
// narrowed to the keys its query may see (keyRange), and every key is tested with the layout's
// keySeen, so chunks past the visible range do no work.
// The invocations are flat over (h, i, s) within a batch, folded into x and y past 65535
// workgroups (H·Tq·splits can exceed it), with the batch b in z.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/dropout.wgsl,
// common/grid.wgsl, common/row-registers.wgsl, common/attend-tile.wgsl, a layout, the row hooks
// (see common/attention-forward.wgsl) and the host's `const KV, BC, BC4`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> vis: array<i32>; // the packed int inputs
@group(0) @binding(4) var<storage, read_write> partO: array<V>; // [B, H, Tq, splits, K]: unnormalised
@group(0) @binding(5) var<storage, read_write> partRow: array<vec2<f32>>; // [B, H, Tq, splits]: packRow
@group(0) @binding(6) var<uniform> params: Params;

var<private> row: RowState;
var<private> tileAt: u32; // where key j0 of the current tile starts in k and v

// The scores (scale·q_i)·k of quad r4's keys (0 past the tile's n keys, which are not read).
fn tileScores(r4: u32, n: u32) -> vec4<f32> {
  var s = vec4<f32>(0.0);
  for (var u = 0u; u < 4u; u++) {
    let r = 4u * r4 + u;
    if (r < n) {
      var d = V(0.0);
      for (var c = 0u; c < KV; c++) { d += qi[c] * k[tileAt + r * params.Hkv * KV + c]; }
      s[u] = lanesSum(d);
    }
  }
  return s;
}

fn tileValue(r: u32, c: u32) -> V {
  return v[tileAt + r * params.Hkv * KV + c];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let flat = flatIndex(wid, nwg, lid);
  if (flat >= params.H * params.Tq * params.splits) { return; }
  let s = flat % params.splits;
  let i = (flat / params.splits) % params.Tq;
  let h = flat / (params.splits * params.Tq);
  let b = wid.z;
  loadLayout();
  loadQuery(((b * params.Tq + i) * params.H + h) * KV);
  row = initRow();
  let keys = keyRange(b, i, i + 1u);
  let end = min((s + 1u) * params.chunk, keys.y);
  for (var j0 = max(s * params.chunk, keys.x); j0 < end; j0 += BC) {
    tileAt = ((b * params.Tk + j0) * params.Hkv + kvHead(h)) * KV;
    attendTile(b, h, i, j0, min(BC, end - j0));
  }
  let at = ((b * params.H + h) * params.Tq + i) * params.splits + s;
  for (var c = 0u; c < KV; c++) { partO[at * KV + c] = acc[c]; }
  partRow[at] = packRow();
}
