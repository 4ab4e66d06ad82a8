import * as tf from '@tensorflow/tfjs';
import { broadcast, copy } from '../../cpu-host.js';
import { reverseCumsum } from '../../tensors.js';
import { predecessors } from '../causal-generation/reference.js';

/** The three-way combines of AverageContext. */
export type Combine = 'max' | 'min' | 'mean';

/** `[1, T, 1]` holding 1..T: the divisor of the running mean. */
function counts(T: number): tf.Tensor3D {
  return tf.range(1, T + 1).reshape([1, T, 1]);
}

/**
 * The causal running mean `c[t] = mean(x[0..t])` in tfjs ops, with its gradient written out:
 * tfjs 4.22's own cumsum gradient is a reverse cumsum whose cpu version throws on a non-last axis
 * (and see {@link reverseCumsum} for webgpu's).
 */
const causalMeanOf = tf.customGrad(((x: tf.Tensor) => ({
  value: broadcast.div(tf.cumsum(x, 1), counts(x.shape[1]!)),
  // dL/dx[s] = Σ_{t ≥ s} g[t] / (t + 1)
  gradFunc: (dy: tf.Tensor) => reverseCumsum(broadcast.div(dy, counts(dy.shape[1]!)), 1),
})) as unknown as Parameters<typeof tf.customGrad>[0]);

/** Reference `causalMean`: `[B, T, D] → [B, T, D]`. */
export function causalMeanReference(x: tf.Tensor3D): tf.Tensor3D {
  return causalMeanOf(x) as tf.Tensor3D;
}

/**
 * `C(a, p, c)`; the nested min/max send a tie to the first of a, p, c, the tie order `ops.averageContext` documents.
 * `c` may be `[B, 1, D]`: it is broadcast explicitly, because tfjs 4.22's maximum/minimum
 * gradients do not reduce over broadcast axes.
 */
export function combineThree(combine: Combine, a: tf.Tensor, p: tf.Tensor, c: tf.Tensor): tf.Tensor {
  const full = c.broadcastTo(a.shape);
  if (combine === 'max') return tf.maximum(tf.maximum(a, p), full);
  if (combine === 'min') return tf.minimum(tf.minimum(a, p), full);
  return tf.div(tf.addN([a, p, full]), 3);
}

/**
 * AverageContext in tfjs ops, differentiable: `y[t] = C(x[t], x[t-1], c[t])` with
 * `x[-1] := x[0]` and `c[t]` the causal running mean, or with `causal: false` the mean of
 * the whole sequence (the author's original, which sees the future).
 */
export function averageContextReference(x: tf.Tensor3D, combine: Combine, causal: boolean): tf.Tensor3D {
  return tf.tidy(() => {
    // sum / T rather than tf.mean, which multiplies by 1/T on cpu: one rounding, as in the kernel
    const context = causal ? causalMeanReference(x) : tf.div(tf.sum(x, 1, true), x.shape[1]);
    return combineThree(combine, x, predecessors(x), context) as tf.Tensor3D;
  });
}

/**
 * A prompt's outputs continuing a decode state, in tfjs ops: `y[t] = C(x[t], x[t−1], c[t])` with
 * x[−1] the state's `previous` (x[0] in a row at position 0) and `c[t] = (sum + Σ_{s ≤ t} x[s]) /
 * (position + t + 1)`. The ground truth of `ops.averageContextPrefill`.
 *
 * @param positions int32 `[B]`, each ≥ 0.
 */
export function averageContextPrefillReference(
  x: tf.Tensor3D, previous: tf.Tensor2D, sum: tf.Tensor2D, positions: tf.Tensor1D, combine: Combine,
): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, T, D] = x.shape;
    const rowPositions = positions.reshape([B, 1, 1]);
    const before = tf.where(tf.greater(rowPositions, 0), previous.expandDims(1), copy.slice(x, [0, 0, 0], [B, 1, D]));
    const predecessors = T === 1 ? before : copy.concat([before, copy.slice(x, [0, 0, 0], [B, T - 1, D])], 1);
    const counts = tf.cast(tf.add(rowPositions, tf.range(1, T + 1, 1, 'int32').reshape([1, T, 1])), 'float32');
    const context = tf.div(tf.add(sum.expandDims(1), tf.cumsum(x, 1)), counts);
    return combineThree(combine, x, predecessors, context) as tf.Tensor3D;
  });
}
