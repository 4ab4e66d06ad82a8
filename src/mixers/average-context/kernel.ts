import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import combineHelpers from '../../../kernels/average-context/combine.wgsl';
import chunkHelpers from '../../../kernels/average-context/chunks.wgsl';
import chunkSumsBody from '../../../kernels/average-context/chunk-sums.wgsl';
import forwardBody from '../../../kernels/average-context/forward.wgsl';
import backwardChunkSumsBody from '../../../kernels/average-context/backward-chunk-sums.wgsl';
import backwardBody from '../../../kernels/average-context/backward.wgsl';
import stepBody from '../../../kernels/average-context/step.wgsl';
import { grid1d, laneVariants, lanesFor, namedInputs, runKernel, type LaneVariants } from '../../webgpu/runtime.js';
import type { Combine } from './reference.js';

/** tfjs kernel names. The forward has two outputs: y and the chunk sums, saved for the backward. */
export const AVERAGE_CONTEXT = 'MixersAverageContext';
export const AVERAGE_CONTEXT_GRAD = 'MixersAverageContextGrad';
export const AVERAGE_CONTEXT_STEP = 'MixersAverageContextStep';

const WG = 256;
/** The kernels' combine: one of AverageContext's, or `'context'` for causalMean alone. */
export type KernelCombine = Combine | 'context';
const COMBINE_CODE: Record<KernelCombine, number> = { max: 0, min: 1, mean: 2, context: 3 };

const KERNELS = {
  chunkSums: laneVariants('AverageContextChunkSums', [grid, combineHelpers, chunkHelpers, chunkSumsBody]),
  forward: laneVariants('AverageContextForward', [grid, combineHelpers, chunkHelpers, forwardBody]),
  backwardChunkSums: laneVariants('AverageContextBackwardChunkSums', [grid, combineHelpers, chunkHelpers, backwardChunkSumsBody]),
  backward: laneVariants('AverageContextBackward', [grid, combineHelpers, chunkHelpers, backwardBody]),
  step: laneVariants('AverageContextStep', [grid, combineHelpers, stepBody]),
};

interface Attrs { combine: KernelCombine; causal: boolean }

/**
 * Steps per chunk: about √T, so that the per-invocation work (its chunk plus one read of each
 * earlier chunk's sum) is O(√T) and B·√T·D invocations run in parallel.
 */
export function chunkLength(T: number): number {
  return Math.ceil(Math.sqrt(T));
}

/** One scan pass: one invocation per (b, chunk, d), or per (b, chunk, group of four channels). */
function runScanPass(
  backend: WebGPUBackend, kernel: LaneVariants, x: tf.TensorInfo, attrs: Attrs,
  inputs: tf.TensorInfo[], outputs: number[][],
): tf.TensorInfo {
  const [B, T, D] = x.shape as [number, number, number];
  const lanes = lanesFor(D);
  const chunk = chunkLength(T);
  const numChunks = Math.ceil(T / chunk);
  const total = B * numChunks * D / lanes;
  return runKernel(backend, kernel[lanes], {
    inputs,
    outputs,
    params: [{ u32: total }, { u32: T }, { u32: D / lanes }, { u32: chunk }, { u32: numChunks }],
    constants: { WG, COMBINE: COMBINE_CODE[attrs.combine], CAUSAL: attrs.causal ? 1 : 0 },
    workgroups: grid1d(total, WG),
  })[0]!;
}

function chunkSumsShape(x: tf.TensorInfo): number[] {
  const [B, T, D] = x.shape;
  return [B, Math.ceil(T / chunkLength(T)), D];
}

tf.registerKernel({
  kernelName: AVERAGE_CONTEXT,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as Attrs;
    const { x } = namedInputs(inputs, 'x');
    const sums = runScanPass(gpu, KERNELS.chunkSums, x, a, [x], [chunkSumsShape(x)]);
    const y = runScanPass(gpu, KERNELS.forward, x, a, [x, sums], [x.shape]);
    return [y, sums];
  },
});

tf.registerKernel({
  kernelName: AVERAGE_CONTEXT_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as Attrs;
    const { x, dy, sums } = namedInputs(inputs, 'x', 'dy', 'sums');
    const rsums = runScanPass(gpu, KERNELS.backwardChunkSums, x, a, [x, dy, sums], [sums.shape]);
    const dx = runScanPass(gpu, KERNELS.backward, x, a, [x, dy, sums, rsums], [x.shape]);
    gpu.disposeData(rsums.dataId);
    return dx;
  },
});

tf.registerKernel({
  kernelName: AVERAGE_CONTEXT_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, previous, sum } = namedInputs(inputs, 'x', 'previous', 'sum');
    const lanes = lanesFor(x.shape[1]!);
    const total = tf.util.sizeFromShape(x.shape) / lanes;
    const a = attrs as unknown as { combine: Combine; position: number };
    return runKernel(backend as WebGPUBackend, KERNELS.step[lanes], {
      inputs: [x, previous, sum],
      outputs: [x.shape, x.shape],
      params: [{ u32: total }, { u32: a.position }],
      constants: { WG, COMBINE: COMBINE_CODE[a.combine] },
      workgroups: grid1d(total, WG),
    });
  },
});

tf.registerGradient({
  kernelName: AVERAGE_CONTEXT,
  inputsToSave: ['x'],
  outputsToSave: [false, true],
  gradFunc: (dy, saved, attrs) => {
    const [x, sums] = saved;
    // only y is differentiated; the chunk sums are an internal output
    const dyY = Array.isArray(dy) ? dy[0] : dy;
    return { x: () => tf.engine().runKernel(AVERAGE_CONTEXT_GRAD, { x, dy: dyY, sums }, attrs) as tf.Tensor };
  },
});
