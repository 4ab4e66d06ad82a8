// Shared: the flat invocation index of a 1-D launch folded into 2-D (see grid1d in src/webgpu/runtime.ts).

override WG: u32 = 256u;

fn flatIndex(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + lid;
}
