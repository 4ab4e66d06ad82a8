import * as tf from '@tensorflow/tfjs';
import { MAX_HEAD_DIM, checkAttention, checkScale } from '../../attention/validate.js';
import {
  VISIBILITY_OPTIONS, resolveVisibility, runAttentionKernel, runAttentionKernelWithStatistic, type VisibilityOptions,
} from '../../attention/visibility.js';
import { DROPOUT_OPTIONS, dropoutAttrs, resolveDropout, type DropoutOptions } from '../../attention/dropout.js';
import { SPLIT_OPTIONS, resolveSplit, type SplitOptions } from '../../attention/split.js';
import {
  argumentError, checkOptionNames, checkShape, checkTensor, describe, differentiableZeros, optionNames, useKernel,
  type Implementation,
} from '../../validate.js';
import { expressiveAttentionRecurrentStepReference, expressiveAttentionReference } from './reference.js';
import { EXPRESSIVE_ATTENTION, EXPRESSIVE_ATTENTION_RECURRENT_STEP } from './kernel.js';

/**
 * Options of `ops.expressiveAttention`: which keys each query sees ({@link VisibilityOptions}:
 * `causal`, `window`, `kvLengths`, `queryOffsets`, `segmentIds`, `mask`; by default causal,
 * bottom-right aligned when Tq ≠ Tk), attention dropout ({@link DropoutOptions}: `dropout`,
 * `seed`), the kernel's decode path ({@link SplitOptions}: `split`), and the attention's own options.
 */
export interface ExpressiveAttentionOptions extends VisibilityOptions, DropoutOptions, SplitOptions {
  /** Multiplies q·k before it is squared. Default `1/√K`. */
  scale?: number;
  /**
   * Added to the denominator Σ s², a finite number ≥ 0. Default `1e-6`. With `0`, a row whose
   * scores are all 0 outputs 0.
   */
  epsilon?: number;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const OPTIONS = [
  ...VISIBILITY_OPTIONS,
  ...DROPOUT_OPTIONS,
  ...optionNames<Omit<ExpressiveAttentionOptions, keyof VisibilityOptions | keyof DropoutOptions | keyof SplitOptions | 'implementation'>>({ scale: true, epsilon: true }),
  ...SPLIT_OPTIONS,
  'implementation',
];

/** The default ε of ExpressiveAttention's denominator. */
const DEFAULT_EPSILON = 1e-6;

/** `epsilon ?? 1e-6`, checked to be a finite number ≥ 0, or an error naming it. */
export function checkEpsilon(op: string, epsilon: number | undefined): number {
  const e = epsilon ?? DEFAULT_EPSILON;
  if (typeof e !== 'number' || !Number.isFinite(e) || e < 0) {
    throw argumentError(op, `option 'epsilon' must be a finite number ≥ 0; received ${describe(e)}.`);
  }
  return e;
}

/**
 * Expressive attention (Gros 2024): the weights are the squared scores, normalised directly,
 * `o_i = Σ_j s_ij²·v_j / (ε + Σ_j s_ij²)` with `s_ij = scale·q_i·k_j` over the visible keys, so a
 * key weighs much when it is parallel or antiparallel to the query and nothing when orthogonal.
 * The WGSL kernel computes it in tiles, so the `[Tq, Tk]` score matrix never exists in memory.
 * Query head h reads key/value head ⌊h·Hkv/H⌋ (grouped-query attention; Hkv = 1 is
 * multi-query). Key j is visible to query i when every visibility option given holds (see
 * {@link VisibilityOptions}); a query with no visible key outputs 0, with gradients 0, and an
 * invisible key or value never reaches an output, whatever its value; a query row that sees a
 * NaN or ±∞ (in its query or a visible key or value) outputs NaN, on every implementation. With
 * `dropout` p > 0, each weight s²/z is kept with probability 1 − p (a pure function of `seed`,
 * b, h, i, j) and scaled by 1/(1 − p), z still summing every visible s².
 *
 * Causal mask for Tq = 2, Tk = 4 (bottom-right aligned; x visible):
 * ```
 *          j=0 1 2 3
 *   i = 0    x x x .
 *   i = 1    x x x x
 * ```
 *
 * @param q `[B, Tq, H, K]` float32. B, Tq and Tk may be 0: with Tk = 0 (an empty KV cache) every row
 *   sees no key and outputs 0, with gradients 0.
 * @param k `[B, Tk, Hkv, K]` float32, H a multiple of Hkv, K ≤ 256.
 * @param v `[B, Tk, Hkv, K]` float32.
 * @returns `[B, Tq, H, K]`.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([1, 128, 4, 64]) as tf.Tensor4D;
 * const kv = tf.randomNormal([1, 128, 2, 64]) as tf.Tensor4D;
 * const o = ops.expressiveAttention(q, kv, kv, { causal: true, epsilon: 1e-6 }); // [1, 128, 4, 64]
 * // two packed sequences of 50 and 78 tokens in one row, each attending only within itself
 * const ids = tf.concat([tf.zeros([1, 50], 'int32'), tf.ones([1, 78], 'int32')], 1) as tf.Tensor2D;
 * const packed = ops.expressiveAttention(q, kv, kv, { segmentIds: ids });
 * // training with attention dropout
 * const dropped = ops.expressiveAttention(q, kv, kv, { dropout: 0.1, seed: 7 });
 * ```
 */
export function expressiveAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: ExpressiveAttentionOptions = {},
): tf.Tensor4D {
  const { s, vis, scale, epsilon, split, dropout, kernel } = resolveCall(q, k, v, options);
  try {
    // an empty KV cache: no query sees a key, so every row outputs 0
    if (s.B * s.Tq === 0 || s.Tk === 0) return differentiableZeros([s.B, s.Tq, s.H, s.K], [q, k, v]);
    if (kernel) {
      return runAttentionKernel(EXPRESSIVE_ATTENTION, q, k, v, vis, { scale, epsilon, split, ...dropoutAttrs(dropout) });
    }
    return expressiveAttentionReference(q, k, v, s, vis, scale, epsilon, dropout);
  } finally {
    // the tape, like the kernel, keeps its own copies of what it saved
    tf.dispose(vis.owned);
  }
}

