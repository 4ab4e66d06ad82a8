import * as tf from '@tensorflow/tfjs';
import {
  argumentError, checkOptionNames, checkShape, checkTensor, describe, differentiableZeros, optionNames, useKernel,
  type Implementation,
} from '../../validate.js';
import { aarenReference, emptyState, type AarenArgs, type AarenState } from './reference.js';
import { aarenOnScanKernels } from './kernel.js';
import { aarenToken } from './token.js';
import { advancedPositions } from '../../positions.js';

export type { AarenState } from './reference.js';

/** Options of `ops.aaren` and `ops.aarenWithState`. */
export interface AarenOptions {
  /** Multiplies q·k before the softmax: a finite number > 0. Default `1/√K`. */
  scale?: number;
  /**
   * The state to continue from, `{ m: [B, H], u: [B, H], w: [B, H, K] }` (a previous call's
   * `state`): the scan's first element, so its m enters the max. Default the empty state
   * (m = −∞, u = 0, w = 0), which gives the same result as a sequence that starts here. A state
   * with u = 0 should have m = −∞, as every state this op returns does: zeros would also act as
   * empty, until every score falls so far below m (about 100) that e^{s − m} underflows to 0 in float32.
   */
  initialState?: AarenState;
  /**
   * Which implementation runs. Default `'auto'`: the WGSL scan kernels on webgpu (as
   * GatedLinearAttention's with one key channel), the tfjs-ops reference elsewhere; `'reference'`
   * always runs that reference.
   */
  implementation?: Implementation;
}

const OPTIONS = optionNames<AarenOptions>({ scale: true, initialState: true, implementation: true });
const STATE_PARTS = optionNames<AarenState>({ m: true, u: true, w: true });

/** Aaren's output and its final state (a `tf.TensorContainer`). */
export type AarenResult = {
  /** `[B, T, H, K]`. */
  output: tf.Tensor4D;
  /** The state after the last token, `{ m: [B, H], u: [B, H], w: [B, H, K] }`. */
  state: AarenState;
};

/** Checks q, k, v and the options once; returns the reference's arguments. */
function checkAaren(op: string, q: unknown, k: unknown, v: unknown, options: AarenOptions): AarenArgs {
  checkOptionNames(op, options, OPTIONS);
  const $q = checkTensor<tf.Rank.R2>(op, 'q', q, ['H', 'K']);
  const layout = ['B', 'T', 'H', 'K'];
  const $k = checkTensor<tf.Rank.R4>(op, 'k', k, layout);
  const [H, K] = $q.shape;
  const [B, T] = $k.shape;
  checkShape(op, 'k', $k, [B, T, H, K], layout);
  const $v = checkTensor<tf.Rank.R4>(op, 'v', v, layout);
  checkShape(op, 'v', $v, $k.shape, layout);
  const scale = options.scale ?? 1 / Math.sqrt(K);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw argumentError(op, `option 'scale' must be a finite number > 0; received ${describe(scale)}.`);
  }
  const init = options.initialState;
  if (init === undefined) return { q: $q, k: $k, v: $v, scale };
  if (init === null || typeof init !== 'object' || init instanceof tf.Tensor || Array.isArray(init)) {
    throw argumentError(op, `option 'initialState' must be an object { m: [B, H], u: [B, H], w: [B, H, K] } (a previous call's state); ` +
      `received ${describe(init)}.`);
  }
  const unknown = Object.keys(init).find((name) => !STATE_PARTS.includes(name));
  const missing = STATE_PARTS.find((name) => !(name in init));
  if (unknown !== undefined || missing !== undefined) {
    throw argumentError(op, `option 'initialState' must have exactly the parts 'm', 'u' and 'w'; ` +
      `${unknown !== undefined ? `received an unknown part '${unknown}'` : `part '${missing}' is missing`}.`);
  }
  const part = <R extends tf.Rank>(name: keyof AarenState, partLayout: string[], shape: number[]) => {
    const t = checkTensor<R>(op, `initialState.${name}`, init[name], partLayout);
    checkShape(op, `initialState.${name}`, t, shape, partLayout);
    return t;
  };
  return {
    q: $q, k: $k, v: $v, scale,
    initialState: {
      m: part<tf.Rank.R2>('m', ['B', 'H'], [B, H]) as tf.Tensor2D,
      u: part<tf.Rank.R2>('u', ['B', 'H'], [B, H]) as tf.Tensor2D,
      w: part<tf.Rank.R3>('w', ['B', 'H', 'K'], [B, H, K]) as tf.Tensor3D,
    },
  };
}

