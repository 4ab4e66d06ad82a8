import * as tf from '@tensorflow/tfjs';
import type { Implementation } from '../validate.js';
import type { MixerCase } from './descriptor.js';

/** Width of the single-input bench cases, and the heads of the attention-shaped ones. */
export const CASE_SIZES = { D: 256, H: 4, K: 64 } as const;

/** N(0, 1) draws of `shape` from `seed`. */
export const normal = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

/** A case of one input x `[1, T, D]`. */
export function sequenceCase(
  op: string, options: string, T: number, seed: number, run: (x: tf.Tensor3D, implementation: Implementation) => tf.Tensor,
): MixerCase {
  const { D } = CASE_SIZES;
  return {
    op, about: `x [1, ${T}, ${D}]; ${options}`, names: ['x'], inputs: [normal([1, T, D], seed)], constants: [], outputShape: [1, T, D],
    run: (implementation, [x]) => run(x as tf.Tensor3D, implementation),
  };
}

/** A case of q, k, v `[1, T, H, K]` (and any more inputs `extra` draws). */
export function attentionCase(
  op: string, options: string, T: number, seed: number,
  run: (xs: tf.Tensor4D[], implementation: Implementation) => tf.Tensor,
  extra: { names: string[]; about: string; inputs: tf.Tensor[] } = { names: [], about: '', inputs: [] },
): MixerCase {
  const { H, K } = CASE_SIZES;
  return {
    op, about: `q, k, v [1, ${T}, ${H}, ${K}]${extra.about}; ${options}`,
    names: ['q', 'k', 'v', ...extra.names],
    inputs: [...[0, 1, 2].map((i) => normal([1, T, H, K], seed + i)), ...extra.inputs],
    constants: [],
    outputShape: [1, T, H, K],
    run: (implementation, xs) => run(xs as tf.Tensor4D[], implementation),
  };
}
