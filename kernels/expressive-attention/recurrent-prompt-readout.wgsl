// ExpressiveAttention's recurrent prefill (src/mixers/expressive-attention/layer.ts,
// prefillOnKernels): each prompt query's output from its chunk's own attention and the state
// entering the chunk (recurrent-sums.wgsl's entry ⌊t/C⌋),
// o = o_p + (N₀ − S₀·o_p) / max(S₀ + d, floor), where o_p and d = max(ε + S, 2⁻⁶⁰) are the chunk's
// attention and its denominator, N₀ = φ(scale·q)·M and S₀ = max(φ(scale·q)·z, 0) (the sum may round
// below 0: the step clamps it so too), each summed over the P state rows in order and compensated
// as the step's readout (recurrent-step.wgsl). One invocation per (channel group of V lanes, query
// head, block of four tokens, batch row), flat; each forms S₀ itself. The four tokens share each
// load of the state (C is a multiple of 4, or at least T), which is what the readout's time goes
// to on SwiftShader.
// needs common/grid.wgsl, common/lanes-*.wgsl, features.wgsl and the host's `const K, KV`.

struct Params {
  total: u32, // B·⌈T/4⌉·H·KV
  H: u32,
  Hkv: u32,
  T: u32,
  P: u32, // state rows, K(K+1)/2
  C: u32, // tokens per chunk
  entries: u32, // states per kv row in M and z, at least ⌈T/C⌉
  scale: f32, // multiplies q before φ
  floor: f32, // max(ε, 2⁻⁶⁰): the least denominator
}

@group(0) @binding(0) var<storage, read> q: array<f32>; // [B, T, H, K], unscaled
@group(0) @binding(1) var<storage, read> M: array<V>; // [B·Hkv, entries, P, K]
@group(0) @binding(2) var<storage, read> z: array<f32>; // [B·Hkv, entries, P]
@group(0) @binding(3) var<storage, read> own: array<V>; // [B, T, H, K]: o_p
@group(0) @binding(4) var<storage, read> denominators: array<f32>; // [B, H, T]: d
@group(0) @binding(5) var<storage, read_write> o: array<V>; // [B, T, H, K]
@group(0) @binding(6) var<uniform> params: Params;

// adds a state row's m and z at the query's φ(scale·q)_p (q read at element `at`, row p = (a, b))
// to its running N₀ (n) and S₀ (s), each with its compensation (nc, sc)
fn accumulate(n: ptr<function, V>, nc: ptr<function, V>, s: ptr<function, f32>, sc: ptr<function, f32>,
              at: u32, ab: vec2u, diagonal: bool, m: V, zp: f32) {
  let fq = feature(q[at + ab.x] * params.scale, q[at + ab.y] * params.scale, diagonal);
  addCompensated(n, nc, fq * m);
  addCompensatedScalar(s, sc, fq * zp);
}

// the output of query `query` (b, t, h) at channel group col
fn finish(query: u32, t: u32, b: u32, h: u32, col: u32, n: V, s: f32) {
  let s0 = max(s, 0.0);
  let d = max(s0 + denominators[(b * params.H + h) * params.T + t], params.floor);
  let op = own[query * KV + col];
  o[query * KV + col] = op + (n - s0 * op) / d;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let n = flatIndex(wid, nwg, lid);
  if (n >= params.total) { return; }
  let col = n % KV;
  let rest = n / KV; // (b, token block, h)
  let h = rest % params.H;
  let blocks = (params.T + 3u) / 4u;
  let t0 = (rest / params.H) % blocks * 4u;
  let b = rest / (params.H * blocks);
  // query head h reads kv head ⌊h·Hkv/H⌋, at the state entering the block's chunk
  let entry = (b * params.Hkv + h * params.Hkv / params.H) * params.entries + t0 / params.C;
  // the block's tokens; past T the last one again, computed and not stored
  let t1 = min(t0 + 1u, params.T - 1u);
  let t2 = min(t0 + 2u, params.T - 1u);
  let t3 = min(t0 + 3u, params.T - 1u);
  let query0 = (b * params.T + t0) * params.H + h;
  let query1 = (b * params.T + t1) * params.H + h;
  let query2 = (b * params.T + t2) * params.H + h;
  let query3 = (b * params.T + t3) * params.H + h;
  var n0 = V(0.0);
  var n1 = V(0.0);
  var n2 = V(0.0);
  var n3 = V(0.0);
  var nc0 = V(0.0);
  var nc1 = V(0.0);
  var nc2 = V(0.0);
  var nc3 = V(0.0);
  var s0 = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  var s3 = 0.0;
  var sc0 = 0.0;
  var sc1 = 0.0;
  var sc2 = 0.0;
  var sc3 = 0.0;
  var ab = vec2u(0u, 0u);
  for (var p = 0u; p < params.P; p++) {
    let diagonal = ab.x == ab.y;
    let row = entry * params.P + p;
    let m = M[row * KV + col];
    let zp = z[row];
    accumulate(&n0, &nc0, &s0, &sc0, query0 * K, ab, diagonal, m, zp);
    accumulate(&n1, &nc1, &s1, &sc1, query1 * K, ab, diagonal, m, zp);
    accumulate(&n2, &nc2, &s2, &sc2, query2 * K, ab, diagonal, m, zp);
    accumulate(&n3, &nc3, &s3, &sc3, query3 * K, ab, diagonal, m, zp);
    ab = nextPair(p, ab);
  }
  finish(query0, t0, b, h, col, n0 + nc0, s0 + sc0);
  if (t0 + 1u < params.T) { finish(query1, t1, b, h, col, n1 + nc1, s1 + sc1); }
  if (t0 + 2u < params.T) { finish(query2, t2, b, h, col, n2 + nc2, s2 + sc2); }
  if (t0 + 3u < params.T) { finish(query3, t3, b, h, col, n3 + nc3, s3 + sc3); }
}
