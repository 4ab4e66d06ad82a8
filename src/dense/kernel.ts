import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import denseMain from '../../kernels/dense/dense.wgsl';
import geluMath from '../../kernels/dense/gelu-math.wgsl';
import oneJob from '../../kernels/dense/dense-one.wgsl';
import quads from '../../kernels/dense/dense-quads.wgsl';
import withSumsJob from '../../kernels/dense/dense-with-sums.wgsl';
import vec4Layout from '../../kernels/dense/dense-vec4.wgsl';
import scalarLayout from '../../kernels/dense/dense-scalar.wgsl';
import { expandCopies } from '../webgpu/copies.js';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../webgpu/runtime.js';

/**
 * tfjs kernel name. Inputs `a`, `b` (2-D float32) and optionally `bias` `[N]`; output
 * C = op(a)·op(b) + bias `[M, N]`, op a transpose where the attribute says so. Its gradient is
 * the same kernel (the bias's too, as a product by a row of ones), so it is differentiable to any order.
 */
export const DENSE = 'MixersDense';

/**
 * tfjs kernel name. As {@link DENSE}, then the attribute `activation` of every element, GELU or
 * swish, in the same launch: for calls that record no gradient (it has none; the recorded path is
 * DENSE, then the activation's own kernel or ops).
 */
export const DENSE_ACTIVATED = 'MixersDenseActivated';

/** The activations the dense kernel applies in its epilogue, by their `ACTIVATION` code. */
export type Epilogue = 'gelu' | 'swish';
const EPILOGUES: Record<Epilogue, number> = { gelu: 1, swish: 2 };

/** The dense kernels' main and what it needs but a job and a layout (`kernels/dense/dense.wgsl`). */
export const DENSE_BODY = [geluMath, denseMain].join('\n');

/** The kernel's attributes, as tf.matMul's. */
export interface DenseAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

/** {@link DENSE}'s attributes: a bias among the inputs tells its gradient to form the bias's. */
interface DenseCall extends DenseAttrs {
  hasBias?: boolean;
  activation?: Epilogue;
}

/**
 * tfjs kernel name. Input `t` `[M, N]`; output its column sums `[1, N]`, the dense kernel's
 * product of a row of ones that no buffer holds (`A_ONES`) by t, where a ones tensor was filled
 * on the CPU and uploaded each time. Differentiable (its gradient broadcasts dy to t's shape).
 */
const COLUMN_SUMS = 'MixersDenseColumnSums';

/**
 * tfjs kernel name. Inputs `a`, `b` (2-D float32, b not transposed); outputs C = op(a)·b `[M, N]`
 * and b's column sums `[N]`, in one launch: a dense layer's kernel and bias gradients, op(x)ᵀ·dy
 * and 1ᵀ·dy. K and N multiples of 4, and M too when a is transposed ({@link withSumsFit}).
 * Differentiable (its gradient is {@link DENSE}'s, the sums' a bias of dB's product).
 */
const DENSE_WITH_SUMS = 'MixersDenseWithSums';

/** Invocations per workgroup of the dense kernels. */
export const WG = 64;
const KERNELS: Record<'vec4' | 'scalar', KernelSource> = {
  vec4: { name: 'DenseVec4', code: expandCopies([grid, DENSE_BODY, oneJob, vec4Layout, quads].join('\n'), 1) },
  scalar: { name: 'Dense', code: expandCopies([grid, DENSE_BODY, oneJob, scalarLayout].join('\n'), 1) },
};
const WITH_SUMS: KernelSource = { name: 'DenseWithSums', code: expandCopies([grid, DENSE_BODY, withSumsJob, quads].join('\n'), 2) };

/** M, K and N of op(a)·op(b). */
function sizes(a: tf.TensorInfo, b: tf.TensorInfo, { transposeA, transposeB }: DenseAttrs): [number, number, number] {
  const [a0, a1] = a.shape as [number, number];
  const [b0, b1] = b.shape as [number, number];
  return [transposeA ? a1 : a0, transposeA ? a0 : a1, transposeB ? b0 : b1];
}

