import * as tf from '@tensorflow/tfjs';
import { copy } from '../../cpu-host.js';
import { finitePart, notFinite, poisonWhere } from '../../tensors.js';

/** The resolved inputs of one selective scan, checked by the op. */
export interface ScanArgs {
  u: tf.Tensor3D;
  delta: tf.Tensor3D;
  A: tf.Tensor2D;
  B: tf.Tensor3D;
  C: tf.Tensor3D;
  D?: tf.Tensor1D;
  z?: tf.Tensor3D;
  deltaBias?: tf.Tensor1D;
  deltaSoftplus: boolean;
  initialState?: tf.Tensor3D;
}

/**
 * `softplus(x) = max(x, 0) + log1p(exp(−|x|))`, which neither overflows nor loses the small
 * values, with its exact derivative σ(x) (autodiff through `|x|` would give 0 at x = 0).
 */
export const softplus = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: tf.add(tf.relu(x), tf.log1p(tf.exp(tf.neg(tf.abs(x))))),
    gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => tf.mul(dy, tf.sigmoid(saved!)),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

/** Δ = softplus(delta + deltaBias), or without the softplus: `[B, T, E]`. */
export function stepSizes(delta: tf.Tensor, deltaBias: tf.Tensor | undefined, deltaSoftplus: boolean): tf.Tensor {
  const pre = deltaBias ? tf.add(delta, deltaBias) : delta;
  return deltaSoftplus ? softplus(pre) : pre;
}

/** `y + D·u`, then `· silu(z)`: the skip and the gate, applied to the scan's `y`. */
export function skipAndGate(y: tf.Tensor, u: tf.Tensor, D: tf.Tensor | undefined, z: tf.Tensor | undefined): tf.Tensor {
  const skipped = D ? tf.add(y, tf.mul(u, D)) : y;
  return z ? tf.mul(skipped, tf.mul(z, tf.sigmoid(z))) : skipped;
}

/** The slices of `x` along axis 1; tfjs 4.22's unstack has no usable gradient for one slice. */
function steps(x: tf.Tensor): tf.Tensor[] {
  return x.shape[1] === 1 ? [x.squeeze([1])] : tf.unstack(x, 1);
}

/**
 * The recurrence `h[t] = decays[t] ⊙ h[t−1] + inputs[t] ⊗ B[t]`, `y[t] = h[t]·C[t]` on finite
 * per-token inputs: decays `[B, T, E, N]`, inputs (Δ·u) `[B, T, E]`, B and C `[B, T, N]`, the
 * state before the first step `[B, E, N]`. Returns y `[B, T, E]` and the last state.
 */
export type Recurrence = (decays: tf.Tensor, inputs: tf.Tensor, B: tf.Tensor, C: tf.Tensor, h0: tf.Tensor) =>
  { y: tf.Tensor; state: tf.Tensor };

/**
 * The per-step recurrence, as Mamba's own reference: a loop over the steps on `[B, E, N]`
 * states. The per-step slices come from `unstack`, whose gradient is one `stack`.
 */
const perStep: Recurrence = (decays, inputs, B, C, h0) => {
  const a = steps(decays);                    // T × [B, E, N]
  const x = steps(inputs.expandDims(3));      // T × [B, E, 1]
  const Bs = steps(B.expandDims(2));          // T × [B, 1, N]
  const Cs = steps(C.expandDims(2));
  let h = h0;
  const ys: tf.Tensor[] = [];
  for (let t = 0; t < a.length; t++) {
    h = tf.add(tf.mul(a[t]!, h), tf.mul(x[t]!, Bs[t]!));
    ys.push(tf.sum(tf.mul(h, Cs[t]!), 2));
  }
  return { y: tf.stack(ys, 1), state: h };
};

/**
 * The selective scan in tfjs ops around a {@link Recurrence}, differentiable by tfjs's autodiff.
 * Every step's decay `exp(Δ ⊗ A)` is formed at once, so A's gradient is one reduction.
 *
 * The recurrence runs on the per-token inputs with their NaN and ±∞ replaced by 0; the outputs
 * and states that see one are made NaN at the end. Otherwise a later token's NaN would reach the
 * gradients of earlier ones through 0 · NaN in the backward pass.
 */
