import * as tf from '@tensorflow/tfjs';
import {
  argumentError, checkOptionNames, checkShape, checkTensor, describe, differentiableZeros, onHostBackend, optionNames,
  useKernel, type Implementation,
} from '../../validate.js';
import { nanWhere } from '../../tensors.js';
import { gatedLinearAttentionReference, type GlaArgs } from './reference.js';
import { gatedLinearAttentionParallel } from './parallel.js';
import { gatedLinearAttentionToken } from './token.js';
import { GATED_LINEAR_ATTENTION, GATED_LINEAR_ATTENTION_LOG_GATE, GATED_LINEAR_ATTENTION_STEP, type GlaAttrs } from './kernel.js';

/** Options of `ops.gatedLinearAttention` and `ops.gatedLinearAttentionWithState`. */
export interface GatedLinearAttentionOptions {
  /** Multiplies q: a finite number > 0. Default `1 / sqrt(K)`. */
  scale?: number;
  /** `[B, H, K, V]`: the state before the first token, for continuing a sequence. Default zeros. */
  initialState?: tf.Tensor4D;
  /**
   * Which implementation runs. Default `'auto'`: the WGSL scan kernels on webgpu, every chunk at
   * once in tfjs ops on webgl (docs/gated-linear-attention.md), the chunked tfjs-ops reference
   * elsewhere; `'reference'` always runs that reference.
   */
  implementation?: Implementation;
}

const OPTIONS = optionNames<GatedLinearAttentionOptions>({ scale: true, initialState: true, implementation: true });

/** An output and the state after the last token. */
export type GatedLinearAttentionResult = {
  /** `[B, T, H, V]` */
  output: tf.Tensor4D;
  /** `[B, H, K, V]`: the state after the last token. */
  state: tf.Tensor4D;
};

/**
 * Which implementation runs: the WGSL kernels (webgpu); under 'auto' elsewhere, every chunk at
 * once in tfjs ops on webgl (which launches a shader per op) and the loop over chunks on the
 * others ('chunks'), with a decode token in a few tfjs ops on both; with 'reference', the loop.
 */
type Path = 'kernels' | 'parallel' | 'chunks' | 'reference';

/** Checks every argument and option; returns the reference's inputs. */
function checkArgs(op: string, q: unknown, k: unknown, v: unknown, g: unknown, options: GatedLinearAttentionOptions): GlaArgs & { path: Path } {
  checkOptionNames(op, options, OPTIONS);
  const perKey = ['B', 'T', 'H', 'K'];
  const $q = checkTensor<tf.Rank.R4>(op, 'q', q, perKey);
  const [B, T, H, K] = $q.shape;
  const $k = checkTensor<tf.Rank.R4>(op, 'k', k, perKey);
  checkShape(op, 'k', $k, $q.shape, perKey);
  const $g = checkTensor<tf.Rank.R4>(op, 'g', g, perKey);
  checkShape(op, 'g', $g, $q.shape, perKey);
  const $v = checkTensor<tf.Rank.R4>(op, 'v', v, ['B', 'T', 'H', 'V']);
  const V = $v.shape[3];
  checkShape(op, 'v', $v, [B, T, H, V], ['B', 'T', 'H', 'V']);
  const o = options ?? {};
  if (o.initialState !== undefined) {
    const s = checkTensor<tf.Rank.R4>(op, 'initialState', o.initialState, ['B', 'H', 'K', 'V']);
    checkShape(op, 'initialState', s, [B, H, K, V], ['B', 'H', 'K', 'V']);
  }
  const scale = o.scale ?? 1 / Math.sqrt(K);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw argumentError(op, `option 'scale' must be a finite number > 0; received ${describe(scale)}.`);
  }
  const path: Path = useKernel(op, o.implementation) ? 'kernels'
    : o.implementation === 'reference' ? 'reference' : tf.getBackend() === 'webgl' ? 'parallel' : 'chunks';
  if ($g.size > 0 && onHostBackend()) {
    // one reduction and one scalar read: a positive log gate would make the state grow without bound
    const max = tf.tidy(() => tf.max($g).dataSync()[0]!);
    if (max > 0) {
      throw argumentError(op, `argument 'g' is the log forget gate and must be ≤ 0 everywhere ` +
        `(e.g. tf.logSigmoid of a projection); received a maximum of ${max}.`);
    }
  }
  return { q: $q, k: $k, v: $v, g: $g, scale, initialState: o.initialState, path };
}

