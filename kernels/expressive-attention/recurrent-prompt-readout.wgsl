// ExpressiveAttention's recurrent prefill continuing a state (src/mixers/expressive-attention/
// layer.ts, withStateShare): each prompt query's share of the state before the prompt,
// N₀ = φ(scale·q)·M and S₀ = max(φ(scale·q)·z, 0) (the sum may round below 0: the step clamps
// it so too), summed over the P state rows in order and compensated as the step's readout
// (recurrent-step.wgsl). One invocation per (column, query head, token, batch row), flat: the
// columns are M's KV channel groups (V lanes each) and one more for z, carried as a splat V.
// needs common/grid.wgsl, common/lanes-*.wgsl, features.wgsl and the host's `const K, KV`.

struct Params {
  total: u32, // B·T·H·(KV + 1)
  H: u32,
  Hkv: u32,
  T: u32,
  P: u32, // state rows, K(K+1)/2
  scale: f32, // multiplies q before φ
}

@group(0) @binding(0) var<storage, read> q: array<f32>; // [B, T, H, K], unscaled
@group(0) @binding(1) var<storage, read> M: array<V>; // [B, Hkv, P, K]
@group(0) @binding(2) var<storage, read> z: array<f32>; // [B, Hkv, P]
@group(0) @binding(3) var<storage, read_write> N0: array<V>; // [B, T, H, K]
@group(0) @binding(4) var<storage, read_write> S0: array<f32>; // [B, T, H, 1]
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  let col = n % (KV + 1u); // KV: z
  let query = n / (KV + 1u); // (b, t, h)
  let h = query % params.H;
  let b = query / (params.H * params.T);
  // query head h reads kv head ⌊h·Hkv/H⌋
  let kvRow = b * params.Hkv + h * params.Hkv / params.H;
  var acc = V(0.0);
  var comp = V(0.0);
  var ab = vec2u(0u, 0u);
  for (var p = 0u; p < params.P; p++) {
    let diagonal = ab.x == ab.y;
    let fq = feature(q[query * K + ab.x] * params.scale, q[query * K + ab.y] * params.scale, diagonal);
    let row = kvRow * params.P + p;
    var m: V;
    if (col < KV) { m = M[row * KV + col]; } else { m = V(z[row]); }
    addCompensated(&acc, &comp, fq * m);
    ab = nextPair(p, ab);
  }
  let sum = acc + comp;
  if (col < KV) { N0[query * KV + col] = sum; } else { S0[query] = max(lanes4(sum).x, 0.0); }
}
