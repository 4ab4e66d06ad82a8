import * as tf from '@tensorflow/tfjs';
import {
  argumentError, checkBoolean, checkOneOf, checkOptionNames, checkPosition, checkShape, checkTensor, describe, differentiableZeros,
  formatShape, optionNames, useKernel, type Implementation,
} from '../../validate.js';
import { countedPositions, positionTensor } from '../../positions.js';
import { averageContextPrefillReference, averageContextReference, causalMeanReference, combineThree, type Combine } from './reference.js';
import { AVERAGE_CONTEXT, AVERAGE_CONTEXT_PREFILL, AVERAGE_CONTEXT_STEP, type KernelCombine } from './kernel.js';

export type { Combine };
export const COMBINES: readonly Combine[] = ['max', 'min', 'mean'];

/** Options of `ops.averageContext`. */
export interface AverageContextOptions {
  /** How token, predecessor and context are combined, elementwise. Default `'max'`. */
  combine?: Combine;
  /**
   * `true` (default): the context is the causal running mean of x[0..t].
   * `false`: the mean of the whole sequence, as in the author's code; it lets every output
   * see future tokens, so it must not be used for teacher-forced language modelling.
   */
  causal?: boolean;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const OPTIONS = optionNames<AverageContextOptions>({ combine: true, causal: true, implementation: true });

/** Options of `ops.causalMean`. */
export interface CausalMeanOptions {
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const CAUSAL_MEAN_OPTIONS = optionNames<CausalMeanOptions>({ implementation: true });

/** Options of `ops.averageContextStep`. */
export interface AverageContextStepOptions {
  /** How token, predecessor and context are combined, elementwise. Default `'max'`. */
  combine?: Combine;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const STEP_OPTIONS = optionNames<AverageContextStepOptions>({ combine: true, implementation: true });

/** Runs the scan kernel and drops its second output, the min/max picks saved for the backward. */
function runScan(x: tf.Tensor3D, combine: KernelCombine, causal: boolean): tf.Tensor3D {
  const [y, picks] = tf.engine().runKernel(AVERAGE_CONTEXT, { x }, { combine, causal }) as tf.Tensor[];
  // the gradient tape keeps its own reference to what it saved
  picks.dispose();
  return y as tf.Tensor3D;
}

/**
 * AverageContext (Hilsenbek 2024): `y[t] = C(x[t], x[t-1], c[t])` elementwise, where `c[t]`
 * is the causal running mean of `x[0..t]`, `x[-1] := x[0]`, and C is max, min or the mean of
 * the three. O(T·D) time, a prefix scan over T. Differentiable: max/min send the gradient to
 * the selected argument (ties in the order x[t], x[t-1], c[t]); what reaches c[t] flows back
 * to every x[s ≤ t] with weight 1/(t+1).
 *
 * @param x `[B, T, D]` float32; B or T may be 0 (the output is then empty), D ≥ 1.
 * @returns `[B, T, D]`.
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[1], [3], [2]]]);           // [1, 3, 1]
 * ops.averageContext(x, { combine: 'max' }).print();  // [[[1], [3], [3]]]
 * ```
 */
export function averageContext(x: tf.Tensor3D, options: AverageContextOptions = {}): tf.Tensor3D {
  const op = 'averageContext';
  checkOptionNames(op, options, OPTIONS);
  const $x = checkTensor<tf.Rank.R3>(op, 'x', x, ['B', 'T', 'D']);
  const combine = checkOneOf(op, 'combine', options.combine, COMBINES, 'max');
  const causal = checkBoolean(op, 'causal', options.causal, true);
  const kernel = useKernel(op, options.implementation);
  if ($x.size === 0) return differentiableZeros($x.shape, [$x]);
  if (kernel) return runScan($x, combine, causal);
  return averageContextReference($x, combine, causal);
}

/**
 * The causal running mean, `c[t] = (1 / (t + 1)) · Σ_{s ≤ t} x[s]`, a prefix scan over T.
 * Differentiable.
 *
 * @param x `[B, T, D]` float32; B or T may be 0 (the output is then empty), D ≥ 1.
 * @returns `[B, T, D]`.
 *
 * @example
 * ```ts
 * ops.causalMean(tf.tensor3d([[[2], [4], [6]]])).print();  // [[[2], [3], [4]]]
 * ```
 */
export function causalMean(x: tf.Tensor3D, options: CausalMeanOptions = {}): tf.Tensor3D {
  const op = 'causalMean';
  checkOptionNames(op, options, CAUSAL_MEAN_OPTIONS);
  const $x = checkTensor<tf.Rank.R3>(op, 'x', x, ['B', 'T', 'D']);
  const kernel = useKernel(op, options.implementation);
  if ($x.size === 0) return differentiableZeros($x.shape, [$x]);
  if (kernel) return runScan($x, 'context', true);
  return causalMeanReference($x);
}

/**
 * Causal AverageContext over a prompt that continues a decode state: `y[t] = C(x[t], x[t−1],
 * c[t])` with `c[t] = (sum + Σ_{s ≤ t} x[s]) / (position + t + 1)` and x[−1] the state's
 * `previous` (x[0] itself in a row at position 0). With a zero state it is
 * {@link averageContext}. Used by the layer's `prefill`, for decoding: its WGSL kernel (the
 * forward scan, starting from the state) has no gradient.
 *
 * @param x `[B, T, D]` float32, the prompt; B or T may be 0 (the output is then empty).
 * @param previous `[B, D]` float32, each row's last token before x.
 * @param sum `[B, D]` float32, the sum of each row's tokens before x.
 * @param positions int32 `[B]`: how many tokens each row saw before x (negative entries count as 0).
 * @returns `[B, T, D]`.
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[4], [6]]]);                  // [1, 2, 1]
 * ops.averageContextPrefill(x, tf.tensor2d([[2]]), tf.tensor2d([[2]]), tf.tensor1d([1], 'int32'),
 *   { combine: 'min' }).print();                          // [[[2], [4]]]: c = [3, 4]
 * ```
 */
export function averageContextPrefill(
  x: tf.Tensor3D, previous: tf.Tensor2D, sum: tf.Tensor2D, positions: tf.Tensor1D, options: AverageContextStepOptions = {},
): tf.Tensor3D {
  const op = 'averageContextPrefill';
  checkOptionNames(op, options, STEP_OPTIONS);
  const $x = checkTensor<tf.Rank.R3>(op, 'x', x, ['B', 'T', 'D']);
  const [B, , D] = $x.shape;
  checkShape(op, 'previous', checkTensor(op, 'previous', previous, ['B', 'D']), [B, D], ['B', 'D']);
  checkShape(op, 'sum', checkTensor(op, 'sum', sum, ['B', 'D']), [B, D], ['B', 'D']);
  if (!(positions instanceof tf.Tensor) || positions.dtype !== 'int32' || positions.rank !== 1 || positions.shape[0] !== B) {
    throw argumentError(op, `argument 'positions' must be an int32 tensor of shape ${formatShape([B])}; received ${describe(positions)}.`);
  }
  const combine = checkOneOf(op, 'combine', options.combine, COMBINES, 'max');
  const kernel = useKernel(op, options.implementation);
  if ($x.size === 0) return tf.zeros($x.shape);
  // the kernel reads the state as it is kept, a negative position as 0
  if (kernel) return tf.engine().runKernel(AVERAGE_CONTEXT_PREFILL, { x: $x, previous, sum, positions }, { combine }) as tf.Tensor3D;
  return tf.tidy(() => averageContextPrefillReference($x, previous, sum, tf.relu(positions), combine));
}

/**
 * One decode step of causal AverageContext for a single token per sequence:
 * `sum' = sum + x`, `y = C(x, previous, sum' / (position + 1))`, with `previous` ignored at
 * position 0 (the first token is its own predecessor). Used by the layer's `step`.
 *
 * @param x `[B, D]` float32, the current token.
 * @param previous `[B, D]` float32, the token before it.
 * @param sum `[B, D]` float32, the sum of the `position` tokens before x.
 * @param position how many tokens came before x: one non-negative integer for every row, or an
 *   int32 tensor `[B]`, one per row (rows of a ragged batch; negative entries count as 0).
 * @returns `[y, nextSum]`, both `[B, D]`.
 *
 * @example
 * ```ts
 * const x = tf.tensor2d([[3], [1]]);
 * const [y, sum] = ops.averageContextStep(x, tf.tensor2d([[1], [0]]), tf.tensor2d([[1], [0]]),
 *   tf.tensor1d([1, 0], 'int32'), { combine: 'mean' });
 * y.print();  // [[2], [1]]: row 0 (3 + 1 + 4/2) / 3, row 1 its first token
 * ```
 */
export function averageContextStep(
  x: tf.Tensor2D, previous: tf.Tensor2D, sum: tf.Tensor2D, position: number | tf.Tensor1D,
  options: AverageContextStepOptions = {},
): [tf.Tensor2D, tf.Tensor2D] {
  return tf.tidy(() => {
    const [y, nextSum] = averageContextAdvance('averageContextStep', x, previous, sum, position, options);
    return [y, nextSum];
  });
}

/**
 * {@link averageContextStep} for the layer's step, with each row's next position too,
 * `max(position, 0) + 1` `[B]` int32, which the step's kernel writes as it goes: the state's
 * positions advance without a launch of their own.
 */
export function averageContextAdvance(
  op: string, x: tf.Tensor2D, previous: tf.Tensor2D, sum: tf.Tensor2D, position: number | tf.Tensor1D,
  options: AverageContextStepOptions,
): [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D] {
  checkOptionNames(op, options, STEP_OPTIONS);
  const $x = checkTensor<tf.Rank.R2>(op, 'x', x, ['B', 'D']);
  checkShape(op, 'previous', checkTensor(op, 'previous', previous, ['B', 'D']), $x.shape, ['B', 'D']);
  checkShape(op, 'sum', checkTensor(op, 'sum', sum, ['B', 'D']), $x.shape, ['B', 'D']);
  const B = $x.shape[0];
  checkPosition(op, 'position', position, B);
  const combine = checkOneOf(op, 'combine', options.combine, COMBINES, 'max');
  const kernel = useKernel(op, options.implementation);
  return tf.tidy(() => {
    // the kernel counts a negative position as 0 itself
    const positions = positionTensor(position, B);
    if (kernel && $x.size > 0) {
      return tf.engine().runKernel(AVERAGE_CONTEXT_STEP, { x: $x, previous, sum, positions }, { combine }) as
        [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
    }
    const { counted, next } = countedPositions(positions);
    if ($x.size === 0) return [differentiableZeros($x.shape, [$x, previous, sum]), differentiableZeros($x.shape, [$x, previous, sum]), next];
    const nextSum = tf.add(sum, $x) as tf.Tensor2D;
    const rowPositions = counted.expandDims(1);
    const p = tf.where(tf.equal(rowPositions, 0), $x, previous);
    const count = tf.cast(tf.add(rowPositions, 1), 'float32');
    return [combineThree(combine, $x, p, tf.div(nextSum, count)) as tf.Tensor2D, nextSum, next];
  });
}
