import * as tf from '@tensorflow/tfjs';
import { argumentError, checkOptionNames, describe, differentiableZeros, formatShape, optionNames, useKernel, type Implementation } from '../validate.js';
import { denseReference } from './reference.js';
import { denseKernel } from './kernel.js';
import { geluKernel, geluReference } from './gelu.js';

/** Options of `ops.dense`. */
export interface DenseOptions {
  /** `[N]` float32, added to every output row. Default none. */
  bias?: tf.Tensor1D;
  /**
   * Applied to x·W + b: `'linear'` (none), `'gelu'`, x·Φ(x) with Φ the standard normal CDF
   * (the erf form, as tfjs-layers' and PyTorch's default), or `'swish'`, x·σ(x) (SiLU, as
   * tfjs-layers' `'swish'`). Default `'linear'`.
   */
  activation?: 'linear' | 'gelu' | 'swish';
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const OPTIONS = optionNames<DenseOptions>({ bias: true, activation: true, implementation: true });

/**
 * A dense projection over the last axis, `y = act(x·W + b)` (Keras's `Dense`, with a linear,
 * GELU or swish activation): the projections of the library's layers run through it. On webgpu its WGSL kernel computes each
 * invocation's block of rows and columns in registers, with vec4 loads when K and N are
 * multiples of 4. tfjs's own matMul, which picks its program by shape, was 4 to 60 times slower
 * on SwiftShader, most at a decode step's single row (`npm run bench -- --blocks`,
 * docs/architecture.md). The activation is the kernel's epilogue where no gradient is recorded
 * (inference, decoding); else GELU is one more launch (`kernels/dense/gelu.wgsl`), where tfjs ops
 * take five, and swish tfjs's sigmoid and a product.
 * Differentiable to any order: the gradients are the same kernel, transposed.
 *
 * @param x `[..., K]` float32, rank ≥ 1; any leading dimension may be 0 (the output is then empty).
 * @param kernel `[K, N]` float32.
 * @returns `[..., N]`.
 *
 * @example
 * ```ts
 * const x = tf.randomNormal([2, 16, 64]);                 // [B, T, D]
 * const w = tf.randomNormal([64, 256]) as tf.Tensor2D;
 * const b = tf.zeros([256]) as tf.Tensor1D;
 * const y = ops.dense(x, w, { bias: b });                 // [2, 16, 256]
 * const h = ops.dense(x, w, { bias: b, activation: 'gelu' });  // an MLP's first half
 * const g = ops.dense(x, w, { activation: 'swish' });      // a gate, x·σ(x)
 * ```
 */
export function dense<R extends tf.Rank>(x: tf.Tensor<R>, kernel: tf.Tensor2D, options: DenseOptions = {}): tf.Tensor<R> {
  const op = 'dense';
  checkOptionNames(op, options, OPTIONS);
  if (!(x instanceof tf.Tensor) || x.rank < 1 || x.dtype !== 'float32') {
    throw argumentError(op, `argument 'x' must be a float32 tensor [..., K] of rank ≥ 1; received ${describe(x)}.`);
  }
  const K = x.shape[x.rank - 1]!;
  if (!(kernel instanceof tf.Tensor) || kernel.rank !== 2 || kernel.dtype !== 'float32' || kernel.shape[0] !== K) {
    throw argumentError(op, `argument 'kernel' must be a float32 tensor [K, N] with K = ${K}, the last dimension of x ` +
      `${formatShape(x.shape)}; received ${describe(kernel)}.`);
  }
  const N = kernel.shape[1];
  const { bias } = options;
  if (bias !== undefined && (!(bias instanceof tf.Tensor) || bias.rank !== 1 || bias.dtype !== 'float32' || bias.shape[0] !== N)) {
    throw argumentError(op, `option 'bias' must be a float32 tensor [N] = [${N}]; received ${describe(bias)}.`);
  }
  const activation = options.activation ?? 'linear';
  if (activation !== 'linear' && activation !== 'gelu' && activation !== 'swish') {
    throw argumentError(op, `option 'activation' must be 'linear', 'gelu' or 'swish'; received ${describe(activation)}.`);
  }
  const useGpu = useKernel(op, options.implementation);
  const shape = [...x.shape.slice(0, -1), N];
  return tf.tidy(() => {
    const M = tf.util.sizeFromShape(x.shape.slice(0, -1));
    const rows = x.reshape([M, K]) as tf.Tensor2D;
    let y: tf.Tensor2D;
    if (K === 0 || M === 0 || N === 0) {
      // a sum of no products is 0: tfjs 4.22's matMul leaves [M, 0]·[0, N] unwritten on webgpu and wasm
      const zeros = differentiableZeros<tf.Rank.R2>([M, N], [rows, kernel]);
      y = bias ? tf.add(zeros, bias) as tf.Tensor2D : zeros;
    } else if (useGpu && activation !== 'linear' && tf.engine().state.gradientDepth === 0) {
      // no gradient is recorded: the activation is the product kernel's epilogue, one launch
      return denseKernel(rows, kernel, false, false, bias, activation).reshape(shape) as tf.Tensor<R>;
    } else {
      y = useGpu ? denseKernel(rows, kernel, false, false, bias) : denseReference(rows, kernel, bias);
    }
    if (activation === 'gelu') y = useGpu && y.size > 0 ? geluKernel(y) : geluReference(y);
    if (activation === 'swish') y = tf.mul(y, tf.sigmoid(y));
    return y.reshape(shape) as tf.Tensor<R>;
  });
}