/** Rows of C per invocation for M rows. */
export function rowsFor(M: number, transposeA: boolean): number {
  // a row or two (a decode step) gains nothing from shared blocks of B; a transposed A is read 4 rows at a time
  return M <= 2 && !transposeA ? 1 : M < 64 ? 4 : 8;
}

/**
 * One launch of the dense kernel for op(a)·op(b) (+ bias) `[M, N]`, K deep; with `onesA`, a's
 * binding a stand-in for a row of ones.
 */
function launchDense(backend: WebGPUBackend, a: tf.TensorInfo, b: tf.TensorInfo, bias: tf.TensorInfo | undefined,
  [M, K, N]: [number, number, number], at: DenseAttrs & { activation?: Epilogue; onesA?: boolean }): tf.TensorInfo {
  // vec4 rows need every row that is read as quads to be whole quads
  const vec4 = K % 4 === 0 && N % 4 === 0 && (!at.transposeA || M % 4 === 0);
  const rows = rowsFor(M, at.transposeA);
  return runKernel(backend, KERNELS[vec4 ? 'vec4' : 'scalar'], {
    // without a bias its binding is never read: `a` stands in (read-only bindings may alias)
    inputs: [a, b, bias ?? a],
    outputs: [[M, N]],
    params: [M, K, N].map((u32) => ({ u32 })),
    constants: {
      WG, ROWS: rows, TRANSPOSE_A: at.transposeA ? 1 : 0, TRANSPOSE_B: at.transposeB ? 1 : 0, HAS_BIAS: bias ? 1 : 0,
      ACTIVATION: at.activation ? EPILOGUES[at.activation] : 0, A_ONES: at.onesA ? 1 : 0,
    },
    workgroups: grid1d(Math.ceil(M / rows) * Math.ceil(N / 4), WG),
  })[0]!;
}

/** The launch of {@link DENSE}, and of {@link DENSE_ACTIVATED}, whose attrs name the activation. */
const denseLaunch: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { a, b } = namedInputs(inputs, 'a', 'b');
  const at = attrs as unknown as DenseCall;
  return launchDense(backend as WebGPUBackend, a, b, inputs.bias, sizes(a, b, at), at);
};

for (const kernelName of [DENSE, DENSE_ACTIVATED]) registerKernelOnce({ kernelName, backendName: 'webgpu', kernelFunc: denseLaunch });

registerKernelOnce({
  kernelName: COLUMN_SUMS,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { t } = namedInputs(inputs, 't');
    const [M, N] = t.shape as [number, number];
    // t stands in for the ones it is multiplied by
    return launchDense(backend as WebGPUBackend, t, t, undefined, [1, M, N], { transposeA: false, transposeB: false, onesA: true });
  },
});

registerGradientOnce({
  kernelName: COLUMN_SUMS,
  inputsToSave: ['t'],
  gradFunc: (dy, [t]) => ({ t: () => tf.broadcastTo(dy as tf.Tensor, t!.shape) }),
});

registerKernelOnce({
  kernelName: DENSE_WITH_SUMS,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { a, b } = namedInputs(inputs, 'a', 'b');
    const { transposeA } = attrs as unknown as DenseAttrs;
    const [M, K, N] = sizes(a, b, { transposeA, transposeB: false });
    const rows = rowsFor(M, transposeA);
    return runKernel(backend as WebGPUBackend, WITH_SUMS, {
      inputs: [a, b],
      outputs: [[M, N], [N]],
      params: [M, K, N].map((u32) => ({ u32 })),
      constants: { WG, ROWS: rows, TRANSPOSE_A: transposeA ? 1 : 0 },
      // the product's blocks, then a row of blocks for the sums
      workgroups: grid1d((Math.ceil(M / rows) + 1) * (N / 4), WG),
    });
  },
});

