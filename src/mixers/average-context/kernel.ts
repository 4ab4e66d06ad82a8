import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import combineHelpers from '../../../kernels/average-context/combine.wgsl';
import chunkHelpers from '../../../kernels/average-context/chunks.wgsl';
import chunkSumsBody from '../../../kernels/average-context/chunk-sums.wgsl';
import offsetHelpers from '../../../kernels/average-context/offset.wgsl';
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
  forward: laneVariants('AverageContextForward', [grid, combineHelpers, chunkHelpers, offsetHelpers, forwardBody]),
  backwardChunkSums: laneVariants('AverageContextBackwardChunkSums',
    [grid, combineHelpers, chunkHelpers, offsetHelpers, backwardChunkSumsBody]),
  backward: laneVariants('AverageContextBackward', [grid, combineHelpers, chunkHelpers, offsetHelpers, backwardBody]),
  step: laneVariants('AverageContextStep', [grid, combineHelpers, stepBody]),
};

interface Attrs { combine: KernelCombine; causal: boolean }

/**
 * The scan's grid along T: chunks of `chunk` steps, and blocks of `block` chunks. Both about ∛T,
 * so that an invocation's work (its chunk, the chunks before it in its block, the blocks before
 * its block) is O(∛T) and B·T^⅔·D invocations run in parallel.
 */
export function scanGrid(T: number): { chunk: number; numChunks: number; block: number; numBlocks: number } {
  const chunk = Math.ceil(Math.cbrt(T));
  const numChunks = Math.ceil(T / chunk);
  const block = Math.ceil(Math.sqrt(numChunks));
  return { chunk, numChunks, block, numBlocks: Math.ceil(numChunks / block) };
}

/**
 * One scan pass over `steps` rows of `[B, steps, D]`, cut into `numChunks` chunks of `chunk`:
 * one invocation per (b, chunk, d), or per (b, chunk, group of four channels). The same chunk-sums
 * kernel run over the chunk sums, with the blocks as its chunks, gives the block sums.
 */
function runScanPass(
  backend: WebGPUBackend, kernel: LaneVariants, like: tf.TensorInfo, attrs: Attrs,
  inputs: tf.TensorInfo[], outputs: number[][], blocks = false,
): tf.TensorInfo {
  const [B, T, D] = like.shape as [number, number, number];
  const lanes = lanesFor(D);
  const g = scanGrid(T);
  // over the chunk sums: their rows are the chunks, taken a block at a time
  const [steps, chunk, numChunks] = blocks ? [g.numChunks, g.block, g.numBlocks] : [T, g.chunk, g.numChunks];
  const total = B * numChunks * D / lanes;
  return runKernel(backend, kernel[lanes], {
    inputs,
    outputs,
    params: [{ u32: total }, { u32: steps }, { u32: D / lanes }, { u32: chunk }, { u32: numChunks },
      { u32: g.block }, { u32: g.numBlocks }],
    constants: { WG, COMBINE: COMBINE_CODE[attrs.combine], CAUSAL: attrs.causal ? 1 : 0 },
    workgroups: grid1d(total, WG),
  })[0]!;
}

function sumsShape(x: tf.TensorInfo, of: 'numChunks' | 'numBlocks'): number[] {
  const [B, T, D] = x.shape as [number, number, number];
  return [B, scanGrid(T)[of], D];
}

/** The block sums of chunk sums `sums`, for the passes that need c[t]. */
function blockSumsOf(backend: WebGPUBackend, x: tf.TensorInfo, a: Attrs, sums: tf.TensorInfo): tf.TensorInfo {
  return runScanPass(backend, KERNELS.chunkSums, x, a, [sums], [sumsShape(x, 'numBlocks')], true);
}

tf.registerKernel({
  kernelName: AVERAGE_CONTEXT,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as Attrs;
    const { x } = namedInputs(inputs, 'x');
    const sums = runScanPass(gpu, KERNELS.chunkSums, x, a, [x], [sumsShape(x, 'numChunks')]);
    const blockSums = blockSumsOf(gpu, x, a, sums);
    const y = runScanPass(gpu, KERNELS.forward, x, a, [x, sums, blockSums], [x.shape]);
    gpu.disposeData(blockSums.dataId);
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
    const blockSums = blockSumsOf(gpu, x, a, sums);
    const rsums = runScanPass(gpu, KERNELS.backwardChunkSums, x, a, [x, dy, sums, blockSums], [sums.shape]);
    const rBlockSums = blockSumsOf(gpu, x, a, rsums);
    const dx = runScanPass(gpu, KERNELS.backward, x, a, [x, dy, sums, blockSums, rsums, rBlockSums], [x.shape]);
    for (const t of [blockSums, rsums, rBlockSums]) gpu.disposeData(t.dataId);
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