/**
 * How {@link run} runs: over rows padded on the right (`real`), as one decode token of rows at
 * `step.positions` (a decode state's), and whether the caller reads the final state (`withState`,
 * default true): without it the kernels skip the launches that form it.
 */
interface RunAs {
  real?: tf.Tensor2D;
  step?: { positions: tf.Tensor1D };
  withState?: boolean;
}

/**
 * Validates, then runs the kernels or the reference; an empty batch or sequence returns the
 * initial state. The state is undefined only where `as.withState` is false.
 */
function run(op: string, q: tf.Tensor2D, k: tf.Tensor4D, v: tf.Tensor4D, options: AarenOptions, as: RunAs = {}):
  { output: tf.Tensor4D; state: AarenState | undefined; positions?: tf.Tensor1D } {
  const { real, step, withState = true } = as;
  const args = checkAaren(op, q, k, v, options);
  if (real !== undefined) {
    const [B, T] = args.k.shape;
    checkShape(op, 'real', checkTensor<tf.Rank.R2>(op, 'real', real, ['B', 'T']), [B, T], ['B', 'T']);
    args.real = real;
  }
  const kernel = useKernel(op, options.implementation);
  const [B, T, H, K] = args.k.shape;
  if (B * T === 0) {
    // no token: the output is empty and the state is the initial one (or the empty state),
    // with gradients of zeros for q, k and v and the identity for the initial state
    const init = args.initialState;
    const inputs = [q, k, v, ...(init ? [init.m, init.u, init.w] : [])];
    return tf.tidy(() => {
      const start = init ?? emptyState(B, H, K);
      const keep = <R extends tf.Rank>(x: tf.Tensor<R>) => tf.add(x, differentiableZeros(x.shape, inputs)) as tf.Tensor<R>;
      return {
        output: differentiableZeros<tf.Rank.R4>([B, T, H, K], inputs),
        state: { m: keep(start.m), u: keep(start.u), w: keep(start.w) },
      };
    });
  }
  if (kernel) return aarenOnScanKernels(args, T === 1 ? step : undefined, withState);
  // a step always has a state (the layer's), and one token needs no chunks
  if (step && T === 1 && args.initialState && options.implementation !== 'reference') {
    return aarenToken({ ...args, initialState: args.initialState });
  }
  return aarenReference(args);
}

/** {@link run}'s result where the state was asked for. */
function withItsState(result: { output: tf.Tensor4D; state: AarenState | undefined }): AarenResult {
  return { output: result.output, state: result.state! };
}

/**
 * Aaren (Feng et al. 2024, "Attention as an RNN"): causal softmax attention whose query is one
 * learned token per head, so every prefix's output is a scan with a constant-size state.
 * For each batch row b and head h:
 * ```
 * s_t = scale·q_h·k_t        m_t = max(m_init, s_0, …, s_t)
 * o_t = (e^{m_init − m_t}·w_init + Σ_{j≤t} e^{s_j − m_t}·v_j) / (e^{m_init − m_t}·u_init + Σ_{j≤t} e^{s_j − m_t})
 * ```
 * which, without an initial state, is `Σ_{j≤t} softmax_j(s)·v_j`. The state after token t is
 * (m_t, u_t, w_t), the denominator and numerator above. On webgpu it runs WGSL scan kernels
 * (GatedLinearAttention's, in the frame of the running max: docs/aaren.md; without the launches
 * that form the final state, which {@link aarenWithState} returns), elsewhere the tfjs-ops
 * reference (chunks of 64 tokens carrying the state); never a T×T matrix. Differentiable in q, k
 * and v (the backward is a reverse scan); see
 * {@link aarenWithState} for the state.
 *
 * A NaN or ±∞ in token t's k or v of head h makes that head's outputs at t and after NaN, and
 * leaves the earlier outputs (and, with a loss on them, every gradient) finite.
 *
 * @param q `[H, K]` float32, the learned query of each head.
 * @param k `[B, T, H, K]` float32; B or T may be 0 (the output is then empty).
 * @param v `[B, T, H, K]` float32.
 * @returns `[B, T, H, K]`.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([4, 32]) as tf.Tensor2D;          // a query of 32 channels for each of 4 heads
 * const k = tf.randomNormal([2, 128, 4, 32]) as tf.Tensor4D;
 * const v = tf.randomNormal([2, 128, 4, 32]) as tf.Tensor4D;
 * const o = ops.aaren(q, k, v);                                // [2, 128, 4, 32]
 * ```
 */
