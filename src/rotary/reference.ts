import * as tf from '@tensorflow/tfjs';
import { copy } from '../cpu-host.js';

/**
 * θ_m = base^(−2m/R), m = 0..R/2−1, in float64, then rounded once to float32: the reference and
 * the kernel read the same table, whose error is at most half an ulp (relative 2^-24).
 */
export function rotaryFrequencies(base: number, R: number): Float32Array {
  return Float32Array.from({ length: R / 2 }, (_, m) => base ** (-(2 * m) / R));
}

/** Where the positions come from: a `[B, T]` table, an int32 offset per row `[B]`, or one offset. */
export type RotaryPositions =
  | { kind: 'table'; positions: tf.Tensor2D }
  | { kind: 'rows'; offset: tf.Tensor1D }
  | { kind: 'scalar'; offset: number };

/** The positions as float32 `[B|1, T]`: exact, as every integer up to 2^24 is. */
function positionsOf(pos: RotaryPositions, T: number): tf.Tensor2D {
  if (pos.kind === 'table') return tf.cast(pos.positions, 'float32');
  if (pos.kind === 'rows') return tf.cast(tf.add(pos.offset.expandDims(1), tf.range(0, T, 1, 'int32')), 'float32') as tf.Tensor2D;
  return tf.range(pos.offset, pos.offset + T, 1, 'float32').expandDims(0);
}

// Cody–Waite's π/2 = C1 + C2 + C3, C1 and C2 of 8 significant bits each (kernels/rotary/sincos.wgsl)
const C1 = 1.5703125;
const C2 = 4.825592041015625e-4;
const C3 = 1.2675908465098473e-6;

/**
 * (sin a, cos a) of float32 angles in tfjs ops, as `kernels/rotary/sincos.wgsl` computes them:
 * a = k·π/2 + r with |r| ≤ π/4 by Cody–Waite (k·C1 and k·C2 exact for |k| < 2¹⁶), the Taylor
 * polynomials of sin r and cos r, then the quadrant k mod 4. tf.sin and tf.cos are the backend's
 * own: on webgl (GLSL's sin and cos) SwiftShader's err by 2·10⁻⁴ on [0, 1] and 6·10⁻³ past 16,000,
 * and a rotary angle p·θ_0 = p reaches 65536 and more.
 */
function sinCos(a: tf.Tensor): [tf.Tensor, tf.Tensor] {
  const k = tf.round(tf.mul(a, 2 / Math.PI));
  const r = tf.sub(tf.sub(tf.sub(a, tf.mul(k, C1)), tf.mul(k, C2)), tf.mul(k, C3));
  const r2 = tf.mul(r, r);
  // Horner's rule from the highest coefficient
  const poly = (coefficients: number[]) => coefficients.reduce<tf.Tensor>((acc, c) => tf.add(tf.mul(acc, r2), c), tf.zerosLike(r2));
  const s = tf.add(r, tf.mul(tf.mul(r, r2), poly([1 / 362880, -1 / 5040, 1 / 120, -1 / 6])));
  const c = tf.add(1, tf.mul(r2, poly([-1 / 3628800, 1 / 40320, -1 / 720, 1 / 24, -0.5])));
  // a = r + q·π/2, q = k mod 4 in 0..3: sin a = ±(s or c), cos a = ±(c or s)
  const q = tf.mod(k, 4);
  const odd = tf.equal(tf.mod(q, 2), 1);
  const sign = (negative: tf.Tensor) => tf.sub(1, tf.mul(tf.cast(negative, 'float32'), 2));
  return [
    tf.mul(sign(tf.greaterEqual(q, 2)), tf.where(odd, c, s)),
    tf.mul(sign(tf.less(tf.abs(tf.sub(q, 1.5)), 1)), tf.where(odd, s, c)),
  ];
}

/** `[..., n]` → its channels `[from, from + n)`. */
const channels = (x: tf.Tensor4D, from: number, n: number) => copy.slice(x, [0, 0, 0, from], [-1, -1, -1, n]);

/**
 * The rotary embedding in tfjs ops, differentiable by tfjs's autodiff (the gradient is then
 * the transposed rotation): the ground truth on every backend. x `[B, T, H, K]` with B·T > 0,
 * `theta` `[R/2]` from {@link rotaryFrequencies}.
 */
export function rotaryReference(
  x: tf.Tensor4D, theta: tf.Tensor1D, pos: RotaryPositions, interleaved: boolean,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, T, H, K] = x.shape;
    const half = theta.shape[0];
    const R = 2 * half;
    // the angle as §8 forms it, one float32 product p·θ_m: [B|1, T, 1, R/2], shared by the heads
    const angle = tf.mul(positionsOf(pos, T).expandDims(2), theta).expandDims(2) as tf.Tensor4D;
    const [sin, cos] = sinCos(angle);
    const rotate = (xa: tf.Tensor4D, xb: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] =>
      [tf.sub(tf.mul(xa, cos), tf.mul(xb, sin)), tf.add(tf.mul(xa, sin), tf.mul(xb, cos))];
    let rotated: tf.Tensor4D;
    if (interleaved) {
      // pairs (2m, 2m + 1): split the last axis into [R/2, 2], staying at rank 4
      const pairs = channels(x, 0, R).reshape([B, T, H * half, 2]);
      const part = (i: number) => copy.slice(pairs, [0, 0, 0, i], [-1, -1, -1, 1]).reshape([B, T, H, half]) as tf.Tensor4D;
      const [ya, yb] = rotate(part(0), part(1));
      rotated = copy.concat([ya.reshape([B, T, H * half, 1]), yb.reshape([B, T, H * half, 1])], 3).reshape([B, T, H, R]);
    } else {
      // pairs (m, m + R/2)
      rotated = copy.concat(rotate(channels(x, 0, half), channels(x, half, half)), 3);
    }
    return R === K ? rotated : copy.concat([rotated, channels(x, R, K - R)], 3);
  });
}
