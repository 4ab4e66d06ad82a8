/**
 * The float64 oracle of `ops.dense` and its kernel: C = op(A)·op(B) + bias, element by element,
 * with each element's rounding bound for a float32 computation in any order, and the assertion
 * that holds a result to it.
 */
import { expect } from 'vitest';

/** A `rows × cols` matrix stored row-major, as a tensor's values. */
export interface Matrix {
  rows: number;
  cols: number;
  data: ArrayLike<number>;
}

/** float32's unit roundoff. */
const U = 2 ** -24;

/** Element (i, j) of m, or of mᵀ when `transposed`. */
const at = (m: Matrix, transposed: boolean, i: number, j: number) => transposed ? m.data[j * m.cols + i]! : m.data[i * m.cols + j]!;

/**
 * C = op(a)·op(b) (+ bias) in float64, and per element the bound γ_n·(Σ_k |a_ik·b_kj| + |bias_j|),
 * γ_n = n·u/(1 − n·u) with n = K + 1 terms: any float32 order of the products and sums (fused or
 * not) lands within it (Higham, Accuracy and Stability, §3.1).
 */
export function denseOracle(a: Matrix, b: Matrix, transposeA: boolean, transposeB: boolean, bias?: ArrayLike<number>): {
  value: Float64Array; bound: Float64Array; M: number; N: number;
} {
  const [M, K] = transposeA ? [a.cols, a.rows] : [a.rows, a.cols];
  const N = transposeB ? b.rows : b.cols;
  const value = new Float64Array(M * N);
  const bound = new Float64Array(M * N);
  const gamma = ((K + 1) * U) / (1 - (K + 1) * U);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j]! : 0;
      let abs = Math.abs(s);
      for (let k = 0; k < K; k++) {
        const p = at(a, transposeA, i, k) * at(b, transposeB, k, j);
        s += p;
        abs += Math.abs(p);
      }
      value[i * N + j] = s;
      bound[i * N + j] = gamma * abs;
    }
  }
  return { value, bound, M, N };
}

/** Asserts |got − want| ≤ bound element by element, naming the first element outside it (NaN fails). */
export function expectWithinBound(got: ArrayLike<number>, o: { value: Float64Array; bound: Float64Array }, what: string): void {
  expect(got.length, what).toBe(o.value.length);
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i]! - o.value[i]!) <= o.bound[i]!)) {
      expect.fail(`${what}: element ${i} is ${got[i]}, the oracle's ${o.value[i]}, bound ${o.bound[i]}`);
    }
  }
}