export function aaren(q: tf.Tensor2D, k: tf.Tensor4D, v: tf.Tensor4D, options: AarenOptions = {}): tf.Tensor4D {
  const { output, state } = run('aaren', q, k, v, options, { withState: false });
  if (state) tf.dispose([state.m, state.u, state.w]);
  return output;
}

/**
 * {@link aaren}, also returning the state after the last token: pass it as the next call's
 * `initialState` to continue the sequence exactly (a sequence cut in two pieces gives the one
 * run's outputs and state). Differentiable in both outputs with respect to q, k, v and every part
 * of `initialState`.
 *
 * The state is `{ m: [B, H], u: [B, H], w: [B, H, K] }`: the running max of the scores, the mass
 * Σ e^{s_j − m} and the weighted values Σ e^{s_j − m}·v_j, so o = w/u. It is redundant in m:
 * (m + δ, u·e^{−δ}, w·e^{−δ}) gives every later output the same value. With no token (B or T = 0)
 * and no `initialState`, the state is the empty state (m = −∞, u = 0, w = 0), the identity of
 * the merge: continuing from it equals starting afresh, and never gives NaN. The gradient in m
 * is that of a max, defined where the max is not tied: dL/dm − u·dL/du − w·dL/dw goes to
 * whichever of (m_init, s_0, …, s_{T−1}) is the largest, the first one on a tie; it is zero for
 * any loss that reads the state only through later outputs.
 *
 * @returns `{ output: [B, T, H, K], state: { m: [B, H], u: [B, H], w: [B, H, K] } }`.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([4, 32]) as tf.Tensor2D;
 * const k = tf.randomNormal([2, 128, 4, 32]) as tf.Tensor4D;
 * const v = tf.randomNormal([2, 128, 4, 32]) as tf.Tensor4D;
 * const [head, tail] = [[0, 64], [64, 64]].map(([t, n]) => (x: tf.Tensor4D) => x.slice([0, t, 0, 0], [-1, n, -1, -1]));
 * const first = ops.aarenWithState(q, head(k), head(v));
 * const next = ops.aarenWithState(q, tail(k), tail(v), { initialState: first.state });
 * // next.output is the last 64 outputs of the whole sequence's, up to rounding
 * tf.abs(tf.sub(next.output, tail(ops.aaren(q, k, v)))).max().less(1e-4);   // true
 * ```
 */
export function aarenWithState(q: tf.Tensor2D, k: tf.Tensor4D, v: tf.Tensor4D, options: AarenOptions = {}): AarenResult {
  return withItsState(run('aarenWithState', q, k, v, options));
}

/**
 * {@link aarenWithState} over rows padded on the right, for the layer's ragged prefill (not in
 * `ops`): `real` `[B, T]` float32 is 1 at a row's real tokens and 0 at its padding. A padded token
 * is the merge's identity, so the state returned is each row's after its real tokens, and the
 * output at a padded token is the state's so far (0 before any real token).
 */
export function aarenWithStateOver(q: tf.Tensor2D, k: tf.Tensor4D, v: tf.Tensor4D, real: tf.Tensor2D, options: AarenOptions = {}): AarenResult {
  return withItsState(run('aarenWithState', q, k, v, options, { real }));
}

/**
 * One decode token of {@link aarenWithState} (k and v `[B, 1, H, K]`) from `initialState`, for
 * the layer's `step` (not in `ops`), with the rows' `positions` (int32 `[B]`, a decode state's)
 * each plus one: on webgpu the step kernel's two launches, which have no gradient and form the
 * positions as they go; elsewhere the token's merge in a few differentiable tfjs ops
 * ({@link aarenToken}) and tfjs's add; with `implementation: 'reference'`, the op itself at T = 1.
 */
export function aarenStep(q: tf.Tensor2D, k: tf.Tensor4D, v: tf.Tensor4D, positions: tf.Tensor1D, options: AarenOptions = {}):
  AarenResult & { positions: tf.Tensor1D } {
  const result = run('aarenWithState', q, k, v, options, { step: { positions } });
  return { ...withItsState(result), positions: result.positions ?? advancedPositions(positions) };
}
