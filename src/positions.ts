import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../kernels/common/grid.wgsl';
import advanceBody from '../kernels/positions/advance.wgsl';
import { grid1d, runKernel, type KernelSource } from './webgpu/runtime.js';

// A decode state's positions (int32 `[B]`, the tokens each row has seen): made from a step's
// argument, and moved one token on after a step.

const ADVANCE: KernelSource = { name: 'AdvancePositions', code: [grid, advanceBody].join('\n') };
const WG = 64;

/**
 * A decode step's `position` (the tokens each row saw before it) as an int32 tensor `[B]`: the
 * tensor given, or the number in every row.
 */
export function positionTensor(position: number | tf.Tensor1D, B: number): tf.Tensor1D {
  return position instanceof tf.Tensor ? position : tf.fill([B], position, 'int32') as tf.Tensor1D;
}

/**
 * Each row's position one token on, int32 `[B]`: the positions a decode step leaves, where no
 * kernel of the step forms them. With `onKernel` (the caller's step runs on the webgpu kernels)
 * one launch of `kernels/positions/advance.wgsl`, where tfjs's add would upload a scalar 1 every
 * step (and, on webgpu, round a position past 2²⁴ through float32); otherwise tfjs's add.
 *
 * @example
 * ```ts
 * advancedPositions(tf.tensor1d([4, 0], 'int32')).print();  // [5, 1]
 * ```
 */
export function advancedPositions(positions: tf.Tensor1D, onKernel = false): tf.Tensor1D {
  const B = positions.shape[0];
  if (!onKernel || B === 0) return tf.tidy(() => tf.add(positions, tf.scalar(1, 'int32')));
  const [next] = runKernel(tf.backend() as WebGPUBackend, ADVANCE, {
    inputs: [positions],
    outputs: [{ shape: [B], dtype: 'int32' }],
    params: [{ u32: B }],
    constants: { WG },
    workgroups: grid1d(B, WG),
  });
  return tf.engine().makeTensorFromTensorInfo(next!) as tf.Tensor1D;
}

/**
 * A step's positions counted from 0 (a negative one as 0), and each one more, the positions the
 * step leaves: what the step kernels form themselves, for the references beside them.
 */
export function countedPositions(positions: tf.Tensor1D): { counted: tf.Tensor1D; next: tf.Tensor1D } {
  const counted = tf.relu(positions);
  return { counted, next: advancedPositions(counted) };
}
