// FlashStyleTiledAttention split-K decode (Flash-Decoding), pass 1: the keys are cut into
// chunks of `chunk`; one invocation per (chunk s, query row i, head h, batch b) runs the
// online softmax over its chunk alone and writes the partial (m, l, O) for the merge pass.
// Many invocations share one long key/value cache, where the tiled kernel would give each
// (row, head) to a single invocation.
// The invocations are flat over (h, i, s) within a batch, folded into x and y past 65535
// workgroups (H·Tq·splits can exceed it), with the batch b in z.
// Each split is narrowed to the keys its query may see (keyRange), and every key is tested with
// the shared predicate, so splits past the visible range do no work.
// needs common/lanes-*.wgsl, common/attention.wgsl, common/visibility.wgsl, common/grid.wgsl and
// the host's `const KV`.


@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> vis: array<i32>; // the packed int inputs
@group(0) @binding(4) var<storage, read_write> partO: array<V>; // [B, H, Tq, splits, K]: unnormalised
@group(0) @binding(5) var<storage, read_write> partML: array<vec2<f32>>; // [B, H, Tq, splits]: (m, l)
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let flat = flatIndex(wid, nwg, lid);
  if (flat >= params.H * params.Tq * params.splits) { return; }
  let s = flat % params.splits;
  let i = (flat / params.splits) % params.Tq;
  let h = flat / (params.splits * params.Tq);
  let b = wid.z;
  let hk = kvHead(h);

  var qi: array<V, KV>;
  var acc: array<V, KV>;
  let qBase = ((b * params.Tq + i) * params.H + h) * KV;
  for (var c = 0u; c < KV; c++) {
    qi[c] = q[qBase + c] * params.scale;
    acc[c] = V(0.0);
  }
  var m = NEG;
  var l = 0.0;
  let keys = keyRange(b, i, i + 1u);
  let j1 = min((s + 1u) * params.chunk, keys.y);
  for (var j = max(s * params.chunk, keys.x); j < j1; j++) {
    // an invisible key is skipped, never weighed by 0: its values never reach the row
    if (!visible(b, i, j)) { continue; }
    let kBase = ((b * params.Tk + j) * params.Hkv + hk) * KV;
    var d = V(0.0);
    for (var c = 0u; c < KV; c++) { d += qi[c] * k[kBase + c]; }
    let x = lanesSum(d);
    // rescale only when the running max moves
    if (x > m) {
      let correction = exp(m - x);
      l *= correction;
      for (var c = 0u; c < KV; c++) { acc[c] *= correction; }
      m = x;
    }
    let p = exp(x - m);
    l += p;
    for (var c = 0u; c < KV; c++) { acc[c] += p * v[kBase + c]; }
  }
  let row = ((b * params.H + h) * params.Tq + i) * params.splits + s;
  for (var c = 0u; c < KV; c++) { partO[row * KV + c] = acc[c]; }
  partML[row] = vec2f(m, l);
}
