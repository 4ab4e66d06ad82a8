// GatedLinearAttention's hooks for the scan family (scan/scan.wgsl; docs/gated-linear-attention.md):
// rows are (batch row, head) pairs b·H + h, channels e < V, states n < K, the state S[n, e] is
// laid out [B, H, K, V] (N_FIRST), and
//   logDecay = g[t, n],   x = v[t, e],   inN = k[t, n],   outN = scale·q[t, n],   out = y.
// The inputs are read as finite: a NaN or ±∞ as 0, and a g > 0 as 0 too (a GPU backend cannot
// reject one); such an input gets no gradient (backward-hooks.wgsl), and the op poisons what it
// reaches (seen.wgsl).
// needs common/float-bits.wgsl

struct Params {
  B: u32, // rows: B·H
  T: u32, // 1 for a decode step
  E: u32, // V
  N: u32, // K
  chunks: u32, // ceil(T / L)
  eBlocks: u32, // ceil(V / WE), backward only
  H: u32,
  offParts: u32, // where the backward's per-key parts start in its packed output (backward-hooks.wgsl)
  scale: f32,
}

const INPUTS: u32 = 4u;
@group(0) @binding(0) var<storage, read> q: array<f32>; // [B, T, H, K]
@group(0) @binding(1) var<storage, read> k: array<f32>; // [B, T, H, K]
@group(0) @binding(2) var<storage, read> v: array<f32>; // [B, T, H, V]
@group(0) @binding(3) var<storage, read> g: array<f32>; // [B, T, H, K]

// the flat (b, t, h) of the cell's step s
fn tokenAt(cell: Cell, s: u32) -> u32 {
  return ((cell.b / params.H) * params.T + cell.t0 + s) * params.H + cell.b % params.H;
}

// [B, T, H, V] arrays
fn seqAt(cell: Cell, s: u32) -> u32 {
  return tokenAt(cell, s) * params.E + cell.e;
}

fn keyAt(cell: Cell, s: u32, n: u32) -> u32 {
  return tokenAt(cell, s) * params.N + n;
}

// x, or 0 where it is NaN or ±∞
fn finite(x: f32) -> f32 {
  return select(0.0, x, isFinite(x));
}

fn prepare(cell: Cell, s: u32) -> f32 {
  return finite(v[seqAt(cell, s)]);
}

fn logDecay(cell: Cell, s: u32, n: u32) -> f32 {
  return min(finite(g[keyAt(cell, s, n)]), 0.0);
}

fn inN(cell: Cell, s: u32, n: u32) -> f32 {
  return finite(k[keyAt(cell, s, n)]);
}

fn outN(cell: Cell, s: u32, n: u32) -> f32 {
  return params.scale * finite(q[keyAt(cell, s, n)]);
}

fn finish(cell: Cell, s: u32, y: f32) -> f32 {
  return y;
}

fn outAdjoint(cell: Cell, s: u32, dOut: f32) -> f32 {
  return dOut;
}
