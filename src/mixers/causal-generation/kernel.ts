import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import reduceHelpers from '../../../kernels/causal-generation/reduce.wgsl';
import forwardBody from '../../../kernels/causal-generation/forward.wgsl';
import backwardBody from '../../../kernels/causal-generation/backward.wgsl';
import stepBody from '../../../kernels/causal-generation/step.wgsl';
import { grid1d, namedInputs, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import type { Reduce } from './reference.js';

/** tfjs kernel names; prefixed so they cannot collide with tfjs's own. */
export const CAUSAL_GENERATION = 'MixersCausalGeneration';
export const CAUSAL_GENERATION_GRAD = 'MixersCausalGenerationGrad';
export const CAUSAL_GENERATION_STEP = 'MixersCausalGenerationStep';

const WG = 256;
const REDUCE_CODE: Record<Reduce, number> = { min: 0, max: 1, mean: 2 };

const source = (name: string, body: string): KernelSource =>
  ({ name, code: [grid, reduceHelpers, body].join('\n') });
const FORWARD = source('CausalGenerationForward', forwardBody);
const BACKWARD = source('CausalGenerationBackward', backwardBody);
const STEP = source('CausalGenerationStep', stepBody);

interface Attrs { reduce: Reduce }

function elementwise(backend: WebGPUBackend, kernel: KernelSource, inputs: tf.TensorInfo[], reduce: Reduce) {
  const [B, T, D] = inputs[0]!.shape as [number, number, number];
  const total = B * T * D;
  return runKernel(backend, kernel, {
    inputs,
    outputs: [inputs[0]!.shape],
    params: [{ u32: total }, { u32: T * D }, { u32: D }],
    constants: { WG, REDUCE: REDUCE_CODE[reduce] },
    workgroups: grid1d(total, WG),
  })[0];
}

tf.registerKernel({
  kernelName: CAUSAL_GENERATION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) =>
    elementwise(backend as WebGPUBackend, FORWARD, [namedInputs(inputs, 'x').x], (attrs as unknown as Attrs).reduce),
});

tf.registerKernel({
  kernelName: CAUSAL_GENERATION_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, dy } = namedInputs(inputs, 'x', 'dy');
    return elementwise(backend as WebGPUBackend, BACKWARD, [x, dy], (attrs as unknown as Attrs).reduce);
  },
});

tf.registerKernel({
  kernelName: CAUSAL_GENERATION_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, previous } = namedInputs(inputs, 'x', 'previous');
    const total = tf.util.sizeFromShape(x.shape);
    return runKernel(backend as WebGPUBackend, STEP, {
      inputs: [x, previous],
      outputs: [x.shape],
      params: [{ u32: total }],
      constants: { WG, REDUCE: REDUCE_CODE[(attrs as unknown as Attrs).reduce] },
      workgroups: grid1d(total, WG),
    })[0];
  },
});

tf.registerGradient({
  kernelName: CAUSAL_GENERATION,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    return { x: () => tf.engine().runKernel(CAUSAL_GENERATION_GRAD, { x, dy: dy as tf.Tensor }, attrs) as tf.Tensor };
  },
});
