// Shared by Aaren's kernels with a workgroup per row (b, h) of the B·H rows, folded into x and y
// past 65535 workgroups (frame.wgsl, frame-backward.wgsl): each of the WG invocations takes a run
// of ceil(T / WG) tokens. Expects a `params` uniform with `T`.

const WG: u32 = 64u;

// workgroup wid's row (≥ the row count for the launch's spare workgroups), uniform in it
fn workgroupRow(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.y * nwg.x + wid.x;
}

// invocation lid's run of the row's tokens, [first, end)
fn tokenRun(lid: u32) -> vec2u {
  let per = (params.T + WG - 1u) / WG;
  return vec2u(min(lid * per, params.T), min((lid + 1u) * per, params.T));
}
