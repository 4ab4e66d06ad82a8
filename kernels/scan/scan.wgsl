// The scan family's skeleton (docs/scan-kernels.md), shared by its passes: a diagonal linear
// recurrence per row, channel e < E and state n < N,
//   h[t] = exp(logDecay(t, e, n))·h[t−1] + x[t, e]·inN(t, n),      y[t, e] = Σ_n h[t]·outN(t, n),
// run in chunks of L steps. A pass gives one invocation a cell (row, chunk c, channel e) and
// loops over the N states inside it, so each step's channel input is prepared once for all N.
// The mixer's hooks file (e.g. selective-ssm/hooks.wgsl) comes first and defines Params (whose
// first fields are B, T, E, N, chunks, eBlocks), its input bindings 0 .. INPUTS − 1, and the
// hook functions; each pass binds its own buffers after them.

const L: u32 = 32u; // steps per chunk

// state arrays are [rows·slots, E, width], or [rows·slots, width, E] when N_FIRST (the op's own
// state layout, e.g. [B, H, K, V] for GatedLinearAttention); width is N, or 2N for the backward's
// carries (entering state | adjoint)
override N_FIRST: bool = false;

fn stateIndex(block: u32, e: u32, n: u32, width: u32) -> u32 {
  return select((block * params.E + e) * width + n, (block * width + n) * params.E + e, N_FIRST);
}

struct Cell {
  b: u32, // row
  c: u32, // chunk
  e: u32,
  t0: u32, // first step of the chunk
  len: u32, // steps in it
}

fn cellAt(b: u32, c: u32, e: u32) -> Cell {
  let t0 = c * L;
  return Cell(b, c, e, t0, min(L, params.T - t0));
}

// invocation i of a launch over (row, c, e), e fastest
fn cellOf(i: u32) -> Cell {
  let bc = i / params.E;
  return cellAt(bc / params.chunks, bc % params.chunks, i % params.E);
}

// a per-chunk state [rows, chunks, ...] of the cell
fn chunkStateAt(cell: Cell, n: u32) -> u32 {
  return stateIndex(cell.b * params.chunks + cell.c, cell.e, n, params.N);
}

// g·x, or 0 when g is 0 (a strong zero): in the backward, a step whose adjoint is 0 adds nothing
// even where a non-finite input made x NaN, which would otherwise reach the earlier steps'
// gradients
fn strongTimes(g: f32, x: f32) -> f32 {
  return select(g * x, 0.0, g == 0.0);
}
