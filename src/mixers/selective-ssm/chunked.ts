import * as tf from '@tensorflow/tfjs';
import { chunkAt, enteringStates } from '../../tensors.js';
import { scanOnFinite, type Recurrence, type ScanArgs } from './reference.js';

// The selective scan in O(CHUNK + log T) launches of tfjs ops, for webgl, which has neither WGSL
// nor plain-JS kernels and launches a shader per op, where the per-step reference takes ~30 a step.

/**
 * Steps per chunk. The loops run CHUNK steps on all chunks at once and the rounds across chunks
 * grow as log₂(T / CHUNK); on webgl (SwiftShader) 8 and 16 measured alike, 8 launching fewer.
 */
const CHUNK = 8;

/** How T steps are cut: n chunks of c steps (the last padded with zeros), the last real step at `last` of the last chunk. */
interface Cut { T: number; c: number; n: number; last: number }

function cutOf(T: number): Cut {
  const c = Math.min(CHUNK, T);
  return { T, c, n: Math.ceil(T / c), last: (T - 1) % c };
}

/** `[B, T, ...]` as the chunks' steps: c tensors `[B, n, ...]`, the t-th step of every chunk, zeros past T. */
function stepsOf(x: tf.Tensor, { T, c, n }: Cut): tf.Tensor[] {
  return tf.tidy(() => {
    const padded = n * c === T ? x : tf.pad(x, x.shape.map((_, i): [number, number] => [0, i === 1 ? n * c - T : 0]));
    return tf.unstack(tf.reshape(padded, [x.shape[0]!, n, c, ...x.shape.slice(2)]), 2);
  });
}

/**
 * The recurrence's inputs as the chunks' steps, shaped to broadcast against `[B, n, E, N]`
 * states, and its step `h ↦ a[t] ⊙ h + x[t] ⊗ B[t]` in every chunk at once.
 */
function chunkSteps(a: tf.Tensor, x: tf.Tensor, B: tf.Tensor, C: tf.Tensor, cut: Cut) {
  const as = stepsOf(a, cut);                                           // c × [B, n, E, N]
  const xs = stepsOf(x, cut).map((s) => tf.expandDims(s, 3));           // c × [B, n, E, 1]
  const Bs = stepsOf(B, cut).map((s) => tf.expandDims(s, 2));           // c × [B, n, 1, N]
  const Cs = stepsOf(C, cut).map((s) => tf.expandDims(s, 2));
  const step = (t: number, h: tf.Tensor) => tf.add(tf.mul(as[t]!, h), tf.mul(xs[t]!, Bs[t]!));
  return { as, xs, Bs, Cs, step };
}

/** The recurrence's packed `[B, T·E + E·N]` (its output, or that output's gradient) as y `[B, T, E]` and the last state `[B, E, N]`. */
function unpacked(packed: tf.Tensor, [Bsz, T, E, N]: [number, number, number, number]): [tf.Tensor, tf.Tensor] {
  return [
    tf.reshape(tf.slice(packed, [0, 0], [Bsz, T * E]), [Bsz, T, E]),
    tf.reshape(tf.slice(packed, [0, T * E], [Bsz, E * N]), [Bsz, E, N]),
  ];
}

/** The inverse of {@link stepsOf}: c tensors `[B, n, ...]` back to `[B, T, ...]`, which it disposes. */
function joined(steps: tf.Tensor[], { T, c, n }: Cut): tf.Tensor {
  const [Bsz, , ...rest] = steps[0]!.shape;
  const stacked = tf.stack(steps, 2);
  tf.dispose(steps);
  return tf.tidy(() => {
    const whole = tf.reshape(stacked, [Bsz!, n * c, ...rest]);
    return n * c === T ? whole : tf.slice(whole, [0, 0, ...rest.map(() => 0)], [Bsz!, T, ...rest]);
  });
}

/**
 * The recurrence chunk-parallel: the sequence cut into chunks of {@link CHUNK} steps, a loop over
 * a chunk's steps runs in every chunk at once from a zero state, the states entering the chunks
 * follow by {@link enteringStates}, and the loop runs again from those, forming the outputs:
 * twice the per-step loop's arithmetic in CHUNK + log₂ T rounds of launches instead of T. The
 * backward is the same scheme on the adjoint `λ[t] = dy[t] ⊗ C[t] + a[t+1] ⊙ λ[t+1]` run from the
 * end, with each chunk's states recomputed from its saved entering state: tfjs's autodiff through
 * the forward would keep every step's products, measured 2.4× the per-step loop's peak memory.
 *
 * Inputs a `[B, T, E, N]`, x `[B, T, E]`, B, C `[B, T, N]`, h0 `[B, E, N]`; the output is y
 * `[B, T, E]` and the last state `[B, E, N]` side by side, `[B, T·E + E·N]`, as tfjs's customGrad
 * takes one output.
 */
