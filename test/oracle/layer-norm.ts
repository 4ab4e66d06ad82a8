/** The float64 oracle of `ops.layerNorm` and of RMSNorm: the value and the gradients, row by row. */

/**
 * y = (x − mean)/√(var + ε)·gamma + beta over rows of D, and for an upstream dy the gradients
 * dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) (g = dy·gamma, x̂ the normalised row), dgamma = Σ dy·x̂
 * and dbeta = Σ dy. Not `centred`, RMSNorm: the mean is taken as 0 (var = mean(x²)), so dx
 * loses its mean(g) term; pass a beta of zeros.
 */
export function layerNormOracle(x: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>, epsilon: number,
  dy: ArrayLike<number>, centred = true): { y: Float64Array; dx: Float64Array; dGamma: Float64Array; dBeta: Float64Array } {
  const D = gamma.length;
  const M = x.length / D;
  const y = new Float64Array(M * D);
  const dx = new Float64Array(M * D);
  const dGamma = new Float64Array(D);
  const dBeta = new Float64Array(D);
  for (let m = 0; m < M; m++) {
    const row = Array.from({ length: D }, (_, d) => x[m * D + d]!);
    const mean = centred ? row.reduce((a, b) => a + b, 0) / D : 0;
    const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / D;
    const rstd = 1 / Math.sqrt(variance + epsilon);
    const xHat = row.map((v) => (v - mean) * rstd);
    const g = xHat.map((_, d) => dy[m * D + d]! * gamma[d]!);
    const gMean = centred ? g.reduce((a, b) => a + b, 0) / D : 0;
    const gxMean = g.reduce((a, b, d) => a + b * xHat[d]!, 0) / D;
    for (let d = 0; d < D; d++) {
      y[m * D + d] = xHat[d]! * gamma[d]! + beta[d]!;
      dx[m * D + d] = rstd * (g[d]! - gMean - xHat[d]! * gxMean);
      dGamma[d] += dy[m * D + d]! * xHat[d]!;
      dBeta[d] += dy[m * D + d]!;
    }
  }
  return { y, dx, dGamma, dBeta };
}

/**
 * RMSNorm with a swish output gate, y = n·z·σ(z) with n RMSNorm(x)·gamma, and for an upstream dy
 * its gradients: the norm's output gradient dn = dy·z·σ(z) carried to x and gamma as in
 * {@link layerNormOracle}, and dgate = dy·n·σ(z)·(1 + z·(1 − σ(z))).
 */
export function rmsNormSwishGateOracle(x: ArrayLike<number>, gamma: ArrayLike<number>, gate: ArrayLike<number>, epsilon: number,
  dy: ArrayLike<number>): { y: Float64Array; dx: Float64Array; dGamma: Float64Array; dGate: Float64Array } {
  const sigmoid = Array.from(gate, (z) => 1 / (1 + Math.exp(-z)));
  const dn = Float64Array.from(dy, (g, i) => g * gate[i]! * sigmoid[i]!);
  const zeros = new Float64Array(gamma.length);
  const n = layerNormOracle(x, gamma, zeros, epsilon, dn, false);
  const y = n.y.map((v, i) => v * gate[i]! * sigmoid[i]!);
  const dGate = n.y.map((v, i) => dy[i]! * v * sigmoid[i]! * (1 + gate[i]! * (1 - sigmoid[i]!)));
  return { y, dx: n.dx, dGamma: n.dGamma, dGate };
}
