// Shared by the AverageContext scan kernels: the chunk grid and the context vector c[t], over
// V (f32 or vec4<f32>, from common/lanes-*.wgsl): an invocation owns one channel or four.
//
// T is cut into chunks of `chunk` steps, and the chunks into blocks of `block` chunks. One
// invocation owns (b, chunk k, d) and walks its chunk in order. Its offset, the sum of every
// step before its chunk, adds the sums of the blocks before its block, then of the chunks of
// its block before its own, so it reads about T/(chunk·block) + block + chunk values, each about
// ∛T, with no barriers (SwiftShader runs workgroup barriers very slowly). Every kernel computes
// c[t] with the same operations in the same order, so the backward pass sees bit-identical
// contexts and makes the same min/max selections.

override CAUSAL: bool = true;

struct Params {
  total: u32, // B·numChunks·D / lanes: invocations
  seqLen: u32, // T
  width: u32, // D / lanes
  chunk: u32, // steps per chunk
  numChunks: u32, // ceil(T / chunk)
  block: u32, // chunks per block
  numBlocks: u32, // ceil(numChunks / block)
}

struct Cell {
  b: u32,
  k: u32, // chunk
  d: u32, // channel, or group of four
  t0: u32, // first step of the chunk
  t1: u32, // one past its last step
}

fn cellOf(i: u32) -> Cell {
  let d = i % params.width;
  let bk = i / params.width;
  let k = bk % params.numChunks;
  let t0 = k * params.chunk;
  return Cell(bk / params.numChunks, k, d, t0, min(t0 + params.chunk, params.seqLen));
}

fn at(c: Cell, t: u32) -> u32 {
  return (c.b * params.seqLen + t) * params.width + c.d;
}

fn chunkAt(c: Cell, k: u32) -> u32 {
  return (c.b * params.numChunks + k) * params.width + c.d;
}

fn blockAt(c: Cell, j: u32) -> u32 {
  return (c.b * params.numBlocks + j) * params.width + c.d;
}

// c[t] from the offset and the in-chunk running sum (causal), or the whole-sequence mean.
fn context(offset: V, run: V, t: u32) -> V {
  if (CAUSAL) { return (offset + run) / f32(t + 1u); }
  return offset / f32(params.seqLen);
}

// ∂c[t]/∂x[s] for every s that c[t] averages.
fn contextWeight(t: u32) -> f32 {
  if (CAUSAL) { return 1.0 / f32(t + 1u); }
  return 1.0 / f32(params.seqLen);
}
