import * as tf from '@tensorflow/tfjs';
import { copy } from '../../cpu-host.js';

/** The pairwise reductions of CausalGeneration. */
export type Reduce = 'min' | 'max' | 'mean';

/**
 * `x[t-1]` for every t, with `x[0]` standing in for the missing predecessor of the first token.
 * Shared with AverageContext, which defines `x[-1] := x[0]` the same way.
 */
export function predecessors(x: tf.Tensor3D): tf.Tensor3D {
  const [, T] = x.shape;
  if (T === 1) return x;
  return copy.concat([copy.slice(x, [0, 0, 0], [-1, 1, -1]), copy.slice(x, [0, 0, 0], [-1, T - 1, -1])], 1);
}

/** `R(a, b)`; tfjs's minimum/maximum gradients send a tie to `a`, the tie rule `ops.causalGeneration` documents. */
export function reducePair(reduce: Reduce, a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  if (reduce === 'min') return tf.minimum(a, b);
  if (reduce === 'max') return tf.maximum(a, b);
  return tf.mul(tf.add(a, b), 0.5);
}

/**
 * CausalGeneration in tfjs ops, differentiable by tfjs's autodiff: the ground truth on
 * every backend. `y[0] = R(x[0], x[0]) = x[0]`, so the first token passes through.
 */
export function causalGenerationReference(x: tf.Tensor3D, reduce: Reduce): tf.Tensor3D {
  return tf.tidy(() => reducePair(reduce, x, predecessors(x)));
}