/** {@link expressiveAttention}'s arguments checked and its options resolved; the caller disposes `vis.owned`. */
function resolveCall(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: ExpressiveAttentionOptions) {
  const op = 'expressiveAttention';
  checkOptionNames(op, options, OPTIONS);
  const s = checkAttention(op, q, k, v);
  const vis = resolveVisibility(op, options, s, { window: true, queryOffsets: true, nonCausal: true });
  try {
    return {
      s, vis, scale: checkScale(op, options.scale, s.K), epsilon: checkEpsilon(op, options.epsilon), split: resolveSplit(op, options),
      dropout: resolveDropout(op, options), kernel: useKernel(op, options.implementation),
    };
  } catch (error) {
    tf.dispose(vis.owned);
    throw error;
  }
}

/**
 * {@link expressiveAttention}'s output, with each row's denominator max(ε + Σ_j s_ij², 2⁻⁶⁰)
 * `[B, H, Tq]` beside it, as the kernel saves it for its backward: for the recurrent prefill that
 * continues a state, which adds the state's sums to both. On the kernels only (webgpu), no
 * dropout and no gradient; B, Tq and Tk at least 1.
 *
 * @example
 * ```ts
 * const x = tf.randomNormal([1, 6, 2, 8]) as tf.Tensor4D;
 * const [o, denominators] = expressiveAttentionWithDenominators(x, x, x, { causal: true }); // [1, 6, 2, 8], [1, 2, 6]
 * ```
 */
export function expressiveAttentionWithDenominators(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: Omit<ExpressiveAttentionOptions, keyof DropoutOptions> = {},
): [tf.Tensor4D, tf.Tensor3D] {
  const { vis, scale, epsilon, split } = resolveCall(q, k, v, options);
  try {
    return runAttentionKernelWithStatistic(EXPRESSIVE_ATTENTION, q, k, v, vis, { scale, epsilon, split });
  } finally {
    tf.dispose(vis.owned);
  }
}