registerGradientOnce({
  kernelName: DENSE_WITH_SUMS,
  inputsToSave: ['a', 'b'],
  gradFunc: (dys, [a, b], attrs) => {
    const [dc, ds] = dys as tf.Tensor[];
    const { transposeA: tA } = attrs as unknown as DenseAttrs;
    // C = op(A)·B and S = 1ᵀ·B: dop(A) = dC·Bᵀ, dB = op(A)ᵀ·dC + 1·dSᵀ, the sums' gradient dB's bias
    return {
      a: () => tA ? denseKernel(b as tf.Tensor2D, dc as tf.Tensor2D, false, true) : denseKernel(dc as tf.Tensor2D, b as tf.Tensor2D, false, true),
      b: () => denseKernel(a as tf.Tensor2D, dc as tf.Tensor2D, !tA, false, ds as tf.Tensor1D),
    };
  },
});

/** Whether op(a)·b and b's column sums fit {@link DENSE_WITH_SUMS}'s vec4 rows, for a `[M, K]` (`[K, M]` transposed) and b `[K, N]`. */
function withSumsFit(a: readonly number[], b: readonly number[], transposeA: boolean): boolean {
  const M = transposeA ? a[1]! : a[0]!;
  return b[0]! % 4 === 0 && b[1]! % 4 === 0 && (!transposeA || M % 4 === 0);
}

/**
 * op(a)·op(b) (+ bias) through the kernel; with `activation`, that of it in the same launch, for a
 * call no gradient records.
 */
export function denseKernel(
  a: tf.Tensor2D, b: tf.Tensor2D, transposeA: boolean, transposeB: boolean, bias?: tf.Tensor1D, activation?: Epilogue,
): tf.Tensor2D {
  const attrs: DenseCall = { transposeA, transposeB, ...(bias ? { hasBias: true } : {}), ...(activation ? { activation } : {}) };
  return tf.engine().runKernel(activation ? DENSE_ACTIVATED : DENSE, bias ? { a, b, bias } : { a, b },
    attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/**
 * Σ_m t[m, :] of t `[M, N]` as 1·t through the kernel, on webgpu: tfjs's sum over rows launches
 * a workgroup per column, slow on SwiftShader. Returns `[N]`.
 *
 * @example
 * ```ts
 * columnSums(tf.tensor2d([[1, 2], [3, 4]])).print();   // [4, 6]
 * ```
 */
export function columnSums(t: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => (tf.engine().runKernel(COLUMN_SUMS, { t }) as tf.Tensor).reshape([-1]));
}

registerGradientOnce({
  kernelName: DENSE,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as tf.Tensor2D[];
    const c = dy as tf.Tensor2D;
    const { transposeA: tA, transposeB: tB } = attrs as unknown as DenseCall;
    // C = op(A)·op(B) + bias: dop(A) = dC·op(B)ᵀ and dop(B) = op(A)ᵀ·dC, each laid out as its
    // operand is stored, and dbias = 1ᵀ·dC
    const da = () => tA ? denseKernel(b!, c, tB, true) : denseKernel(c, b!, false, !tB);
    const db = () => tB ? denseKernel(c, a!, true, tA) : denseKernel(a!, c, !tA, false);
    // with a bias, B's and its gradients are one launch where they fit, made here: tfjs disposes
    // with its backward scope what no input asks for
    if (!(attrs as unknown as DenseCall).hasBias || tB || !withSumsFit(a!.shape, c.shape, !tA)) {
      return { a: da, b: db, bias: () => columnSums(c) };
    }
    const [dB, dBias] = tf.engine().runKernel(DENSE_WITH_SUMS, { a: a!, b: c },
      { transposeA: !tA } as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[];
    return { a: da, b: () => dB!, bias: () => dBias! };
  },
});
