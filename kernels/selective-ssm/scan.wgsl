// Shared by the selective-scan kernels (docs/selective-ssm.md): sizes, indexing, Δ and the gate.
//
// T is cut into chunks of L steps. Scan kernels give one invocation a cell (b, chunk c,
// channel e) and loop over the N states inside it, so each step's Δ, u and gate are loaded
// once for all N states. The per-channel parameters arrive packed as chan[E, N + 2] =
// A | D | deltaBias, and B and C as bc[B, T, 2N] = B | C, to stay within WebGPU's guaranteed
// eight storage buffers per kernel.

const L: u32 = 32u; // steps per chunk

override SOFTPLUS: bool = true;
override HAS_Z: bool = false;

struct Params {
  B: u32,
  T: u32,
  E: u32,
  N: u32,
  chunks: u32, // ceil(T / L)
  eBlocks: u32, // ceil(E / WE), backward only
  offDelta: u32, // offsets of the regions of the backward's packed output
  offZ: u32,
  offChan: u32,
  offBC: u32,
}

struct Cell {
  b: u32,
  c: u32, // chunk
  e: u32,
  t0: u32, // first step of the chunk
  len: u32, // steps in it
}

fn cellAt(b: u32, c: u32, e: u32) -> Cell {
  let t0 = c * L;
  return Cell(b, c, e, t0, min(L, params.T - t0));
}

// invocation i of a launch over (b, c, e), e fastest
fn cellOf(i: u32) -> Cell {
  let bc = i / params.E;
  return cellAt(bc / params.chunks, bc % params.chunks, i % params.E);
}

// [B, T, E] arrays
fn seqAt(cell: Cell, s: u32) -> u32 {
  return (cell.b * params.T + cell.t0 + s) * params.E + cell.e;
}

// bc[B, T, 2N]: B at n, C at N + n
fn bcAt(cell: Cell, s: u32) -> u32 {
  return (cell.b * params.T + cell.t0 + s) * 2u * params.N;
}

// [B, chunks, E, N] arrays of per-chunk states
fn chunkStateAt(cell: Cell, n: u32) -> u32 {
  return ((cell.b * params.chunks + cell.c) * params.E + cell.e) * params.N + n;
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

// g·x, or 0 when g is 0 (a strong zero): in the backward, a step whose adjoint is 0 adds nothing
// even where a non-finite input made x NaN, which would otherwise reach the earlier steps'
// gradients
fn strongTimes(g: f32, x: f32) -> f32 {
  return select(g * x, 0.0, g == 0.0);
}

// Δ from delta + deltaBias
fn stepSize(pre: f32) -> f32 {
  return select(pre, softplus(pre), SOFTPLUS);
}