/**
 * Runs checked arguments on their path; with `step`, one token through the gradient-less step
 * kernel on webgpu, and through {@link gatedLinearAttentionToken} elsewhere under 'auto'.
 */
function run(args: GlaArgs & { path: Path }, step = false): GatedLinearAttentionResult {
  const [B, T, H, K] = args.q.shape;
  const V = args.v.shape[3];
  if (B === 0 || T === 0) {
    // no token is taken, so the state is the initial one; both stay differentiable in every input
    const inputs = [args.q, args.k, args.v, args.g, args.initialState].filter((t) => t !== undefined);
    const state = tf.tidy(() => {
      const zeros = differentiableZeros<tf.Rank.R4>([B, H, K, V], inputs);
      return args.initialState ? tf.add(args.initialState, zeros) as tf.Tensor4D : zeros;
    });
    return { output: differentiableZeros([B, T, H, V], inputs), state };
  }
  return tf.tidy(() => {
    if (args.path === 'kernels') {
      if (step && T === 1) return onKernels(args, GATED_LINEAR_ATTENTION_STEP, { state: args.initialState! });
      // an absent initialState is a stand-in off the gradient's path, never read
      return onKernels(args, GATED_LINEAR_ATTENTION, { initialState: args.initialState ?? tf.zeros([1]) });
    }
    // a GPU backend cannot read tf.max(g) back without stalling (webgpu in Node cannot at all): a
    // positive gate is taken as NaN instead, which the tfjs-ops forms, as the kernels, carry to
    // every output that sees it
    const gated = onHostBackend() ? args : { ...args, g: positiveAsNaN(args.g) };
    if (step && T === 1 && args.path !== 'reference') return gatedLinearAttentionToken(gated);
    return args.path === 'parallel' ? gatedLinearAttentionParallel(gated) : gatedLinearAttentionReference(gated);
  });
}

/**
 * The WGSL scan kernels (the forward, or the gradient-less step), which read the inputs' finite
 * parts and make NaN the outputs that see a non-finite input (or a positive gate), as the
 * reference makes them, in one more launch where the reference's tfjs ops take dozens (each a
 * launch, whose CPU cost dominates a layer call on a GPU).
 */
