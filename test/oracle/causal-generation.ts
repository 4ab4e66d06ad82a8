// float64 oracle for CausalGeneration (MIXERS.md §1), written from the equations, not from the kernels.

export type Shape3 = [number, number, number];
type Reduce = 'min' | 'max' | 'mean';

const idx = ([, T, D]: Shape3, b: number, t: number, d: number) => (b * T + t) * D + d;

function reduce2(r: Reduce, a: number, b: number): number {
  return r === 'min' ? Math.min(a, b) : r === 'max' ? Math.max(a, b) : (a + b) / 2;
}

/** ∂R(a, b)/∂a, with a min/max tie going to a. */
function weightOfA(r: Reduce, a: number, b: number): number {
  if (r === 'mean') return 0.5;
  return (r === 'min' ? a <= b : a >= b) ? 1 : 0;
}

export function causalGenerationOracle(x: ArrayLike<number>, shape: Shape3, r: Reduce): Float64Array {
  const [B, T, D] = shape;
  const y = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        const i = idx(shape, b, t, d);
        y[i] = t === 0 ? x[i]! : reduce2(r, x[i]!, x[idx(shape, b, t - 1, d)]!);
      }
    }
  }
  return y;
}

/** dL/dx given dL/dy, from y[0] = x[0] and y[t] = R(x[t], x[t-1]). */
export function causalGenerationGradOracle(
  x: ArrayLike<number>, dy: ArrayLike<number>, shape: Shape3, r: Reduce,
): Float64Array {
  const [B, T, D] = shape;
  const dx = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) {
      dx[idx(shape, b, 0, d)] += dy[idx(shape, b, 0, d)]!;
      for (let t = 1; t < T; t++) {
        const cur = idx(shape, b, t, d);
        const prev = idx(shape, b, t - 1, d);
        const w = weightOfA(r, x[cur]!, x[prev]!);
        dx[cur] += w * dy[cur]!;
        dx[prev] += (1 - w) * dy[cur]!;
      }
    }
  }
  return dx;
}
