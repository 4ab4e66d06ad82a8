// Shared by the AverageContext scan kernels: the chunks, the levels of chunk sums and the
// context vector c[t], over V (f32 or vec4<f32>, from common/lanes-*.wgsl): an invocation owns
// one channel or four, and one chunk (the levels scan, for a GPU) or all of T (the walks, for a
// CPU adapter, which need no levels).
//
// T is cut into chunks of CHUNK steps. Level 1 holds the sums over the chunks; each next level
// the sums of CHUNK entries of the level before, up to the first level with at most TOP entries.
// All levels lie in one tensor [B, rows, D], level 1 first. The sum before chunk k (or after it)
// adds, at every level below the top, the entries beside k's ancestor under the same parent, at
// most CHUNK − 1, and at the top at most TOP − 1: independent loads and no chain of dependent
// ones, as a GPU hides memory latency only with many loads in flight.

// `const CHUNK: u32` and `const TOP: u32` are prepended by kernel.ts, their single definition.
override CAUSAL: bool = true;
// chunks per invocation of the levels scan's last passes (kernel.ts's chunksPerRun): the sum of
// the levels before (or after) a run is formed once for its RUN·CHUNK steps
override RUN: u32 = 1u;

struct Params {
  total: u32, // invocations, or workgroups for the kernels that write levels
  seqLen: u32, // T
  width: u32, // D / lanes
  rows: u32, // rows of the levels tensor: all levels together
  srcBase: u32, // level sums only: first row of the level read (0 when it reads x)
  srcLen: u32, // level sums only: entries of the level read (T when it reads x)
  dstBase: u32, // level sums only: first row of the level written
  dst2Base: u32, // level sums only: first row of the level above it
  pair: u32, // level sums only: 1 to write the level above too
}

fn chunksOf(n: u32) -> u32 {
  return (n + CHUNK - 1u) / CHUNK;
}

struct Cell {
  b: u32,
  k: u32, // chunk, the first of a run
  d: u32, // channel, or group of four
  t0: u32, // first step
  t1: u32, // one past the last step
}

// The invocation for (b, the run of RUN chunks from chunk k, d) of the levels scan's last passes,
// d fastest.
fn cellOf(i: u32) -> Cell {
  let d = i % params.width;
  let bk = i / params.width;
  let runs = (chunksOf(params.seqLen) + RUN - 1u) / RUN;
  let k = (bk % runs) * RUN;
  let t0 = k * CHUNK;
  return Cell(bk / runs, k, d, t0, min(t0 + RUN * CHUNK, params.seqLen));
}

// The cell's last chunk.
fn lastChunk(c: Cell) -> u32 {
  return (c.t1 - 1u) / CHUNK;
}

// The invocation for (b, d) of the walks (walk-*.wgsl), d fastest: all T steps.
fn columnOf(i: u32) -> Cell {
  return Cell(i / params.width, 0u, i % params.width, 0u, params.seqLen);
}

// Where chunk k's packed picks are, for the cell's batch and channels.
fn picksAt(c: Cell, k: u32) -> u32 {
  return (c.b * chunksOf(params.seqLen) + k) * params.width + c.d;
}

fn at(c: Cell, t: u32) -> u32 {
  return (c.b * params.seqLen + t) * params.width + c.d;
}

// Row `row` of the levels tensor, for the cell's batch and channels.
fn levelAt(c: Cell, row: u32) -> u32 {
  return (c.b * params.rows + row) * params.width + c.d;
}

// c[t] from the offset and the in-chunk running sum (causal), or the whole-sequence mean;
// `before` counts the tokens a prefill's state summed into the offset (0 otherwise).
fn context(offset: V, run: V, t: u32, before: V) -> V {
  if (CAUSAL) { return (offset + run) / (V(f32(t + 1u)) + before); }
  return offset / f32(params.seqLen);
}

// ∂c[t]/∂x[s] for every s that c[t] averages.
fn contextWeight(t: u32) -> f32 {
  if (CAUSAL) { return 1.0 / f32(t + 1u); }
  return 1.0 / f32(params.seqLen);
}
