import * as tf from '@tensorflow/tfjs';
import { expNonPositive, finitePart, notFinite, poisonWhere } from '../../tensors.js';
import type { AarenArgs, AarenState } from './reference.js';

/**
 * One token of Aaren in tfjs ops, differentiable: the decode step off WebGPU. The token's score
 * s = scale·q·k merges into the state:
 * ```
 * m' = max(m, s)    u' = u·e^{m − m'} + e^{s − m'}    w' = w·e^{m − m'} + e^{s − m'}·v    o = w'/u'
 * ```
 * on k's and v's finite parts, with the output and the state of a head NaN where its k or v is
 * not finite: the reference's results at T = 1 (to rounding), its gradients too (tfjs's max sends
 * m's gradient to the state's m on a tie, the first maximiser, as the reference does), in a third
 * of its launches, which is what a decode step costs on webgl.
 *
 * @returns the output `[B, 1, H, K]` and the state after the token.
 *
 * @example
 * ```ts
 * const [b, h, k] = [2, 4, 8];
 * const x = () => tf.randomNormal([b, 1, h, k]) as tf.Tensor4D;
 * const start = { m: tf.fill([b, h], -Infinity) as tf.Tensor2D, u: tf.zeros([b, h]) as tf.Tensor2D, w: tf.zeros([b, h, k]) as tf.Tensor3D };
 * const { output, state } = aarenToken({ q: tf.randomNormal([h, k]) as tf.Tensor2D, k: x(), v: x(), scale: 0.35, initialState: start });
 * output.shape;    // [2, 1, 4, 8]
 * state.w.shape;   // [2, 4, 8]
 * ```
 */
export function aarenToken(args: AarenArgs & { initialState: AarenState }): { output: tf.Tensor4D; state: AarenState } {
  return tf.tidy(() => {
    const [B, , H, K] = args.k.shape;
    const [k, v] = [finitePart(args.k), finitePart(args.v)];
    const s = tf.mul(tf.sum(tf.mul(k.finite, args.q), -1), args.scale).reshape([B, H]);
    const { m, u, w } = args.initialState;
    const m1 = tf.maximum(m, s);
    const carried = expNonPositive(tf.sub(m, m1));
    const fresh = expNonPositive(tf.sub(s, m1));
    const u1 = tf.add(tf.mul(u, carried), fresh);
    const w1 = tf.add(tf.mul(w, carried.expandDims(2)), tf.mul(v.finite.reshape([B, H, K]), fresh.expandDims(2)));
    // NaN for the heads whose k or v is not finite, [B, H]
    const poison = poisonWhere(notFinite([k.ok, v.ok], 3)).reshape([B, H]);
    return {
      output: tf.add(tf.div(w1, u1.expandDims(2)), poison.expandDims(2)).reshape([B, 1, H, K]) as tf.Tensor4D,
      state: {
        m: tf.add(m1, poison) as tf.Tensor2D, u: tf.add(u1, poison) as tf.Tensor2D,
        w: tf.add(w1, poison.expandDims(2)) as tf.Tensor3D,
      },
    };
  });
}
