import * as tf from '@tensorflow/tfjs';
import { argumentError, checkOptionNames, describe, formatShape, optionNames, useKernel, type Implementation } from '../validate.js';
import { layerNormReference, rmsNormReference } from './reference.js';
import { ADD_LAYER_NORM, LAYER_NORM, RMS_NORM_SWISH_GATE, type LayerNormAttrs } from './kernel.js';

/** Options of `ops.layerNorm`. */
export interface LayerNormOptions {
  /** ε, added to the variance. Default 1e-3, as Keras's LayerNormalization. */
  epsilon?: number;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const OPTIONS = optionNames<LayerNormOptions>({ epsilon: true, implementation: true });

/**
 * Layer normalisation over the last axis (Ba et al. 2016), `y = (x − mean)/√(var + ε)·gamma + beta`,
 * mean and variance (biased, as Keras and PyTorch) over each row of D channels: the norm around
 * every mixer of a transformer block. On webgpu one invocation normalises a row (a subgroup, on a
 * device made by `registerSubgroupBackend`), and the gradient
 * is three kernels (dx by rows, dgamma down the columns, dbeta as `ops.dense`'s column sum), where
 * tfjs's ops launch 11 forward and about 30 backward, their reductions a workgroup per row.
 * Differentiable once on webgpu; the reference is differentiable to any order.
 *
 * @param x `[..., D]` float32, rank ≥ 1; any leading dimension may be 0 (the output is then empty).
 * @param gamma `[D]` float32, the scale.
 * @param beta `[D]` float32, the offset.
 * @returns `[..., D]`.
 *
 * @example
 * ```ts
 * const x = tf.randomNormal([2, 16, 64]);                 // [B, T, D]
 * const y = ops.layerNorm(x, tf.ones([64]) as tf.Tensor1D, tf.zeros([64]) as tf.Tensor1D, { epsilon: 1e-5 });
 * ```
 */
export function layerNorm<R extends tf.Rank>(x: tf.Tensor<R>, gamma: tf.Tensor1D, beta: tf.Tensor1D, options: LayerNormOptions = {}): tf.Tensor<R> {
  return normalise('layerNorm', x, gamma, beta, options);
}

/**
 * A residual connection's sum and its layer norm, `[x + residual, layerNorm(x + residual)]`: in a
 * pre-norm transformer block each residual add feeds the next norm. Where no gradient is being
 * recorded (inference, a decode step) on webgpu it is one launch that forms the sum as it reads
 * it and writes both (`kernels/layer-norm/forward-residual.wgsl`), where the add and the norm
 * take two; elsewhere, and under a gradient tape, `tf.add` then {@link layerNorm}, so both
 * outputs carry their gradients. The norm is the same either way, to the bit: the sum is rounded
 * once, as tf.add rounds it.
 *
 * @param x `[..., D]` float32, rank ≥ 1, D ≥ 1.
 * @param residual float32, the shape of x.
 * @param gamma `[D]` float32, the scale.
 * @param beta `[D]` float32, the offset.
 * @returns `[sum, y]`, both the shape of x.
 *
 * @example
 * ```ts
 * const x = tf.randomNormal([2, 16, 64]);                 // the block's input
 * const h = tf.randomNormal([2, 16, 64]);                 // its mixer's output
 * const [sum, y] = ops.addLayerNorm(x, h, tf.ones([64]) as tf.Tensor1D, tf.zeros([64]) as tf.Tensor1D);
 * // sum = x + h, the next residual's input; y = layerNorm(sum), the MLP's
 * ```
 */
export function addLayerNorm<R extends tf.Rank>(x: tf.Tensor<R>, residual: tf.Tensor<R>, gamma: tf.Tensor1D, beta: tf.Tensor1D,
  options: LayerNormOptions = {}): [tf.Tensor<R>, tf.Tensor<R>] {
  const op = 'addLayerNorm';
  const { D, epsilon, useGpu } = checkNorm(op, x, gamma, beta, options);
  if (!(residual instanceof tf.Tensor) || residual.dtype !== 'float32' || !tf.util.arraysEqual(residual.shape, x.shape)) {
    throw argumentError(op, `argument 'residual' must be a float32 tensor of the shape of x ${formatShape(x.shape)}; ` +
      `received ${describe(residual)}.`);
  }
  if (!useGpu || tf.engine().state.gradientDepth > 0 || x.size === 0) {
    return tf.tidy(() => {
      const sum = tf.add(x, residual) as tf.Tensor<R>;
      return [sum, layerNorm(sum, gamma, beta, options)];
    });
  }
  return tf.tidy(() => {
    const attrs: LayerNormAttrs = { epsilon, centred: true };
    const inputs = { x: x.reshape([x.size / D, D]), residual: residual.reshape([x.size / D, D]), gamma, beta };
    const [y, , sum] = tf.engine().runKernel(ADD_LAYER_NORM, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return [sum!.reshape(x.shape) as tf.Tensor<R>, y!.reshape(x.shape) as tf.Tensor<R>];
  });
}

/**
 * RMSNorm over the last axis (Zhang and Sennrich 2019), `y = x/√(mean(x²) + ε)·gamma`: the
 * per-head norm of GatedLinearAttention's readout. Not in `ops`. On webgpu it is
 * {@link layerNorm}'s kernels without the mean and beta.
 *
 * @param x `[..., D]` float32, rank ≥ 1.
 * @param gamma `[D]` float32, the scale.
 * @returns `[..., D]`.
 *
 * @example
 * ```ts
 * const o = tf.randomNormal([2, 16, 4, 32]);               // [B, T, H, V]
 * const y = rmsNorm(o, tf.ones([32]) as tf.Tensor1D, { epsilon: 1e-5 });   // [2, 16, 4, 32]
 * ```
 */
export function rmsNorm<R extends tf.Rank>(x: tf.Tensor<R>, gamma: tf.Tensor1D, options: LayerNormOptions = {}): tf.Tensor<R> {
  return normalise('rmsNorm', x, gamma, null, options);
}

/**
 * RMSNorm with a swish output gate, `rmsNorm(x, gamma)·gate·σ(gate)`: GatedLinearAttention's
 * readout (flash-linear-attention's FusedRMSNormSwishGate). Not in `ops`. Differentiable. On
 * webgpu it is one launch (`kernels/layer-norm/forward-gated.wgsl`), where the norm, the sigmoid
 * and two products take four, and its gradient three, where tfjs's take ten; elsewhere
 * {@link rmsNorm} times the swish in tfjs ops.
 *
 * @param x `[..., D]` float32, rank ≥ 1.
 * @param gamma `[D]` float32, the scale.
 * @param gate float32, the shape of x.
 * @returns the shape of x.
 *
 * @example
 * ```ts
 * const o = tf.randomNormal([2, 16, 4, 32]);               // [B, T, H, V]
 * const gate = tf.randomNormal([2, 16, 4, 32]);
 * const y = rmsNormSwishGate(o, tf.ones([32]) as tf.Tensor1D, gate, { epsilon: 1e-5 });   // [2, 16, 4, 32]
 * ```
 */
export function rmsNormSwishGate<R extends tf.Rank>(x: tf.Tensor<R>, gamma: tf.Tensor1D, gate: tf.Tensor,
  options: LayerNormOptions = {}): tf.Tensor<R> {
  const op = 'rmsNormSwishGate';
  const { D, epsilon, useGpu } = checkNorm(op, x, gamma, null, options);
  if (!(gate instanceof tf.Tensor) || gate.dtype !== 'float32' || !tf.util.arraysEqual(gate.shape, x.shape)) {
    throw argumentError(op, `argument 'gate' must be a float32 tensor of the shape of x ${formatShape(x.shape)}; received ${describe(gate)}.`);
  }
  if (!useGpu || x.size === 0) {
    return tf.tidy(() => tf.mul(rmsNorm(x, gamma, options), tf.mul(gate, tf.sigmoid(gate))) as tf.Tensor<R>);
  }
  return tf.tidy(() => {
    const attrs: LayerNormAttrs = { epsilon, centred: false };
    const rows = [x.size / D, D];
    const inputs = { x: x.reshape(rows), gamma, gate: gate.reshape(rows) };
    const [y] = tf.engine().runKernel(RMS_NORM_SWISH_GATE, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return y!.reshape(x.shape) as tf.Tensor<R>;
  });
}

/** Checks the arguments every norm takes, naming `op`; returns D, ε and whether the kernels run. */
function checkNorm(op: string, x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D | null, options: LayerNormOptions):
  { D: number; epsilon: number; useGpu: boolean } {
  checkOptionNames(op, options, OPTIONS);
  if (!(x instanceof tf.Tensor) || x.rank < 1 || x.dtype !== 'float32' || x.shape[x.rank - 1] === 0) {
    throw argumentError(op, `argument 'x' must be a float32 tensor [..., D] of rank ≥ 1 with D ≥ 1; received ${describe(x)}.`);
  }
  const D = x.shape[x.rank - 1]!;
  for (const [name, t] of [['gamma', gamma], ...(beta ? [['beta', beta]] : [])] as const) {
    if (!(t instanceof tf.Tensor) || t.rank !== 1 || t.dtype !== 'float32' || t.shape[0] !== D) {
      throw argumentError(op, `argument '${name}' must be a float32 tensor [D] = [${D}], D the last dimension of x ` +
        `${formatShape(x.shape)}; received ${describe(t)}.`);
    }
  }
  const epsilon = options.epsilon ?? 1e-3;
  if (typeof epsilon !== 'number' || !(epsilon > 0) || !Number.isFinite(epsilon)) {
    throw argumentError(op, `option 'epsilon' must be a positive finite number; received ${describe(epsilon)}.`);
  }
  return { D, epsilon, useGpu: useKernel(op, options.implementation) };
}

/** Checks and runs {@link layerNorm} (with beta) or {@link rmsNorm} (without). */
function normalise<R extends tf.Rank>(op: string, x: tf.Tensor<R>, gamma: tf.Tensor1D, beta: tf.Tensor1D | null,
  options: LayerNormOptions): tf.Tensor<R> {
  const { D, epsilon, useGpu } = checkNorm(op, x, gamma, beta, options);
  if (x.size === 0) return tf.zerosLike(x);
  return tf.tidy(() => {
    const rows = x.reshape([x.size / D, D]) as tf.Tensor2D;
    if (!useGpu) {
      const y = beta ? layerNormReference(rows, gamma, beta, epsilon) : rmsNormReference(rows, gamma, epsilon);
      return y.reshape(x.shape) as tf.Tensor<R>;
    }
    const attrs: LayerNormAttrs = { epsilon, centred: beta !== null };
    // RMSNorm passes no beta (the kernel binds gamma in its place, never read)
    const inputs: tf.NamedTensorMap = beta ? { x: rows, gamma, beta } : { x: rows, gamma };
    const [y] = tf.engine().runKernel(LAYER_NORM, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return y!.reshape(x.shape) as tf.Tensor<R>;
  });
}
