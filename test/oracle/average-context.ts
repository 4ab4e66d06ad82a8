// float64 oracle for AverageContext and causalMean (MIXERS.md §2): c[t] is summed from scratch
// for every t and the gradient is accumulated term by term, the naive twin of the scan kernels.

import type { Shape3 } from './causal-generation.js';

type Combine = 'max' | 'min' | 'mean';

const idx = ([, T, D]: Shape3, b: number, t: number, d: number) => (b * T + t) * D + d;

/** The context c[b, t, d]: mean of x[0..t] (causal) or of all of x. */
function contextAt(x: ArrayLike<number>, shape: Shape3, causal: boolean, b: number, t: number, d: number): number {
  const n = causal ? t + 1 : shape[1];
  let s = 0;
  for (let u = 0; u < n; u++) s += x[idx(shape, b, u, d)]!;
  return s / n;
}

export function causalMeanOracle(x: ArrayLike<number>, shape: Shape3): Float64Array {
  const [B, T, D] = shape;
  const y = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    y[idx(shape, b, t, d)] = contextAt(x, shape, true, b, t, d);
  }
  return y;
}

/** (∂C/∂a, ∂C/∂p, ∂C/∂c) for C(a, p, c); min/max ties go to a, then p, then c. */
function weights(combine: Combine, a: number, p: number, c: number): [number, number, number] {
  if (combine === 'mean') return [1 / 3, 1 / 3, 1 / 3];
  const best = combine === 'max' ? Math.max(a, p, c) : Math.min(a, p, c);
  if (a === best) return [1, 0, 0];
  if (p === best) return [0, 1, 0];
  return [0, 0, 1];
}

function combine3(combine: Combine, a: number, p: number, c: number): number {
  const [wa, wp, wc] = weights(combine, a, p, c);
  return wa * a + wp * p + wc * c;
}

export function averageContextOracle(
  x: ArrayLike<number>, shape: Shape3, combine: Combine, causal: boolean,
): Float64Array {
  const [B, T, D] = shape;
  const y = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    const a = x[idx(shape, b, t, d)]!;
    const p = x[idx(shape, b, Math.max(t - 1, 0), d)]!;
    y[idx(shape, b, t, d)] = combine3(combine, a, p, contextAt(x, shape, causal, b, t, d));
  }
  return y;
}

/** dL/dx given dL/dy: each y[t] sends its gradient to x[t], to x[max(t−1, 0)] and, through c[t], to every averaged x[u]. */
export function averageContextGradOracle(
  x: ArrayLike<number>, dy: ArrayLike<number>, shape: Shape3, combine: Combine, causal: boolean,
): Float64Array {
  const [B, T, D] = shape;
  const dx = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    const i = idx(shape, b, t, d);
    const pIdx = idx(shape, b, Math.max(t - 1, 0), d);
    const [wa, wp, wc] = weights(combine, x[i]!, x[pIdx]!, contextAt(x, shape, causal, b, t, d));
    const g = dy[i]!;
    dx[i] += wa * g;
    dx[pIdx] += wp * g;
    const n = causal ? t + 1 : T;
    for (let u = 0; u < n; u++) dx[idx(shape, b, u, d)] += (wc * g) / n;
  }
  return dx;
}

/** dL/dx of causalMean given dL/dy. */
export function causalMeanGradOracle(dy: ArrayLike<number>, shape: Shape3): Float64Array {
  const [B, T, D] = shape;
  const dx = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    for (let u = 0; u <= t; u++) dx[idx(shape, b, u, d)] += dy[idx(shape, b, t, d)]! / (t + 1);
  }
  return dx;
}
