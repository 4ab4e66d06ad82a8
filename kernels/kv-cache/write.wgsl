// Writes T new tokens' keys and values into a preallocated cache, in place: token i of row b
// goes to slot positions[b] + i (a linear cache), or (positions[b] + i) mod S (a ring, which
// keeps the last S tokens). Only the first lengths[b] tokens of a row are real (the source is
// right-padded); of those, a ring writes only the last S, so no two invocations of a row meet
// in one slot. A slot past a linear cache's end is never written (the host refuses a full
// cache before it launches). One invocation per element of the source, or per vec4 of it,
// flat over B·T·F; the cost is the new tokens, not the cache. The first of each row also
// writes the row's next position, positions[b] + lengths[b], into a buffer of its own: the
// attention after the write still reads the positions before the call. With ALL_REAL every
// token of the call is real (a decode step's): lengths[b] is T, and the binding a stand-in.

// needs common/grid.wgsl and a lanes file (the alias V)

struct Params {
  total: u32, // B·T·F invocations
  T: u32,     // tokens in the source
  S: u32,     // slots of the cache
  F: u32,     // Hkv·K, in lanes
  ring: u32,  // 1: a ring of S slots; 0: linear
}

@group(0) @binding(0) var<storage, read> newKeys: array<V>;   // [B, T, F], the tokens' keys
@group(0) @binding(1) var<storage, read> newValues: array<V>; // [B, T, F], their values
@group(0) @binding(2) var<storage, read> positions: array<i32>; // [B], tokens row b holds before these
@group(0) @binding(3) var<storage, read> lengths: array<i32>;   // [B], real tokens of row b (clamped to 0..T)
@group(0) @binding(4) var<storage, read_write> advanced: array<i32>; // [B], positions[b] + lengths[b]
@group(0) @binding(5) var<storage, read_write> keys: array<V>;   // [B, S, F], the cache, written in place
@group(0) @binding(6) var<storage, read_write> values: array<V>; // [B, S, F]
@group(0) @binding(7) var<uniform> params: Params;

override ALL_REAL: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = flatIndex(wid, nwg, lid);
  if (e >= params.total) { return; }
  let f = e % params.F;
  let i = (e / params.F) % params.T;
  let b = e / (params.F * params.T);
  var n = params.T;
  if (!ALL_REAL) { n = u32(clamp(lengths[b], 0, i32(params.T))); }
  if (i == 0u && f == 0u) { advanced[b] = positions[b] + i32(n); }
  if (i >= n) { return; }
  let p = u32(max(positions[b], 0));
  var slot = p + i;
  if (params.ring != 0u) {
    // an earlier token of this call that a later one overwrites is skipped
    if (i + params.S < n) { return; }
    slot = slot % params.S;
  } else if (slot >= params.S) {
    return;
  }
  let at = (b * params.S + slot) * params.F + f;
  keys[at] = newKeys[e];
  values[at] = newValues[e];
}
