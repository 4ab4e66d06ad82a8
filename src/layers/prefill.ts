import * as tf from '@tensorflow/tfjs';
import { argumentError, checkOptionNames, describe, formatShape, optionNames } from '../validate.js';

/** Options of every layer's `prefill(x, state?, options)`. */
export interface PrefillOptions {
  /**
   * The real tokens of each row of x `[B, T, D]`, which is right-padded: row b's state advances
   * by `lengths[b]` tokens (0 to T) and later steps continue each row from its own position.
   * `number[]` or an int32 tensor `[B]`. Default: every row holds T tokens.
   */
  lengths?: number[] | tf.Tensor1D;
}

const PREFILL_OPTIONS = optionNames<PrefillOptions>({ lengths: true });

/** The checked lengths of a prefill: a tensor for the kernels and, where known on the host, the numbers. */
export interface PrefillLengths {
  /** int32 `[B]`: the real tokens of each row. */
  tensor: tf.Tensor1D;
  /** The same as numbers, when they came as numbers (a tensor is not read back); null otherwise. */
  values: number[] | null;
  /** Whether every row holds all T tokens (only known from numbers or when lengths is absent). */
  full: boolean;
}

/**
 * Checks a prefill's `options` for x `[B, T, D]` and returns its lengths; the caller disposes
 * `tensor`. Numbers are range-checked (integers in 0..T); a tensor's shape and dtype are, and
 * its values are clamped to 0..T by the ops that read them (reading it back would stall, and
 * cannot run synchronously on webgpu in Node).
 *
 * @param layer the layer's name, for messages.
 * @example
 * ```ts
 * const { tensor, values } = prefillLengths('FlashStyleTiledAttention.prefill', { lengths: [3, 1] }, 2, 4);
 * values; // [3, 1]
 * tensor.dispose();
 * ```
 */
export function prefillLengths(layer: string, options: PrefillOptions | undefined, B: number, T: number): PrefillLengths {
  checkOptionNames(layer, options, PREFILL_OPTIONS);
  const lengths = options?.lengths;
  if (lengths === undefined) return { tensor: tf.fill([B], T, 'int32') as tf.Tensor1D, values: new Array<number>(B).fill(T), full: true };
  if (Array.isArray(lengths)) {
    const ok = lengths.length === B && lengths.every((n) => Number.isInteger(n) && n >= 0 && n <= T);
    if (!ok) {
      throw argumentError(layer, `option 'lengths' must hold ${B} integers (one per row of x) from 0 to T = ${T}; received ${describe(lengths)}.`);
    }
    return { tensor: tf.tensor1d(lengths, 'int32'), values: [...lengths], full: lengths.every((n) => n === T) };
  }
  if (!(lengths instanceof tf.Tensor) || lengths.dtype !== 'int32' || lengths.rank !== 1 || lengths.shape[0] !== B) {
    throw argumentError(layer, `option 'lengths' must be number[] or an int32 tensor of shape ${formatShape([B])}; received ${describe(lengths)}.`);
  }
  return { tensor: tf.clone(lengths), values: null, full: false };
}
