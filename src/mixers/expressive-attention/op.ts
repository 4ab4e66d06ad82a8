import * as tf from '@tensorflow/tfjs';
import { checkAttention, checkScale } from '../../attention/validate.js';
import { argumentError, checkBoolean, checkOptionNames, useKernel, type Implementation } from '../../validate.js';
import { expressiveAttentionReference } from './reference.js';
import { EXPRESSIVE_ATTENTION } from './kernel.js';

/** Options of `ops.expressiveAttention`. */
export interface ExpressiveAttentionOptions {
  /**
   * Causal mask, bottom-right aligned when Tq ≠ Tk: key j is visible to query i iff
   * j ≤ i + Tk − Tq. Default `true`, as every mixer in this library is causal.
   */
  causal?: boolean;
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

const OPTIONS = ['causal', 'scale', 'epsilon', 'implementation'] as const;

/** The default ε of ExpressiveAttention's denominator. */
const DEFAULT_EPSILON = 1e-6;

/** `epsilon ?? 1e-6`, checked to be a finite number ≥ 0, or an error naming it. */
export function checkEpsilon(op: string, epsilon: number | undefined): number {
  const e = epsilon ?? DEFAULT_EPSILON;
  if (typeof e !== 'number' || !Number.isFinite(e) || e < 0) {
    throw argumentError(op, `option 'epsilon' must be a finite number ≥ 0; received ${String(e)}.`);
  }
  return e;
}

/**
 * Expressive attention (Gros 2024): the weights are the squared scores, normalised directly,
 * `o_i = Σ_j s_ij²·v_j / (ε + Σ_j s_ij²)` with `s_ij = scale·q_i·k_j` over the visible keys, so a
 * key weighs much when it is parallel or antiparallel to the query and nothing when orthogonal.
 * The WGSL kernel computes it in tiles, so the `[Tq, Tk]` score matrix never exists in memory.
 * Query head h reads key/value head ⌊h·Hkv/H⌋ (grouped-query attention; Hkv = 1 is
 * multi-query). A query with no visible key outputs 0.
 *
 * Causal mask for Tq = 2, Tk = 4 (bottom-right aligned; x visible):
 * ```
 *          j=0 1 2 3
 *   i = 0    x x x .
 *   i = 1    x x x x
 * ```
 *
 * @param q `[B, Tq, H, K]` float32.
 * @param k `[B, Tk, Hkv, K]` float32, H a multiple of Hkv, K ≤ 256.
 * @param v `[B, Tk, Hkv, K]` float32.
 * @returns `[B, Tq, H, K]`.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([1, 128, 4, 64]);
 * const kv = tf.randomNormal([1, 128, 2, 64]);
 * const o = ops.expressiveAttention(q, kv, kv, { causal: true, epsilon: 1e-6 }); // [1, 128, 4, 64]
 * ```
 */
export function expressiveAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: ExpressiveAttentionOptions = {},
): tf.Tensor4D {
  const op = 'expressiveAttention';
  checkOptionNames(op, options, OPTIONS);
  const s = checkAttention(op, q, k, v);
  const causal = checkBoolean(op, 'causal', options.causal, true);
  const scale = checkScale(op, options.scale, s.K);
  const epsilon = checkEpsilon(op, options.epsilon);
  if (useKernel(op, options.implementation)) {
    const [o, z] = tf.engine().runKernel(EXPRESSIVE_ATTENTION, { q, k, v }, { causal, scale, epsilon }) as tf.Tensor[];
    // the gradient tape keeps its own reference to what it saved
    z!.dispose();
    return o as tf.Tensor4D;
  }
  return expressiveAttentionReference(q, k, v, s, causal, scale, epsilon);
}