function onKernels(args: GlaArgs, kernelName: string, start: tf.NamedTensorMap): GatedLinearAttentionResult {
  const { q, k, v, g } = args;
  const attrs: GlaAttrs = { scale: args.scale, hasInitialState: args.initialState !== undefined };
  const [output, state] = tf.engine().runKernel(kernelName, { q, k, v, g, ...start }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { output: output as tf.Tensor4D, state: state as tf.Tensor4D };
}

/** g with its positive entries NaN; its gradient passes to the others (tfjs has none for `greater`). */
const positiveAsNaN = tf.customGrad(((g: tf.Tensor, save: tf.GradSaveFunc) => {
  save([g]);
  return {
    value: tf.add(g, nanWhere(tf.greater(g, 0))),
    gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => tf.where(tf.greater(saved!, 0), tf.zerosLike(dy), dy),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (g: tf.Tensor4D) => tf.Tensor4D;

/**
 * Gated linear attention (GLA; Yang et al. 2024, arXiv 2312.06635): linear attention with a
 * data-dependent forget gate per key channel. For each batch row and head, with a state
 * S ∈ R^{K×V}:
 * ```
 * S_t = diag(exp(g_t)) · S_{t−1} + k_tᵀ v_t        S_{−1} = initialState or 0
 * o_t = (scale · q_t) · S_t                         scale = 1/sqrt(K)
 * ```
 * Equal to flash-linear-attention's `naive_recurrent_gla` with `[B, T, H, K]` inputs. Chunks of
 * c = 32 tokens carry the state between them: O(T·(K·V + c·(K + V))) work per batch row and head,
 * memory linear in T (no `[T, T]` matrix), forward and backward. Differentiable in q, k, v, g and
 * initialState. WebGPU runs WGSL scan kernels (docs/scan-kernels.md), webgl the same chunks all at
 * once in tfjs ops (a few hundred launches where the loop over chunks takes thousands), every other
 * backend this chunked tfjs-ops reference.
 *
 * On cpu and wasm a positive g throws, checked with one reduction and a scalar read of
 * `tf.max(g)` per call. A GPU backend (webgl, webgpu) cannot read it back without stalling, and
 * webgpu in Node cannot read synchronously at all, so there a positive g is taken as NaN instead.
 * A NaN or ±∞ in a token's q makes that token's output NaN; a NaN or ±∞ in its k or v, or a NaN or
 * −∞ (or, on a GPU backend, a positive value) in its g, the outputs from that token on and the
 * final state of that batch row and head (+∞ in g is > 0).
 *
 * @param q `[B, T, H, K]` float32, the queries; B or T may be 0 (the output is then empty, and
 *   the state is `initialState`, or zeros).
 * @param k `[B, T, H, K]` float32, the keys.
 * @param v `[B, T, H, V]` float32, the values.
 * @param g `[B, T, H, K]` float32, the log forget gates, ≤ 0 (a positive entry throws on cpu and wasm).
 * @returns `[B, T, H, V]`.
 *
 * @example
 * ```ts
 * const [b, t, h, k, v] = [2, 128, 4, 16, 32];
 * const g = tf.logSigmoid(tf.randomNormal([b, t, h, k])) as tf.Tensor4D;
 * const o = ops.gatedLinearAttention(tf.randomNormal([b, t, h, k]), tf.randomNormal([b, t, h, k]),
 *   tf.randomNormal([b, t, h, v]), g);   // [2, 128, 4, 32]
 * ```
 */
export function gatedLinearAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, g: tf.Tensor4D, options: GatedLinearAttentionOptions = {},
): tf.Tensor4D {
  const { output, state } = run(checkArgs('gatedLinearAttention', q, k, v, g, options));
  state.dispose();
  return output;
}

/**
 * {@link gatedLinearAttention}, also returning the state after the last token, `[B, H, K, V]`:
 * pass it as the next call's `initialState` to continue the sequence. Differentiable in both.
 *
 * @returns `{ output: [B, T, H, V], state: [B, H, K, V] }`.
 *
 * @example
 * ```ts
 * // q, k, v and the log gate g of t tokens, [1, t, H = 2, K = 8] (v [1, t, 2, V = 16])
 * const tokens = (t: number) => [tf.randomNormal([1, t, 2, 8]), tf.randomNormal([1, t, 2, 8]),
 *   tf.randomNormal([1, t, 2, 16]), tf.logSigmoid(tf.randomNormal([1, t, 2, 8]))] as tf.Tensor4D[];
 * const [q1, k1, v1, g1] = tokens(32);
 * const [q2, k2, v2, g2] = tokens(16);                       // the 16 tokens after them
 * const first = ops.gatedLinearAttentionWithState(q1, k1, v1, g1);
 * first.state.shape;                                         // [1, 2, 8, 16]
 * const next = ops.gatedLinearAttentionWithState(q2, k2, v2, g2, { initialState: first.state });
 * ```
 */
export function gatedLinearAttentionWithState(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, g: tf.Tensor4D, options: GatedLinearAttentionOptions = {},
): GatedLinearAttentionResult {
  return run(checkArgs('gatedLinearAttentionWithState', q, k, v, g, options));
}

/**
 * One decode token of {@link gatedLinearAttentionWithState} from the state before it, for the
 * layer's `step`: on webgpu one WGSL step kernel, which has no gradient; elsewhere the token's
 * update in a few differentiable tfjs ops (`token.ts`: about half the op's launches at T = 1); with `implementation: 'reference'`, the op itself at T = 1.
 *
 * @param q `[B, 1, H, K]`; k and g likewise, v `[B, 1, H, V]`.
 * @param state `[B, H, K, V]`, the state before this token.
 * @returns `{ output: [B, 1, H, V], state: [B, H, K, V] }`.
 */
export function gatedLinearAttentionStep(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, g: tf.Tensor4D, state: tf.Tensor4D, options: GatedLinearAttentionOptions = {},
): GatedLinearAttentionResult {
  return run(checkArgs('gatedLinearAttentionStep', q, k, v, g, { ...options, initialState: state }), true);
}

/**
 * The log forget gate of the forget gate's logits z, logsigmoid(z)/normalizer, as
 * −softplus(−z)/normalizer: on webgpu one launch forward and one backward
 * (`kernels/gated-linear-attention/log-gate.wgsl`); elsewhere tfjs ops (tfjs 4.22's
 * tf.logSigmoid has a gradient that reads a disposed tensor), the sign and the division in one
 * multiply, exact for a power of 2. Both give the same numbers on webgpu, to the bit.
 */
export function logForgetGate(z: tf.Tensor4D, normalizer: number, implementation?: Implementation): tf.Tensor4D {
  if (z.size > 0 && useKernel('gatedLinearAttention', implementation)) {
    return tf.engine().runKernel(GATED_LINEAR_ATTENTION_LOG_GATE, { z }, { normalizer }) as tf.Tensor4D;
  }
  return tf.mul(tf.softplus(tf.neg(z)), -1 / normalizer);
}

/**
 * {@link gatedLinearAttentionStep} on the step kernel (webgpu only, no gradient, inputs as the
 * layer forms them, unchecked) with the log gate given by the forget gate's low-rank features
 * `low` `[B, 1, r]` and `up` `[r + 1, H·K]`, its up projection with the bias as a last row:
 * g = {@link logForgetGate}(low·up + bias, normalizer), formed in the launch that steps, where
 * the up projection and the gate took one each.
 *
 * @example
 * ```ts
 * const [B, H, K, V, r] = [2, 4, 8, 8, 16];
 * const q = tf.randomNormal([B, 1, H, K]) as tf.Tensor4D;
 * const v = tf.randomNormal([B, 1, H, V]) as tf.Tensor4D;
 * const low = tf.randomNormal([B, 1, r]) as tf.Tensor3D;          // the forget gate's features
 * const up = tf.randomNormal([r + 1, H * K]) as tf.Tensor2D;       // and its up projection, bias last
 * const state = tf.zeros([B, H, K, V]) as tf.Tensor4D;
 * const { output, state: next } = gatedLinearAttentionStepFromLowRank(q, q, v, low, up, 16, state);  // webgpu only
 * output.shape;                                                    // [2, 1, 4, 8]
 * ```
 */
export function gatedLinearAttentionStepFromLowRank(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, low: tf.Tensor3D, up: tf.Tensor2D, normalizer: number, state: tf.Tensor4D,
): GatedLinearAttentionResult {
  const attrs: GlaAttrs = { scale: 1 / Math.sqrt(q.shape[3]), hasInitialState: true, normalizer };
  const [output, next] = tf.engine().runKernel(GATED_LINEAR_ATTENTION_STEP, { q, k, v, g: low, up, state },
    attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { output: output as tf.Tensor4D, state: next as tf.Tensor4D };
}
