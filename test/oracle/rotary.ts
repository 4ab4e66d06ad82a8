// float64 oracle for the rotary position embedding (MIXERS.md §8), written from the equations,
// not from the op: θ_m = base^(−2m/R), the angle p·θ_m and its sine and cosine all in float64,
// applied to the float32 inputs.

/** x `[B, T, H, K]` as its shape. */
export interface RotaryShape { B: number; T: number; H: number; K: number }

export interface RotaryOracleOptions {
  /** `[B·T]` positions, row-major; overrides `offset`. */
  positions?: ArrayLike<number>;
  /** A number, or one per row `[B]`. Default 0. */
  offset?: number | ArrayLike<number>;
  base?: number;
  rotaryDim?: number;
  interleaved?: boolean;
}

/** The position of token t in row b, as §8 defines it. */
export function positionOf(o: RotaryOracleOptions, T: number, b: number, t: number): number {
  if (o.positions) return o.positions[b * T + t]!;
  const off = o.offset ?? 0;
  return (typeof off === 'number' ? off : off[b]!) + t;
}

/** θ_m in float64, m = 0..R/2−1. */
export function thetaOracle(base: number, R: number): Float64Array {
  return Float64Array.from({ length: R / 2 }, (_, m) => base ** (-(2 * m) / R));
}

/** The channels (a, b) of pair m. */
export function pairOf(m: number, R: number, interleaved: boolean): [number, number] {
  return interleaved ? [2 * m, 2 * m + 1] : [m, m + R / 2];
}

/**
 * y = rotary(x), or with `inverse` the rotation by −p·θ_m, which is the gradient: the rotation is
 * orthogonal, so dL/dx = Rᵀ·dL/dy = R(−p·θ)·dy.
 */
export function rotaryOracle(
  x: ArrayLike<number>, s: RotaryShape, o: RotaryOracleOptions = {}, inverse = false,
): Float64Array {
  const R = o.rotaryDim ?? s.K;
  const theta = thetaOracle(o.base ?? 10000, R);
  const y = Float64Array.from(x);
  for (let b = 0; b < s.B; b++) {
    for (let t = 0; t < s.T; t++) {
      const p = positionOf(o, s.T, b, t);
      for (let h = 0; h < s.H; h++) {
        const row = ((b * s.T + t) * s.H + h) * s.K;
        for (let m = 0; m < R / 2; m++) {
          const angle = p * theta[m]!;
          const c = Math.cos(angle);
          const sn = inverse ? -Math.sin(angle) : Math.sin(angle);
          const [ia, ib] = pairOf(m, R, o.interleaved ?? false);
          const xa = x[row + ia]!;
          const xb = x[row + ib]!;
          y[row + ia] = xa * c - xb * sn;
          y[row + ib] = xa * sn + xb * c;
        }
      }
    }
  }
  return y;
}
