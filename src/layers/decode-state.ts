import * as tf from '@tensorflow/tfjs';
import { copy } from '../cpu-host.js';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import fillPaddingBody from '../../kernels/prefill/fill-padding.wgsl';
import windowAfterBody from '../../kernels/prefill/window-after.wgsl';
import { grid1d, runKernel, type KernelSource } from '../webgpu/runtime.js';
import { argumentError, checkTensor, describe, formatShape, onHostBackend } from '../validate.js';
import { prefillLengths, type PrefillLengths, type PrefillOptions } from './prefill.js';
import { clampInts, gatherRows } from '../tensors.js';

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
  const lengths = clampInts(tensor, 0, T);
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

const FILL_PADDING: KernelSource = { name: 'FillPadding', code: [grid, fillPaddingBody].join('\n') };
const WINDOW_AFTER: KernelSource = { name: 'WindowAfter', code: [grid, windowAfterBody].join('\n') };
const WG = 64;

/**
 * Whether a prefill's helpers below run their kernels: the caller runs on the webgpu kernels
 * (`onKernel`) and no gradient is recorded (the kernels have none; under a tape, tfjs's ops do).
 */
function helperKernels(onKernel: boolean): boolean {
  return onKernel && tf.engine().state.gradientDepth === 0;
}

/** One launch of a prefill helper's kernel, as a tensor. */
function launchHelper<R extends tf.Rank>(kernel: KernelSource, inputs: tf.Tensor[], shape: number[], params: number[],
  constants: Record<string, number> = {}): tf.Tensor<R> {
  const total = tf.util.sizeFromShape(shape);
  const [out] = runKernel(tf.backend() as WebGPUBackend, kernel, {
    inputs, outputs: [shape], params: [total, ...params].map((u32) => ({ u32 })), constants: { WG, ...constants }, workgroups: grid1d(total, WG),
  });
  return tf.engine().makeTensorFromTensorInfo(out!) as tf.Tensor<R>;
}

/**
 * x `[B, T, ...]` with the padded steps (t ≥ `lengths[b]`, lengths int32 `[B]` in 0..T) set to
 * `options.fill` (default 0) by selection, so that nothing in the padding, not even a NaN,
 * reaches a real output or the state. With `options.onKernel` (the caller runs on the webgpu
 * kernels) one launch of `kernels/prefill/fill-padding.wgsl` where no gradient is recorded, where
 * tfjs ops take five; otherwise tfjs's select, differentiable in x.
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[1], [NaN]]]);                                    // [1, 2, 1]
 * fillPadding(x, tf.tensor1d([1], 'int32')).print();                       // [[[1], [0]]]
 * ```
 */
export function fillPadding<R extends tf.Rank>(x: tf.Tensor<R>, lengths: tf.Tensor1D,
  options: { fill?: number; onKernel?: boolean } = {}): tf.Tensor<R> {
  const { fill = 0, onKernel = false } = options;
  const [B, T] = x.shape as number[] as [number, number];
  if (x.size > 0 && helperKernels(onKernel)) {
    return launchHelper<R>(FILL_PADDING, [x, lengths], x.shape, [T, x.size / (B * T)], { FILL: fill });
  }
  return tf.tidy(() => {
    const real = onHostBackend() ? realStepsOnHost(lengths, x.shape)
      : realSteps(lengths, T).reshape([B, T, ...x.shape.slice(2).map(() => 1)]);
    return tf.where(real, x, tf.fill(x.shape, fill)) as tf.Tensor<R>;
  });
}

/**
 * {@link realSteps} at the full shape `[B, T, ...]`, laid out in JS, on a host backend: tf.where
 * broadcasts a smaller condition with Tile, an indexed copy there (10 of 11.5 ms of a fill on
 * wasm at [4, 512, 64]), and cpu's broadcasting arithmetic and wasm's comparisons are indexed too.
 */
function realStepsOnHost(lengths: tf.Tensor1D, shape: number[]): tf.Tensor {
  const [B, T] = shape as [number, number];
  const inner = tf.util.sizeFromShape(shape.slice(2));
  const n = lengths.dataSync();
  const real = new Uint8Array(B * T * inner);
  for (let b = 0; b < B; b++) real.fill(1, b * T * inner, (b * T + Math.min(Math.max(n[b]!, 0), T)) * inner);
  return tf.tensor(real, shape, 'bool');
}

/**
 * The last H steps of each row of `history ‖ x` after `lengths[b]` of x's steps: what a window of
 * H steps holds once row b has consumed its real tokens, a per-row gather of rows
 * `lengths[b] .. lengths[b] + H − 1` of the concatenation (H = `history.shape[1]`). x's steps may
 * be wider than the window's: it takes their first D numbers. With `onKernel` (the caller runs
 * on the webgpu kernels) one launch of `kernels/prefill/window-after.wgsl` where no gradient is
 * recorded, where tfjs ops take four; otherwise tfjs ops, differentiable.
 *
 * @param history `[B, H, D]`: the window before x.
 * @param x `[B, T, W]`, W ≥ D.
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
export function windowAfter(history: tf.Tensor3D, x: tf.Tensor3D, lengths: tf.Tensor1D, onKernel = false): tf.Tensor3D {
  const [B, H, D] = history.shape;
  const [, T, W] = x.shape;
  if (H === 0) return history.clone();
  if (B > 0 && D > 0 && helperKernels(onKernel)) return launchHelper<tf.Rank.R3>(WINDOW_AFTER, [history, x, lengths], history.shape, [H, D, T, W]);
  return tf.tidy(() => {
    const rows = tf.add(lengths.expandDims(1), tf.range(0, H, 1, 'int32').expandDims(0));   // [B, H]
    const steps = W === D ? x : copy.slice(x, [0, 0, 0], [B, T, D]);
    return gatherRows(copy.concat([history, steps], 1), rows as tf.Tensor2D);
  });
}
