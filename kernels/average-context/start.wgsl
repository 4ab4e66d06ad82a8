// Shared by the AverageContext forward kernels: the decode state a prefill continues
// (HAS_START), bound as `start` [B, 3, D] = previous | sum | count, the count repeated in every
// channel as a float (exact up to 2^24 tokens, as the step's divisor is). Without a state the
// kernels bind a stand-in they never read, and start from nothing.
// needs chunks.wgsl

override HAS_START: bool = false;

struct Start {
  previous: V, // the state's last token: x[-1] where count > 0
  sum: V, // the sum of its tokens
  count: V, // how many, in every lane
}

fn startOf(c: Cell) -> Start {
  if (!HAS_START) { return Start(V(0.0), V(0.0), V(0.0)); }
  let row = c.b * 3u * params.width + c.d;
  return Start(start[row], start[row + params.width], start[row + 2u * params.width]);
}

// x[t-1] for t = 0: the state's last token in a row that has one, else x[0] itself
fn firstPredecessor(s: Start, x0: V) -> V {
  return select(x0, s.previous, s.count > V(0.0));
}