const recurrence = tf.customGrad(((a: tf.Tensor, x: tf.Tensor, B: tf.Tensor, C: tf.Tensor, h0: tf.Tensor, save: tf.GradSaveFunc) => {
  const [Bsz, T, E, N] = a.shape as [number, number, number, number];
  const cut = cutOf(T);
  // the temporaries freed as soon as they are used: what the backward needs is saved
  const [value, entering] = tf.tidy(() => {
    const { as, xs, Bs, Cs, step } = chunkSteps(a, x, B, C, cut);
    let own = tf.mul(xs[0]!, Bs[0]!);
    let decay = as[0]!;
    for (let t = 1; t < cut.c; t++) {
      own = step(t, own);
      decay = tf.mul(as[t]!, decay);
    }
    const entering = enteringStates(own, decay, h0);
    let h = entering;
    const ys: tf.Tensor[] = [];
    let state = h0;
    for (let t = 0; t < cut.c; t++) {
      h = step(t, h);
      ys.push(tf.sum(tf.mul(h, Cs[t]!), 3));
      if (t === cut.last) state = chunkAt(h, cut.n - 1);
    }
    return [tf.concat([tf.reshape(joined(ys, cut), [Bsz, T * E]), tf.reshape(state, [Bsz, E * N])], 1), entering];
  });
  save([a, x, B, C, h0, entering!]);
  return {
    value: value!,
    gradFunc: (dPacked: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => recurrenceGrad(dPacked, saved, cut)),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor, x: tf.Tensor, B: tf.Tensor, C: tf.Tensor, h0: tf.Tensor) => tf.Tensor;

/** {@link recurrence}'s gradients in a, x, B, C and h0, from the packed gradient of y and the last state. */
function recurrenceGrad(dPacked: tf.Tensor, [a, x, B, C, h0, entering]: tf.Tensor[], cut: Cut): tf.Tensor[] {
  const [Bsz, T, E, N] = a!.shape as [number, number, number, number];
  const { c, n, last } = cut;
  const [dy, dLast] = unpacked(dPacked, [Bsz, T, E, N]);
  const dState = tf.reshape(dLast, [Bsz, 1, E, N]);
  const { as, xs, Bs, Cs, step } = chunkSteps(a!, x!, B!, C!, cut);
  const dys = stepsOf(dy, cut).map((s) => tf.expandDims(s, 3));          // c × [B, n, E, 1]
  // the states in each chunk, recomputed from the saved entering states: hs[t] before step t, hs[t + 1] after it
  const hs = [entering!];
  let decay = as[0]!;
  for (let t = 0; t < c; t++) {
    hs.push(tf.tidy(() => step(t, hs[t]!)));
    if (t > 0) decay = tf.mul(as[t]!, decay);
  }
  // the adjoint's source at each step: dy ⊗ C, and the last state's gradient at the last real step
  const source = (t: number) => {
    const g = tf.mul(dys[t]!, Cs[t]!);
    return t === last ? tf.add(g, tf.pad(dState, [[0, 0], [n - 1, 0], [0, 0], [0, 0]])) : g;
  };
  // one step of the adjoint back, freeing the step after's (the loops' temporaries would
  // otherwise all live until the backward's end)
  const stepBack = (t: number, lambda: tf.Tensor) => {
    const next = tf.tidy(() => tf.add(source(t), tf.mul(as[t + 1]!, lambda)));
    lambda.dispose();
    return next;
  };
  // each chunk's adjoint at its first step from zero after its end, then the adjoint reaching
  // each chunk's end from the chunks after it: the forward's scan across chunks, from the end
  let local = source(c - 1);
  for (let t = c - 2; t >= 0; t--) local = stepBack(t, local);
  const own = tf.mul(as[0]!, local);
  const reaching = enteringStates(own, decay, tf.zerosLike(h0!), true);
  const dh0 = tf.add(chunkAt(own, 0), tf.mul(chunkAt(decay, 0), chunkAt(reaching, 0)));
  const da: tf.Tensor[] = [];
  const dx: tf.Tensor[] = [];
  const dB: tf.Tensor[] = [];
  const dC: tf.Tensor[] = [];
  let lambda = tf.tidy(() => tf.add(source(c - 1), reaching));
  for (let t = c - 1; t >= 0; t--) {
    if (t < c - 1) lambda = stepBack(t, lambda);
    const l = lambda;
    [da[t], dx[t], dB[t], dC[t]] = tf.tidy(() => [
      tf.mul(l, hs[t]!), tf.sum(tf.mul(l, Bs[t]!), 3), tf.sum(tf.mul(l, xs[t]!), 2), tf.sum(tf.mul(dys[t]!, hs[t + 1]!), 2)]);
  }
  return [joined(da, cut), joined(dx, cut), joined(dB, cut), joined(dC, cut), dh0];
}

/** The recurrence on finite inputs ({@link Recurrence}) by {@link recurrence}. */
const chunked: Recurrence = (decays, inputs, B, C, h0) => {
  const [y, state] = unpacked(recurrence(decays, inputs, B, C, h0), decays.shape as [number, number, number, number]);
  return { y, state };
};

/**
 * The selective scan in tfjs ops, chunk-parallel: a loop over the 8 steps of every chunk at once,
 * the states entering the chunks by recursive doubling across them, and the loop again from those.
 * Where the per-step {@link selectiveScanReference} launches ~30 kernels a step, forward and
 * backward, this launches O(8 + log T); the non-finite inputs are treated as the reference treats them.
 *
 * @returns the output `[B, T, E]` and the final state `[B, E, N]`.
 *
 * @example
 * ```ts
 * const [b, t, e, n] = [1, 1024, 64, 16];
 * const A = tf.neg(tf.tile(tf.range(1, n + 1).reshape([1, n]), [e, 1])) as tf.Tensor2D;
 * const { output, state } = selectiveScanChunked({ u: tf.randomNormal([b, t, e]), delta: tf.randomNormal([b, t, e]),
 *   A, B: tf.randomNormal([b, t, n]), C: tf.randomNormal([b, t, n]), deltaSoftplus: true });   // [1, 1024, 64], [1, 64, 16]
 * ```
 */
export function selectiveScanChunked(args: ScanArgs): { output: tf.Tensor3D; state: tf.Tensor3D } {
  return scanOnFinite(args, chunked);
}
