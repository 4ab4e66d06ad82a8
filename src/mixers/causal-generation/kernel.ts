import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import reduceHelpers from '../../../kernels/causal-generation/reduce.wgsl';
import forwardBody from '../../../kernels/causal-generation/forward.wgsl';
import backwardBody from '../../../kernels/causal-generation/backward.wgsl';
import stepBody from '../../../kernels/causal-generation/step.wgsl';
import { grid1d, laneVariants, lanesFor, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type LaneVariants } from '../../webgpu/runtime.js';
import type { Reduce } from './reference.js';

/**
 * tfjs kernel names; prefixed so they cannot collide with tfjs's own. The prefill is the forward
 * continuing a decode state, inputs x, previous `[B, D]` and positions int32 `[B]`; it has no
 * gradient.
 */
export const CAUSAL_GENERATION = 'MixersCausalGeneration';
export const CAUSAL_GENERATION_GRAD = 'MixersCausalGenerationGrad';
export const CAUSAL_GENERATION_STEP = 'MixersCausalGenerationStep';
export const CAUSAL_GENERATION_PREFILL = 'MixersCausalGenerationPrefill';

const WG = 256;
const REDUCE_CODE: Record<Reduce, number> = { min: 0, max: 1, mean: 2 };

const FORWARD = laneVariants('CausalGenerationForward', [grid, reduceHelpers, forwardBody]);
const BACKWARD = laneVariants('CausalGenerationBackward', [grid, reduceHelpers, backwardBody]);
const STEP = laneVariants('CausalGenerationStep', [grid, reduceHelpers, stepBody]);

interface Attrs { reduce: Reduce }

/**
 * The forward or backward over x `[B, T, D]`: one invocation per element, or per four adjacent
 * channels (elementwise along D, so a vec4 never straddles two tokens when D is a multiple of 4).
 */
function elementwise(backend: WebGPUBackend, kernel: LaneVariants, inputs: tf.TensorInfo[], reduce: Reduce,
  constants: Record<string, number> = {}) {
  const shape = inputs[0]!.shape;
  const D = shape[shape.length - 1]!;
  const lanes = lanesFor(D);
  const total = tf.util.sizeFromShape(shape) / lanes;
  const rowLen = shape[1]! * D / lanes;
  return runKernel(backend, kernel[lanes], {
    inputs,
    outputs: [shape],
    params: [{ u32: total }, { u32: rowLen }, { u32: D / lanes }],
    constants: { WG, REDUCE: REDUCE_CODE[reduce], ...constants },
    workgroups: grid1d(total, WG),
  })[0]!;
}

const reduceOf = (attrs: tf.NamedAttrMap | undefined) => (attrs as unknown as Attrs).reduce;

registerKernelOnce({
  kernelName: CAUSAL_GENERATION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x } = namedInputs(inputs, 'x');
    // x stands in for the absent state, never read
    return elementwise(backend as WebGPUBackend, FORWARD, [x, x, x], reduceOf(attrs));
  },
});

registerKernelOnce({
  kernelName: CAUSAL_GENERATION_PREFILL,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, previous, positions } = namedInputs(inputs, 'x', 'previous', 'positions');
    return elementwise(backend as WebGPUBackend, FORWARD, [x, previous, positions], reduceOf(attrs), { HAS_START: 1 });
  },
});

registerKernelOnce({
  kernelName: CAUSAL_GENERATION_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, dy } = namedInputs(inputs, 'x', 'dy');
    return elementwise(backend as WebGPUBackend, BACKWARD, [x, dy], reduceOf(attrs));
  },
});

registerKernelOnce({
  kernelName: CAUSAL_GENERATION_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, previous, positions } = namedInputs(inputs, 'x', 'previous', 'positions');
    const D = x.shape[1]!;
    const lanes = lanesFor(D);
    const total = tf.util.sizeFromShape(x.shape) / lanes;
    return runKernel(backend as WebGPUBackend, STEP[lanes], {
      inputs: [x, previous, positions],
      outputs: [x.shape, { shape: positions.shape, dtype: 'int32' }],
      params: [{ u32: total }, { u32: D / lanes }],
      constants: { WG, REDUCE: REDUCE_CODE[reduceOf(attrs)] },
      workgroups: grid1d(total, WG),
    });
  },
});

registerGradientOnce({
  kernelName: CAUSAL_GENERATION,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    return { x: () => tf.engine().runKernel(CAUSAL_GENERATION_GRAD, { x, dy: dy as tf.Tensor }, attrs) as tf.Tensor };
  },
});
