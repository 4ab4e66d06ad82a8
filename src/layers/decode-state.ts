import * as tf from '@tensorflow/tfjs';
import { argumentError, checkTensor, describe, formatShape } from '../validate.js';
import { prefillLengths, type PrefillLengths, type PrefillOptions } from './prefill.js';

/**
 * Checks a decode state's `positions`: int32 `[B]`, the tokens each row has consumed.
 *
 * @param method the layer method, for messages: `'AverageContext.step'`.
 * @example
 * ```ts
 * const positions = checkPositions('CausalGeneration.step', { positions: tf.zeros([2], 'int32') }, 2);
 * ```
 */
export function checkPositions(method: string, state: unknown, B: number): tf.Tensor1D {
  const positions: unknown = (state as Record<string, unknown> | null | undefined)?.positions;
  if (!(positions instanceof tf.Tensor) || positions.dtype !== 'int32' || positions.rank !== 1 || positions.shape[0] !== B) {
    throw argumentError(method, `argument 'state.positions' must be an int32 tensor of shape ${formatShape([B])} ` +
      `(one position per row, as initState() makes it); received ${describe(positions)}.`);
  }
  return positions as tf.Tensor1D;
}

/** What a layer's prefill works on, once checked. */
export interface PrefillInputs extends Omit<PrefillLengths, 'tensor'> {
  B: number;
  T: number;
  /** int32 `[B]`: the real tokens of each row, clamped to 0..T. The caller disposes it. */
  lengths: tf.Tensor1D;
}

/**
 * Checks a prefill's x (float32 `[B, T, D]` with the layer's D) and options, and returns its
 * sizes and lengths.
 *
 * @param method the layer method, for messages: `'SelectiveSSM.prefill'`.
 * @example
 * ```ts
 * const { lengths } = prefillInputs('AverageContext.prefill', tf.zeros([2, 4, 8]), 8, { lengths: [4, 1] });
 * lengths.dispose();
 * ```
 */
export function prefillInputs(method: string, x: unknown, D: number, options: PrefillOptions | undefined): PrefillInputs {
  const $x = checkTensor<tf.Rank.R3>(method, 'x', x, ['B', 'T', 'D']);
  const [B, T] = $x.shape;
  if ($x.shape[2] !== D) {
    throw argumentError(method, `argument 'x' must have shape [B, T, D] = ${formatShape([B, T, D])}; received ${formatShape($x.shape)}.`);
  }
  const { tensor, values, full } = prefillLengths(method, options, B, T);
  if (values) return { B, T, lengths: tensor, values, full };
  // a tensor's values are not read back: the ops that use them see them clamped
  const lengths = tf.clipByValue(tensor, 0, T) as tf.Tensor1D;
  tensor.dispose();
  return { B, T, lengths, values, full };
}

/**
 * `[B, T]` bool: whether step t of row b is one of its real tokens, `t < lengths[b]`.
 *
 * @example
 * ```ts
 * realSteps(tf.tensor1d([2, 0], 'int32'), 3).print();   // [[true, true, false], [false, false, false]]
 * ```
 */
export function realSteps(lengths: tf.Tensor1D, T: number): tf.Tensor2D {
  return tf.tidy(() => tf.less(tf.range(0, T, 1, 'int32').expandDims(0), lengths.expandDims(1)) as tf.Tensor2D);
}

/**
 * x `[B, T, D]` with the padded steps (`real` false) set to 0 by selection, so that nothing in
 * the padding, not even a NaN, reaches a real output or the state.
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[1], [NaN]]]);                                    // [1, 2, 1]
 * zeroPadding(x, realSteps(tf.tensor1d([1], 'int32'), 2)).print();        // [[[1], [0]]]
 * ```
 */
export function zeroPadding(x: tf.Tensor3D, real: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => tf.where(real.expandDims(2), x, tf.zerosLike(x)) as tf.Tensor3D);
}

/**
 * The last H steps of each row of `history ‖ x` after `lengths[b]` of x's steps: what a window of
 * H steps holds once row b has consumed its real tokens, a per-row gather of rows
 * `lengths[b] .. lengths[b] + H − 1` of the concatenation (H = `history.shape[1]`).
 *
 * @param history `[B, H, D]`: the window before x.
 * @param x `[B, T, D]`.
 * @param lengths int32 `[B]`, each in 0..T.
 * @returns `[B, H, D]`.
 *
 * @example
 * ```ts
 * const history = tf.tensor3d([[[-1]], [[-2]]]);          // [2, 1, 1]: each row's last token
 * const x = tf.tensor3d([[[1], [2], [3]], [[4], [5], [6]]]);
 * windowAfter(history, x, tf.tensor1d([2, 0], 'int32')).print();   // [[[2]], [[-2]]]
 * ```
 */
export function windowAfter(history: tf.Tensor3D, x: tf.Tensor3D, lengths: tf.Tensor1D): tf.Tensor3D {
  const H = history.shape[1];
  if (H === 0) return history.clone();
  return tf.tidy(() => {
    const rows = tf.add(lengths.expandDims(1), tf.range(0, H, 1, 'int32').expandDims(0));   // [B, H]
    return tf.gather(tf.concat([history, x], 1), rows, 1, 1) as tf.Tensor3D;
  });
}
