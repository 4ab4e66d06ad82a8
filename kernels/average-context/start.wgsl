// Shared by the AverageContext forward kernels: the decode state a prefill continues
// (HAS_START), bound as it is kept, `previous` and `sum` [B, D] and `positions` [B] (int32, a
// negative one read as 0), the count made a float here (exact up to 2^24 tokens, as the step's
// divisor is), where packing them took tfjs four launches. Without a state the kernels bind
// stand-ins they never read, and start from nothing.
// needs chunks.wgsl

override HAS_START: bool = false;

struct Start {
  previous: V, // the state's last token: x[-1] where count > 0
  sum: V, // the sum of its tokens
  count: V, // how many, in every lane
}

fn startOf(c: Cell) -> Start {
  if (!HAS_START) { return Start(V(0.0), V(0.0), V(0.0)); }
  let row = c.b * params.width + c.d;
  return Start(previous[row], sum[row], V(f32(max(positions[c.b], 0))));
}

// x[t-1] for t = 0: the state's last token in a row that has one, else x[0] itself
fn firstPredecessor(s: Start, x0: V) -> V {
  return select(x0, s.previous, s.count > V(0.0));
}
