import * as tf from '@tensorflow/tfjs';
import {
  checkOneOf, checkOptionNames, checkShape, checkTensor, differentiableZeros, optionNames, useKernel, type Implementation,
} from '../../validate.js';
import { causalGenerationReference, reducePair, type Reduce } from './reference.js';
import { CAUSAL_GENERATION, CAUSAL_GENERATION_STEP } from './kernel.js';

export type { Reduce };
export const REDUCES: readonly Reduce[] = ['min', 'max', 'mean'];

/** Options of `ops.causalGeneration`. */
export interface CausalGenerationOptions {
  /** The elementwise comparison of a token with its predecessor. Default `'min'`. */
  reduce?: Reduce;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const OPTIONS = optionNames<CausalGenerationOptions>({ reduce: true, implementation: true });

/**
 * CausalGeneration (Hilsenbek 2024): each token compared elementwise with its predecessor,
 * `y[t] = R(x[t], x[t-1])` and `y[0] = x[0]`, with R one of min, max, mean. No parameters;
 * O(T·D) time. Differentiable: min/max route the gradient to the selected argument (a tie
 * goes to x[t]), mean sends half to each.
 *
 * @param x `[B, T, D]` float32; B or T may be 0 (the output is then empty), D ≥ 1.
 * @returns `[B, T, D]`.
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[1, 5], [3, 2], [0, 4]]]);   // [1, 3, 2]
 * ops.causalGeneration(x, { reduce: 'min' }).print();  // [[[1, 5], [1, 2], [0, 2]]]
 * ```
 */
export function causalGeneration(x: tf.Tensor3D, options: CausalGenerationOptions = {}): tf.Tensor3D {
  const op = 'causalGeneration';
  checkOptionNames(op, options, OPTIONS);
  const $x = checkTensor<tf.Rank.R3>(op, 'x', x, ['B', 'T', 'D']);
  const reduce = checkOneOf(op, 'reduce', options.reduce, REDUCES, 'min');
  const kernel = useKernel(op, options.implementation);
  if ($x.size === 0) return differentiableZeros($x.shape, [$x]);
  if (kernel) {
    return tf.engine().runKernel(CAUSAL_GENERATION, { x: $x }, { reduce }) as tf.Tensor3D;
  }
  return causalGenerationReference($x, reduce);
}

/**
 * One decode step of CausalGeneration: `R(x, previous)` for a single token per sequence.
 * At the first position pass `previous = x` (the token has no predecessor). Not differentiable
 * through the kernel; used by the layer's `step`.
 *
 * @param x `[B, D]` float32, the current token.
 * @param previous `[B, D]` float32, the token before it.
 * @returns `[B, D]`.
 */
export function causalGenerationStep(
  x: tf.Tensor2D, previous: tf.Tensor2D, options: CausalGenerationOptions = {},
): tf.Tensor2D {
  const op = 'causalGenerationStep';
  checkOptionNames(op, options, OPTIONS);
  const $x = checkTensor<tf.Rank.R2>(op, 'x', x, ['B', 'D']);
  const $previous = checkTensor<tf.Rank.R2>(op, 'previous', previous, ['B', 'D']);
  checkShape(op, 'previous', $previous, $x.shape, ['B', 'D']);
  const reduce = checkOneOf(op, 'reduce', options.reduce, REDUCES, 'min');
  const kernel = useKernel(op, options.implementation);
  if ($x.size === 0) return differentiableZeros($x.shape, [$x, $previous]);
  if (kernel) {
    return tf.engine().runKernel(CAUSAL_GENERATION_STEP, { x: $x, previous: $previous }, { reduce }) as tf.Tensor2D;
  }
  return tf.tidy(() => reducePair(reduce, $x.expandDims(1) as tf.Tensor3D, $previous.expandDims(1) as tf.Tensor3D).squeeze([1]));
}
