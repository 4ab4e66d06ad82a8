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

/** erf(x) in float64: its Maclaurin series below |x| = 4 (about 10⁻¹¹ after cancellation), else ±(1 − erfc) from erfc's asymptotic series (erfc(4) < 1.6·10⁻⁸). */
export function erf64(x: number): number {
  const a = Math.abs(x);
  if (a >= 4) {
    const erfc = (Math.exp(-a * a) / (a * Math.sqrt(Math.PI))) * (1 - 1 / (2 * a * a) + 3 / (4 * a ** 4));
    return Math.sign(x) * (1 - erfc);
  }
  let term = x;
  let sum = x;
  for (let n = 1; Math.abs(term) > 1e-17 * Math.abs(sum) || n < 3; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** φ(x), the standard normal density. */
const density = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
/** Φ(x), the standard normal CDF. */
const cdf = (x: number) => 0.5 * (1 + erf64(x / Math.SQRT2));

/**
 * |error| of erf in float32 as the kernels and tfjs form it: Abramowitz and Stegun's 7.1.26
 * (≤ 1.5·10⁻⁷), plus the rounding of its dozen float32 operations, exp's among them (WGSL allows
 * exp 3 + 2|z| ULP; z = −a², and a²·e^{−a²} ≤ 1/e keeps that term's absolute error within a few u).
 */
const ERF_ERROR = 1.5e-7 + 32 * U;

/**
 * gelu(pre) = pre·Φ(pre) of a float64 product `pre` (denseOracle's), with a bound for the float32
 * result: |gelu′| ≤ 1.13 carries pre's own bound; erf's error times |pre|/2; and the rounding of
 * pre/√2 (erf′ ≤ 1.13), of 1 + erf, the halving and the product, within 6u·|pre|.
 */
export function geluOracle(pre: { value: Float64Array; bound: Float64Array }): { value: Float64Array; bound: Float64Array } {
  const value = pre.value.map((x) => x * cdf(x));
  const bound = pre.value.map((x, i) => 1.13 * pre.bound[i]! + Math.abs(x) * (0.5 * ERF_ERROR + 6 * U));
  return { value, bound };
}

/** σ(x) = 1/(1 + e^{−x}) in float64. */
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * The relative error of σ(x) formed in float32 as 1/(1 + e^{−x}): exp's 3 + 2|x| ULP (2u each)
 * reach σ scaled by 1 − σ; the add and the division round once each.
 */
const sigmoidError = (x: number) => (1 - sigmoid(x)) * (3 + 2 * Math.abs(x)) * 2 * U + 2 * U;

/**
 * swish(pre) = pre·σ(pre) of a float64 product `pre` (denseOracle's), with a bound for the float32
 * result: |swish′| ≤ 1.1 carries pre's own bound; σ's relative error and the product's rounding
 * scale |swish(pre)|.
 */
export function swishOracle(pre: { value: Float64Array; bound: Float64Array }): { value: Float64Array; bound: Float64Array } {
  const value = pre.value.map((x) => x * sigmoid(x));
  const bound = pre.value.map((x, i) => 1.1 * pre.bound[i]! + Math.abs(x * sigmoid(x)) * (sigmoidError(x) + U));
  return { value, bound };
}

/**
 * dy·swish′(x) = dy·(σ(x) + x·σ(x)·(1 − σ(x))) for exact x and dy, with a bound for the float32
 * result of tfjs's gradient of x·σ(x): σ's relative error, carried through σ and x·σ′ (each at
 * most (1 + |x|)·σ in size), and eight roundings of sums and products of size ≤ 1.1, times |dy|.
 */
export function swishGradOracle(x: ArrayLike<number>, dy: ArrayLike<number>): { value: Float64Array; bound: Float64Array } {
  const value = Float64Array.from(x, (v, i) => dy[i]! * (sigmoid(v) + v * sigmoid(v) * (1 - sigmoid(v))));
  const bound = Float64Array.from(x, (v, i) => Math.abs(dy[i]!) * (2 * sigmoidError(v) * (1 + Math.abs(v)) * sigmoid(v) + 8 * U * 1.1));
  return { value, bound };
}

/**
 * dy·gelu′(x) = dy·(Φ(x) + x·φ(x)) for exact x and dy (float32 inputs), with a bound for the
 * float32 result: Φ's error (erf's halved); x·φ's, exp's 3 + x² ULP (2u each, relative) of
 * e^{−x²/2}; and the rounding of the sum and the products, 8u·|gelu′| ≤ 8u·1.13, all times |dy|.
 */
export function geluGradOracle(x: ArrayLike<number>, dy: ArrayLike<number>): { value: Float64Array; bound: Float64Array } {
  const value = Float64Array.from(x, (v, i) => dy[i]! * (cdf(v) + v * density(v)));
  const bound = Float64Array.from(x, (v, i) =>
    Math.abs(dy[i]!) * (0.5 * ERF_ERROR + (3 + v * v) * 2 * U * Math.abs(v) * density(v) + 8 * U * 1.13));
  return { value, bound };
}

/**
 * The second derivative along v: v·gelu″(x) = v·φ(x)·(2 − x²), for exact x and v, with a bound for
 * its float32 form in tfjs ops: exp's 3 + x² ULP on φ, 2 − x²'s rounding (u·(2 + x²), absolute),
 * and the four products.
 */
export function geluSecondOracle(x: ArrayLike<number>, v: ArrayLike<number>): { value: Float64Array; bound: Float64Array } {
  const value = Float64Array.from(x, (a, i) => v[i]! * density(a) * (2 - a * a));
  const bound = Float64Array.from(x, (a, i) =>
    Math.abs(v[i]!) * density(a) * ((3 + a * a) * 2 * U * Math.abs(2 - a * a) + U * (2 + a * a) + 8 * U * Math.abs(2 - a * a)));
  return { value, bound };
}
