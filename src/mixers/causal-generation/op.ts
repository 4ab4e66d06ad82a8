import * as tf from '@tensorflow/tfjs';
import { copy } from '../../cpu-host.js';
import {
  checkOneOf, checkOptionNames, checkPosition, checkShape, checkTensor, differentiableZeros, optionNames, useKernel,
  type Implementation,
} from '../../validate.js';
import { countedPositions, positionTensor } from '../../positions.js';
import { causalGenerationReference, reducePair, type Reduce } from './reference.js';
import { CAUSAL_GENERATION, CAUSAL_GENERATION_PREFILL, CAUSAL_GENERATION_STEP } from './kernel.js';

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
 * {@link causalGeneration} continuing a decode state, for the layer's prefill (not in `ops`; the
 * layer has checked its arguments): x `[B, T, D]`'s first token meets the state's last,
 * `previous` `[B, D]`, in rows at a position > 0 (`positions` int32 `[B]`), as
 * {@link causalGenerationStep} takes it. On webgpu where no gradient is recorded one launch of the
 * forward kernel; otherwise the forward, a step for the first token and a concat.
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[3], [5]], [[4], [1]]]);                 // [2, 2, 1]
 * causalGenerationPrefill(x, tf.tensor2d([[2], [9]]), tf.tensor1d([7, 0], 'int32'),
 *   { reduce: 'min', implementation: 'auto' }).print();            // [[[2], [3]], [[4], [1]]]
 * ```
 */
export function causalGenerationPrefill(x: tf.Tensor3D, previous: tf.Tensor2D, positions: tf.Tensor1D,
  options: { reduce: Reduce; implementation: Implementation }): tf.Tensor3D {
  const [B, T, D] = x.shape;
  if (x.size > 0 && useKernel('causalGeneration', options.implementation) && tf.engine().state.gradientDepth === 0) {
    return tf.engine().runKernel(CAUSAL_GENERATION_PREFILL, { x, previous, positions }, { reduce: options.reduce }) as tf.Tensor3D;
  }
  return tf.tidy(() => {
    const mixed = causalGeneration(x, options);
    const first = causalGenerationStep(copy.slice(x, [0, 0, 0], [B, 1, D]).squeeze([1]) as tf.Tensor2D, previous, { ...options, position: positions });
    return (T === 1 ? first.expandDims(1) : copy.concat([first.expandDims(1), copy.slice(mixed, [0, 1, 0], [B, T - 1, D])], 1)) as tf.Tensor3D;
  });
}

/** Options of `ops.causalGenerationStep`. */
export interface CausalGenerationStepOptions extends CausalGenerationOptions {
  /**
   * How many tokens came before x: one non-negative integer for every row, or an int32 tensor
   * `[B]`, one per row (negative entries count as 0). A row at position 0 has no predecessor, so
   * `previous` is ignored there and the token passes through. Default 1: every row compares x
   * with `previous`.
   */
  position?: number | tf.Tensor1D;
}

const STEP_OPTIONS = optionNames<CausalGenerationStepOptions>({ reduce: true, implementation: true, position: true });

/**
 * One decode step of CausalGeneration: `R(x, previous)` for a single token per sequence, a row
 * at position 0 passing its token through. Not differentiable through the kernel; used by the
 * layer's `step`.
 *
 * @param x `[B, D]` float32, the current token.
 * @param previous `[B, D]` float32, the token before it.
 * @returns `[B, D]`.
 *
 * @example
 * ```ts
 * const x = tf.tensor2d([[3, 1], [2, 2]]);
 * const previous = tf.tensor2d([[1, 5], [0, 0]]);
 * ops.causalGenerationStep(x, previous, { position: tf.tensor1d([4, 0], 'int32') }).print();
 * // [[1, 1], [2, 2]]: row 0 min(x, previous), row 1 its first token
 * ```
 */
export function causalGenerationStep(
  x: tf.Tensor2D, previous: tf.Tensor2D, options: CausalGenerationStepOptions = {},
): tf.Tensor2D {
  return tf.tidy(() => causalGenerationAdvance('causalGenerationStep', x, previous, options)[0]);
}

/**
 * {@link causalGenerationStep} for the layer's step, with each row's next position too,
 * `max(position, 0) + 1` `[B]` int32, which the step's kernel writes as it goes: the state's
 * positions advance without a launch of their own.
 */
export function causalGenerationAdvance(
  op: string, x: tf.Tensor2D, previous: tf.Tensor2D, options: CausalGenerationStepOptions,
): [tf.Tensor2D, tf.Tensor1D] {
  checkOptionNames(op, options, STEP_OPTIONS);
  const $x = checkTensor<tf.Rank.R2>(op, 'x', x, ['B', 'D']);
  const $previous = checkTensor<tf.Rank.R2>(op, 'previous', previous, ['B', 'D']);
  checkShape(op, 'previous', $previous, $x.shape, ['B', 'D']);
  const B = $x.shape[0];
  const position = checkPosition(op, 'position', options.position ?? 1, B, 'option');
  const reduce = checkOneOf(op, 'reduce', options.reduce, REDUCES, 'min');
  const kernel = useKernel(op, options.implementation);
  return tf.tidy(() => {
    // the kernel counts a negative position as 0 itself
    const positions = positionTensor(position, B);
    if (kernel && $x.size > 0) {
      return tf.engine().runKernel(CAUSAL_GENERATION_STEP, { x: $x, previous: $previous, positions }, { reduce }) as
        [tf.Tensor2D, tf.Tensor1D];
    }
    const { counted, next } = countedPositions(positions);
    if ($x.size === 0) return [differentiableZeros($x.shape, [$x, $previous]), next];
    const before = tf.where(tf.greater(counted.expandDims(1), 0), $previous, $x) as tf.Tensor2D;
    return [reducePair(reduce, $x.expandDims(1) as tf.Tensor3D, before.expandDims(1) as tf.Tensor3D).squeeze([1]), next];
  });
}