export function scanOnFinite(args: ScanArgs, recurrence: Recurrence): { output: tf.Tensor3D; state: tf.Tensor3D } {
  return tf.tidy(() => {
    const [Bsz, , E] = args.u.shape;
    const N = args.A.shape[1];
    const u = finitePart(args.u);
    const delta = finitePart(args.delta);
    const $B = finitePart(args.B);
    const $C = finitePart(args.C);
    const z = args.z && finitePart(args.z);
    const dt = stepSizes(delta.finite, args.deltaBias, args.deltaSoftplus);
    const { y, state } = recurrence(tf.exp(tf.mul(dt.expandDims(3), args.A)), tf.mul(dt, u.finite), $B.finite, $C.finite,
      args.initialState ?? tf.zeros([Bsz, E, N]));
    // how many steps with a non-finite input have entered the state of channel e by step t: [B, T, E] (exact
    // small integers), off the tape as notFinite's flags are (tfjs 4.22's Cumsum gradient transposes wrongly off the last axis)
    const seen = tf.cumsum(tf.add(notFinite([u.ok, delta.ok]), notFinite([$B.ok], -1)), 1);
    const outputSees = tf.add(tf.add(seen, notFinite([$C.ok], -1)), z ? notFinite([z.ok]) : 0);
    const output = skipAndGate(y, u.finite, args.D, z?.finite);
    const last = seen.shape[1]! - 1;
    return {
      output: tf.add(output, poisonWhere(outputSees)) as tf.Tensor3D,
      state: tf.add(state, poisonWhere(copy.slice(seen, [0, last, 0], [Bsz, 1, E])).reshape([Bsz, E, 1])) as tf.Tensor3D,
    };
  });
}

/**
 * The selective scan in tfjs ops, differentiable by tfjs's autodiff: the ground truth on every
 * backend, the per-step loop of Mamba's own reference ({@link scanOnFinite}). (A chunked closed
 * form, an `[L, L+1]` decay matrix per chunk, was measured 60–200× slower on tfjs-webgpu, whose
 * batched matMuls and reductions over short axes launch a workgroup per tiny output.)
 *
 * @returns the output `[B, T, E]` and the final state `[B, E, N]`.
 */
export function selectiveScanReference(args: ScanArgs): { output: tf.Tensor3D; state: tf.Tensor3D } {
  return scanOnFinite(args, perStep);
}

/**
 * One step of the scan in tfjs ops: `h' = exp(Δ·A)·h + Δ·u ⊗ B`, `y = h'·C (+ D·u)(· silu(z))`.
 * Shapes as {@link ScanArgs} without T: u, delta, z `[B, E]`; B, C `[B, N]`; state `[B, E, N]`.
 */
export function selectiveScanStepReference(
  args: Omit<ScanArgs, 'u' | 'delta' | 'B' | 'C' | 'z' | 'initialState'> & {
    u: tf.Tensor2D; delta: tf.Tensor2D; B: tf.Tensor2D; C: tf.Tensor2D; z?: tf.Tensor2D; state: tf.Tensor3D;
  },
): { output: tf.Tensor2D; state: tf.Tensor3D } {
  return tf.tidy(() => {
    const dt = stepSizes(args.delta, args.deltaBias, args.deltaSoftplus).expandDims(2);   // [B, E, 1]
    const state = tf.add(
      tf.mul(tf.exp(tf.mul(dt, args.A.expandDims(0))), args.state),
      tf.mul(tf.mul(dt, args.u.expandDims(2)), args.B.expandDims(1)));
    const y = tf.sum(tf.mul(state, args.C.expandDims(1)), 2);
    return { output: skipAndGate(y, args.u, args.D, args.z) as tf.Tensor2D, state: state as tf.Tensor3D };
  });
}
