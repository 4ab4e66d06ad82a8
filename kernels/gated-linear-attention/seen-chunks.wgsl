// The first launch of the seen kernel on a sequence longer than one chunk (see seen.wgsl): a
// workgroup per (chunk, head h, batch row b) writes its chunk's first bad token, or T, to
// firsts [B, H, chunks], which seen.wgsl with FIRSTS then reads.
// needs seen-find.wgsl

@group(0) @binding(0) var<storage, read> k: array<u32>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> v: array<u32>; // [B, T, H, V]
@group(0) @binding(2) var<storage, read> g: array<u32>; // [B, T, H, K]
@group(0) @binding(3) var<storage, read_write> firsts: array<u32>; // [B, H, chunks]
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.x;
  let h = wid.y;
  let b = wid.z;
  if (lid == 0u) { atomicStore(&firstBad, params.T); }
  workgroupBarrier();
  let t0 = chunk * CHUNK;
  let first = firstBadIn(b, h, t0, min(t0 + CHUNK, params.T), lid);
  if (lid == 0u) { firsts[(b * params.H + h) * chunkCount() + chunk] = first; }
}
