// ExpressiveAttention's recurrent prefill: the states along a prompt, M + Σ_{t<n} φ(k_t)·v_tᵀ and
// z + Σ_{t<n} φ(k_t) over row b's first n real tokens (src/mixers/expressive-attention/
// layer.ts, prefill), added token by token in order with the step's operations
// (recurrent-step.wgsl), so that each is the state stepping those tokens would leave. Entry j of
// the output holds n = min((j + first)·C, lengths[b]): with first = 0 the state entering each
// chunk of C queries (which they read) and, last, the state after the prompt; with first = 1 and
// C ≥ T only the latter. Padded tokens are never read. One invocation per (column, state row p,
// kv head, batch row): the columns are M's KV channel groups (V lanes each) and one more for z,
// as in the step.
// needs common/grid.wgsl, common/lanes-*.wgsl, features.wgsl and the host's `const K, KV`.

struct Params {
  total: u32, // B·Hkv·P·(KV + 1)
  T: u32,
  Hkv: u32,
  P: u32, // state rows, K(K+1)/2
  C: u32, // tokens per chunk, ≥ 1
  entries: u32, // states written per (b, hk)
  first: u32, // entry j holds the state after (j + first)·C tokens (at most the real ones)
}

@group(0) @binding(0) var<storage, read> k: array<f32>; // [B, T, Hkv, K]
@group(0) @binding(1) var<storage, read> v: array<V>; // [B, T, Hkv, K]
@group(0) @binding(2) var<storage, read> lengths: array<i32>; // [B]: the real tokens of each row
@group(0) @binding(3) var<storage, read> M: array<V>; // [B, Hkv, P, K]: Σ φ(k)·vᵀ before the prompt
@group(0) @binding(4) var<storage, read> z: array<f32>; // [B, Hkv, P]: Σ φ(k) before it
@group(0) @binding(5) var<storage, read_write> Ms: array<V>; // [B·Hkv, entries, P, K]
@group(0) @binding(6) var<storage, read_write> zs: array<f32>; // [B·Hkv, entries, P]
@group(0) @binding(7) var<uniform> params: Params;

// writes the running sums as entry j of state row p of kv row kvRow
fn keep(kvRow: u32, j: u32, p: u32, col: u32, m: V, zp: f32) {
  let row = (kvRow * params.entries + j) * params.P + p;
  if (col < KV) { Ms[row * KV + col] = m; } else { zs[row] = zp; }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  let col = n % (KV + 1u); // KV: z
  let stateRow = n / (KV + 1u); // (b, hk, p)
  let p = stateRow % params.P;
  let kvRow = stateRow / params.P; // b·Hkv + hk
  let b = kvRow / params.Hkv;
  let hk = kvRow % params.Hkv;
  let ab = pairOf(p);
  let diagonal = ab.x == ab.y;
  let real = u32(clamp(lengths[b], 0, i32(params.T)));
  var m = V(0.0);
  var zp = 0.0;
  if (col < KV) { m = M[stateRow * KV + col]; } else { zp = z[stateRow]; }
  var t = 0u;
  for (var j = 0u; j < params.entries; j++) {
    // entry j: the state after the tokens before (j + first)·C, of the real ones
    let end = min((j + params.first) * params.C, real);
    for (; t < end; t++) {
      let token = (b * params.T + t) * params.Hkv + hk;
      let fk = feature(k[token * K + ab.x], k[token * K + ab.y], diagonal);
      if (col < KV) { m = m + fk * v[token * KV + col]; } else { zp = zp + fk; }
    }
    keep(kvRow, j, p, col, m, zp);
  }
}
