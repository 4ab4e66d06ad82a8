// float64 oracle for AverageContext and causalMean (MIXERS.md §2): c[t] from float64 running sums,
// and the gradient through c[t] from float64 suffix sums, in order, one step at a time: the
// sequential twin of the scan kernels' tree of float32 partial sums. Linear in T, so long
// sequences (three levels of the kernels' scan) can be checked.

import type { Shape3 } from './causal-generation.js';

type Combine = 'max' | 'min' | 'mean';

const idx = ([, T, D]: Shape3, b: number, t: number, d: number) => (b * T + t) * D + d;

/** Every context c[b, t, d]: the mean of x[0..t] (causal) or of all of x. */
function contexts(x: ArrayLike<number>, shape: Shape3, causal: boolean): Float64Array {
  const [B, T, D] = shape;
  const c = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) {
    let s = 0;
    for (let t = 0; t < T; t++) {
      s += x[idx(shape, b, t, d)]!;
      c[idx(shape, b, t, d)] = s / (t + 1);
    }
    if (!causal) for (let t = 0; t < T; t++) c[idx(shape, b, t, d)] = s / T;
  }
  return c;
}

/**
 * Adds to dx[u] the gradient that reaches x[u] through the contexts, given r[t] = dL/dc[t]·∂c[t]/∂x:
 * Σ_{t ≥ u} r[t] (causal), or Σ_t r[t] (whole-sequence mean).
 */
function addThroughContexts(dx: Float64Array, r: Float64Array, shape: Shape3, causal: boolean): void {
  const [B, T, D] = shape;
  for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) {
    let total = 0;
    for (let t = 0; t < T; t++) total += r[idx(shape, b, t, d)]!;
    let later = 0;
    for (let t = T - 1; t >= 0; t--) {
      later += r[idx(shape, b, t, d)]!;
      dx[idx(shape, b, t, d)] += causal ? later : total;
    }
  }
}

export function causalMeanOracle(x: ArrayLike<number>, shape: Shape3): Float64Array {
  return contexts(x, shape, true);
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
  const c = contexts(x, shape, causal);
  const y = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    const i = idx(shape, b, t, d);
    y[i] = combine3(combine, x[i]!, x[idx(shape, b, Math.max(t - 1, 0), d)]!, c[i]!);
  }
  return y;
}

/** dL/dx given dL/dy: each y[t] sends its gradient to x[t], to x[max(t−1, 0)] and, through c[t], to every averaged x[u]. */
export function averageContextGradOracle(
  x: ArrayLike<number>, dy: ArrayLike<number>, shape: Shape3, combine: Combine, causal: boolean,
): Float64Array {
  const [B, T, D] = shape;
  const c = contexts(x, shape, causal);
  const dx = new Float64Array(B * T * D);
  const r = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    const i = idx(shape, b, t, d);
    const pIdx = idx(shape, b, Math.max(t - 1, 0), d);
    const [wa, wp, wc] = weights(combine, x[i]!, x[pIdx]!, c[i]!);
    const g = dy[i]!;
    dx[i] += wa * g;
    dx[pIdx] += wp * g;
    r[i] = (wc * g) / (causal ? t + 1 : T);
  }
  addThroughContexts(dx, r, shape, causal);
  return dx;
}

/** dL/dx of causalMean given dL/dy. */
export function causalMeanGradOracle(dy: ArrayLike<number>, shape: Shape3): Float64Array {
  const [B, T, D] = shape;
  const r = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    r[idx(shape, b, t, d)] = dy[idx(shape, b, t, d)]! / (t + 1);
  }
  const dx = new Float64Array(B * T * D);
  addThroughContexts(dx, r, shape, true);
  return dx;
}
