// SelectiveSSM's hooks for the scan family (scan/scan.wgsl; docs/selective-ssm.md): rows are
// batch rows, channels e < E, states n < N, and
//   logDecay = Δ·A[e, n],   x = Δ·u,   inN = B[t, n],   inN's partner outN = C[t, n],
//   out = (y + D·u)·silu(z),   Δ = softplus(delta + deltaBias).
// The per-channel parameters arrive packed as chan[E, N + 2] = A | D | deltaBias, and B and C as
// bc[B, T, 2N] = B | C, to stay within WebGPU's guaranteed eight storage buffers per kernel.
// With LOW_RANK (a decode step's) delta = low·dtProj is formed here, where a launch of its own
// formed it: the delta binding holds dtProj [R, E] and bc the x projection's rows
// [B, T, R + 2N] = low | B | C. (Over T tokens, forming it in each pass took SwiftShader 20–40 %
// longer in the chunk-states and forward passes than reading it: there the layer forms it once.)

override SOFTPLUS: bool = true;
override HAS_Z: bool = false;
// z is the second half of each row of the in projection's [B, T, 2E] (a decode step's, which reads
// it there rather than have it sliced out); otherwise [B, T, E]
override Z_IN_PROJECTION: bool = false;
override LOW_RANK: bool = false;

struct Params {
  B: u32,
  T: u32, // 1 for a decode step
  E: u32,
  N: u32,
  chunks: u32, // ceil(T / L)
  eBlocks: u32, // ceil(E / WE), backward only
  offDelta: u32, // offsets of the regions of the backward's packed output (backward-hooks.wgsl)
  offZ: u32,
  offChan: u32,
  offBC: u32,
  R: u32, // Δ's rank with LOW_RANK, else 0: B|C start at R in rows of R + 2N
}

const INPUTS: u32 = 5u;
@group(0) @binding(0) var<storage, read> u: array<f32>; // [B, T, E]
@group(0) @binding(1) var<storage, read> delta: array<f32>; // [B, T, E], or dtProj [R, E] with LOW_RANK
@group(0) @binding(2) var<storage, read> chan: array<f32>; // [E, N + 2]
@group(0) @binding(3) var<storage, read> bc: array<f32>; // [B, T, 2N], or [B, T, R + 2N] with LOW_RANK
@group(0) @binding(4) var<storage, read> z: array<f32>; // [B, T, E] (or [B, T, 2E]: Z_IN_PROJECTION), read when HAS_Z

// the cell's Δ and u per step, kept by prepare
var<private> dts: array<f32, L>;
var<private> us: array<f32, L>;

// [B, T, E] arrays
fn seqAt(cell: Cell, s: u32) -> u32 {
  return (cell.b * params.T + cell.t0 + s) * params.E + cell.e;
}

// bc[B, T, R + 2N]: B at R + n, C at R + N + n
fn bcAt(cell: Cell, s: u32) -> u32 {
  return (cell.b * params.T + cell.t0 + s) * (params.R + 2u * params.N) + params.R;
}

// delta at [B, T, E] index j: its value, or with LOW_RANK Σ_r low[r]·dtProj[r, e]
fn deltaAt(cell: Cell, s: u32, j: u32) -> f32 {
  if (!LOW_RANK) { return delta[j]; }
  let low = bcAt(cell, s) - params.R;
  var sum = 0.0;
  for (var r = 0u; r < params.R; r++) { sum += bc[low + r] * delta[r * params.E + cell.e]; }
  return sum;
}

fn chanAt(e: u32, j: u32) -> u32 {
  return e * (params.N + 2u) + j;
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

// max(x, 0) + log1p(exp(−|x|)); log(v)·w/(v − 1) is log1p(w) corrected for the rounding of v = 1 + w
fn softplus(x: f32) -> f32 {
  let w = exp(-abs(x));
  let v = 1.0 + w;
  return max(x, 0.0) + select(log(v) * (w / (v - 1.0)), w, v == 1.0);
}

// silu(z) at a [B, T, E] index, or 1 without a gate
fn gate(j: u32) -> f32 {
  if (HAS_Z) {
    // with Z_IN_PROJECTION, row r's z starts at 2E·r + E
    let g = z[select(j, j + (j / params.E + 1u) * params.E, Z_IN_PROJECTION)];
    return g * sigmoid(g);
  }
  return 1.0;
}

fn prepare(cell: Cell, s: u32) -> f32 {
  let j = seqAt(cell, s);
  let pre = deltaAt(cell, s, j) + chan[chanAt(cell.e, params.N + 1u)];
  dts[s] = select(pre, softplus(pre), SOFTPLUS);
  us[s] = u[j];
  return dts[s] * us[s];
}

fn logDecay(cell: Cell, s: u32, n: u32) -> f32 {
  return dts[s] * chan[chanAt(cell.e, n)];
}

fn inN(cell: Cell, s: u32, n: u32) -> f32 {
  return bc[bcAt(cell, s) + n];
}

fn outN(cell: Cell, s: u32, n: u32) -> f32 {
  return bc[bcAt(cell, s) + params.N + n];
}

fn finish(cell: Cell, s: u32, y: f32) -> f32 {
  let j = seqAt(cell, s);
  return (y + chan[chanAt(cell.e, params.N)] * us[s]) * gate(j);
}

fn outAdjoint(cell: Cell, s: u32, dOut: f32) -> f32 {
  return strongTimes(dOut, gate(seqAt(cell, s)));
}
