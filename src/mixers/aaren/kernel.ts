import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import frameBody from '../../../kernels/aaren/frame.wgsl';
import { finiteOnly } from '../../tensors.js';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import { runSeen } from '../gated-linear-attention/kernel.js';
import { gatedLinearAttentionStep, gatedLinearAttentionWithState } from '../gated-linear-attention/op.js';
import { HIDDEN, last, scores, type AarenArgs, type AarenState } from './reference.js';

/**
 * x's value with no gradient: for the initial state's m, which only chooses the frame the scan's
 * sums are kept in (as the frame kernel below, whose gradient is zero too).
 */
const withoutGradient = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  save([]);
  return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

/**
 * w/u, or 0 where u = 0 (a row with no real token yet), with its gradient; tf.divNoNan would put
 * its Equal, which has no gradient in tfjs, on the tape.
 */
const ratioOrZero = tf.customGrad(((w: tf.Tensor, u: tf.Tensor, save: tf.GradSaveFunc) => {
  const none = tf.equal(u, 0);
  const safe = tf.where(none, tf.onesLike(u), u);
  const ratio = tf.where(none, tf.zerosLike(w), tf.div(w, safe));
  save([none, safe, ratio]);
  return {
    value: ratio,
    gradFunc: (dy: tf.Tensor, [n, su, r]: tf.Tensor[]) => {
      const dw = tf.where(n!, tf.zerosLike(dy), tf.div(dy, su!));
      return [dw, tf.neg(tf.sum(tf.mul(dw, r!), -1, true))];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (w: tf.Tensor, u: tf.Tensor) => tf.Tensor;

/** m, or −∞ where u = 0 (an empty state), with m's gradient where it is kept and none for u. */
const emptyAsMinusInfinity = tf.customGrad(((m: tf.Tensor, u: tf.Tensor, save: tf.GradSaveFunc) => {
  const empty = tf.equal(u, 0);
  save([empty]);
  return {
    value: tf.where(empty, tf.fill(m.shape, -Infinity), m),
    gradFunc: (dy: tf.Tensor, [e]: tf.Tensor[]) => [tf.where(e!, tf.zerosLike(dy), dy), tf.zerosLike(dy)],
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (m: tf.Tensor, u: tf.Tensor) => tf.Tensor;

/**
 * tfjs kernel name, webgpu only. Input x `[B, H, n]`; output the frame `[B, H, n]`: x's running
 * max along its last axis, floored at {@link HIDDEN} (`kernels/aaren/frame.wgsl`). Its gradient
 * is zero: the frame only chooses the scale the scan's sums are kept in, and the outputs do not
 * depend on it.
 */
export const AAREN_FRAME = 'MixersAarenFrame';
const FRAME: KernelSource = { name: 'AarenFrame', code: frameBody };

registerKernelOnce({
  kernelName: AAREN_FRAME,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { x } = namedInputs(inputs, 'x');
    const [B, H, n] = x.shape as [number, number, number];
    return runKernel(backend as WebGPUBackend, FRAME, {
      inputs: [x], outputs: [x.shape], params: [{ u32: B * H }, { u32: n }], workgroups: grid1d(B * H, 1),
    })[0]!;
  },
});

registerGradientOnce({ kernelName: AAREN_FRAME, inputsToSave: ['x'], gradFunc: (_dy, [x]) => ({ x: () => tf.zerosLike(x!) }) });

/**
 * tfjs kernel name, webgpu only. Inputs k, v `[B, T, H, K]`; outputs the NaN-or-0 terms for the
 * outputs `[B, T, H, 1]` and the final state `[B, H, 1, 1]` of each head from the first token
 * whose k or v is NaN or ±∞ on: the reference's `poisonAfterNonFinite` and its last token, in one
 * launch of GatedLinearAttention's seen kernel (k stands in for its q and g, checked as k is).
 * No gradient reaches k or v through them.
 */
const AAREN_POISON = 'MixersAarenPoison';

registerKernelOnce({
  kernelName: AAREN_POISON,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { k, v } = namedInputs(inputs, 'k', 'v');
    return runSeen(backend as WebGPUBackend, [k, k, v, k], false);
  },
});

registerGradientOnce({
  kernelName: AAREN_POISON,
  inputsToSave: ['k', 'v'],
  gradFunc: (_dys, [k, v]) => ({ k: () => tf.zerosLike(k!), v: () => tf.zerosLike(v!) }),
});

/**
 * Aaren on the scan kernels: with the running max m_t (max of m_init and the scores so far) as
 * the frame, the state (u, w) after token t obeys the diagonal linear recurrence
 * ```
 * [w_t, u_t] = e^{m_{t−1} − m_t}·[w_{t−1}, u_{t−1}] + e^{s_t − m_t}·[v_t, 1]
 * ```
 * which is GatedLinearAttention with one key channel: log gate g_t = m_{t−1} − m_t ≤ 0, key
 * e^{s_t − m_t} (0 at a padded token), value [v_t, 1], query 1, scale 1, so it runs on GLA's scan
 * kernels, forward, backward and step. m carries no gradient (the outputs do not depend on the
 * frame); the final state's dependence on its m, the one place the frame shows, goes through a
 * factor e^{m_sg − m} (value 1) with m = max(m_init, the real scores), so every gradient is the
 * reference's. Non-finite k and v are taken as 0 and poison exactly what the reference poisons.
 * With `step` (one token, for the layer's decode) it runs GLA's one-launch step kernel, which
 * has no gradient.
 */
export function aarenOnScanKernels(args: AarenArgs, step = false): { output: tf.Tensor4D; state: AarenState } {
  return tf.tidy(() => {
    const [B, T, H, K] = args.k.shape;
    const { real } = args;
    const kIn = finiteOnly(args.k);
    const vIn = finiteOnly(args.v);
    // padded tokens' scores are HIDDEN, below every real one, and their keys 0
    const realBHT = real ? real.expandDims(1) : undefined;                                   // [B, 1, T]
    const s = realBHT ? tf.add(scores(args.q, kIn, args.scale), tf.mul(tf.sub(1, realBHT), HIDDEN)) as tf.Tensor3D
      : scores(args.q, kIn, args.scale);                                                   // [B, H, T]
    const init = args.initialState;
    const m0 = init ? init.m : tf.fill([B, H], -Infinity) as tf.Tensor2D;
    // the frame: m before and after each token, floored at HIDDEN so that every gate is finite
    const withInit = tf.concat([m0.expandDims(2), s], 2) as tf.Tensor3D;                    // [B, H, 1 + T]
    const frame = tf.engine().runKernel(AAREN_FRAME, { x: withInit }) as tf.Tensor3D;
    const before = tf.slice(frame, [0, 0, 0], [B, H, T]);
    const after = tf.slice(frame, [0, 0, 1], [B, H, T]);
    const tokensFirst = (x: tf.Tensor) => x.transpose([0, 2, 1]).expandDims(3) as tf.Tensor4D;   // [B, H, T] → [B, T, H, 1]
    const weight = tf.exp(tf.sub(s, after));
    const key = tokensFirst(realBHT ? tf.mul(weight, realBHT) : weight);
    const gate = tokensFirst(tf.sub(before, after));
    const values = tf.concat([vIn, tf.ones([B, T, H, 1])], 3) as tf.Tensor4D;
    // the initial state in its own frame (m_init floored as the frame is), with m_init's gradient
    const m0Frame = tf.maximum(m0, HIDDEN);
    const start = init
      ? tf.mul(tf.concat([init.w, init.u.expandDims(2)], 2), tf.exp(tf.sub(m0Frame, withoutGradient(m0Frame))).expandDims(2))
      : tf.zeros([B, H, K + 1]);
    const ones = tf.ones([B, T, H, 1]) as tf.Tensor4D;
    const run = step ? gatedLinearAttentionStep(ones, key, values, gate, start.expandDims(2) as tf.Tensor4D, { scale: 1 })
      : gatedLinearAttentionWithState(ones, key, values, gate, { scale: 1, initialState: start.expandDims(2) as tf.Tensor4D });
    const [w, u] = tf.split(run.output, [K, 1], 3);
    // with padding a row may have seen no real token (u = 0): its output is 0
    const output = (real ? ratioOrZero(w!, u!) : tf.div(w!, u!)) as tf.Tensor4D;
    // the final state, moved from the frame to m = max(m_init, real scores) (the same value),
    // so that its gradient in m reaches the maximiser as the reference's does
    const mT = tf.max(withInit, 2) as tf.Tensor2D;
    const [wT, uT] = tf.split(run.state.reshape([B, H, K + 1]), [K, 1], 2);
    const move = tf.where(tf.isFinite(mT), tf.exp(tf.sub(last(frame, 2), mT)), tf.onesLike(mT));
    const uFinal = tf.mul(uT!.reshape([B, H]), move) as tf.Tensor2D;
    const wFinal = tf.mul(wT!, move.expandDims(2)) as tf.Tensor3D;
    // an empty final state (no real token and no initial one) has m = −∞, as the empty state
    const mFinal = real ? emptyAsMinusInfinity(mT, uFinal) as tf.Tensor2D : mT;
    // a non-finite k or v at token t: that head's outputs from t on, and its final state
    const [poison, poisonHeads] = tf.engine().runKernel(AAREN_POISON, { k: args.k, v: args.v }) as tf.Tensor4D[];
    const poisonState = poisonHeads!.reshape([B, H]) as tf.Tensor2D;
    return {
      output: tf.add(output, poison!) as tf.Tensor4D,
      state: {
        m: tf.add(mFinal, poisonState) as tf.Tensor2D,
        u: tf.add(uFinal, poisonState) as tf.Tensor2D,
        w: tf.add(wFinal, poisonState.expandDims(2)) as tf.Tensor3D,
      },
    };
  });
}