/** Options of `ops.expressiveAttentionRecurrentStep`. */
export interface ExpressiveAttentionRecurrentStepOptions {
  /** Multiplies q·k before it is squared. Default `1/√K`. */
  scale?: number;
  /** Added to the denominator Σ s², a finite number ≥ 0. Default `1e-6`. */
  epsilon?: number;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const STEP_OPTIONS = optionNames<ExpressiveAttentionRecurrentStepOptions>({ scale: true, epsilon: true, implementation: true });

/**
 * One step of ExpressiveAttention's exact recurrent decode (the layer's `decode: 'recurrent'`):
 * adds the token's key and value to the fixed-size state, `M' = M + φ(k)·vᵀ` and
 * `z' = z + φ(k)`, and reads its query out of the new state,
 * `o = φ(scale·q)·M' / (ε + max(φ(scale·q)·z', 0))`, where φ packs x⊗x into its P = K(K+1)/2
 * distinct entries (x_a², then √2·x_a·x_b for a < b). Query head h reads key/value head
 * ⌊h·Hkv/H⌋. On webgpu it is two WGSL dispatches (state update with partial readout, then
 * the readout); it has no gradient there: train with the parallel op.
 *
 * @param q `[B, H, K]` float32, the token's queries (unscaled).
 * @param k `[B, Hkv, K]` float32, its keys; H a multiple of Hkv, K ≤ 256.
 * @param v `[B, Hkv, K]` float32, its values.
 * @param M `[B, Hkv, P, K]` float32, Σ φ(k_s)·v_sᵀ over the tokens before it.
 * @param z `[B, Hkv, P]` float32, Σ φ(k_s) over the tokens before it.
 * @returns `[o, nextM, nextZ]`: o `[B, H, K]` and the state after the token.
 *
 * @example
 * ```ts
 * const [B, H, Hkv, K] = [1, 4, 2, 8];
 * const P = (K * (K + 1)) / 2;
 * let M = tf.zeros([B, Hkv, P, K]) as tf.Tensor4D;
 * let z = tf.zeros([B, Hkv, P]) as tf.Tensor3D;
 * const kv = tf.randomNormal([B, Hkv, K]) as tf.Tensor3D;
 * const [o, M1, z1] = expressiveAttentionRecurrentStep(tf.randomNormal([B, H, K]) as tf.Tensor3D, kv, kv, M, z);
 * ```
 */
export function expressiveAttentionRecurrentStep(
  q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, M: tf.Tensor4D, z: tf.Tensor3D,
  options: ExpressiveAttentionRecurrentStepOptions = {},
): [tf.Tensor3D, tf.Tensor4D, tf.Tensor3D] {
  const op = 'expressiveAttentionRecurrentStep';
  checkOptionNames(op, options, STEP_OPTIONS);
  const $q = checkTensor<tf.Rank.R3>(op, 'q', q, ['B', 'H', 'K']);
  const $k = checkTensor<tf.Rank.R3>(op, 'k', k, ['B', 'Hkv', 'K']);
  const [B, H, K] = $q.shape;
  const Hkv = $k.shape[1];
  checkShape(op, 'k', $k, [B, Hkv, K], ['B', 'Hkv', 'K']);
  checkShape(op, 'v', checkTensor(op, 'v', v, ['B', 'Hkv', 'K']), [B, Hkv, K], ['B', 'Hkv', 'K']);
  if (H % Hkv !== 0) {
    throw argumentError(op, `the query heads H = ${H} must be a multiple of the key/value heads Hkv = ${Hkv} ` +
      `(q is [B, H, K], k and v are [B, Hkv, K]).`);
  }
  if (K > MAX_HEAD_DIM) {
    throw argumentError(op, `the head dimension K of 'q', 'k' and 'v' must be at most ${MAX_HEAD_DIM}; received ${K}.`);
  }
  const P = (K * (K + 1)) / 2;
  checkShape(op, 'M', checkTensor(op, 'M', M, ['B', 'Hkv', 'P', 'K']), [B, Hkv, P, K], ['B', 'Hkv', 'P', 'K']);
  checkShape(op, 'z', checkTensor(op, 'z', z, ['B', 'Hkv', 'P']), [B, Hkv, P], ['B', 'Hkv', 'P']);
  const scale = checkScale(op, options.scale, K);
  const epsilon = checkEpsilon(op, options.epsilon);
  const kernel = useKernel(op, options.implementation);
  if (B === 0) {
    const inputs = [$q, $k, v, M, z];
    return [differentiableZeros($q.shape, inputs), differentiableZeros(M.shape, inputs), differentiableZeros(z.shape, inputs)];
  }
  if (kernel) {
    return tf.engine().runKernel(EXPRESSIVE_ATTENTION_RECURRENT_STEP, { q: $q, k: $k, v, M, z }, { scale, epsilon }) as
      [tf.Tensor3D, tf.Tensor4D, tf.Tensor3D];
  }
  return expressiveAttentionRecurrentStepReference($q, $k, v, M, z, scale, epsilon);
}
