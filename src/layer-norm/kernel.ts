import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import forwardBody from '../../kernels/layer-norm/forward.wgsl';
import forwardX from '../../kernels/layer-norm/forward-x.wgsl';
import forwardResidual from '../../kernels/layer-norm/forward-residual.wgsl';
import forwardGated from '../../kernels/layer-norm/forward-gated.wgsl';
import rowsBody from '../../kernels/layer-norm/backward-rows.wgsl';
import gammaBody from '../../kernels/layer-norm/backward-gamma.wgsl';
import gateBody from '../../kernels/layer-norm/backward-gate.wgsl';
import { grid1d, laneVariants, lanesFor, namedInputs, registerGradientOnce, registerKernelOnce, runKernel } from '../webgpu/runtime.js';
import { rowKernels, rowLaunch } from '../webgpu/subgroups.js';

/**
 * tfjs kernel name. Inputs `x` `[M, D]`, `gamma` and `beta` `[D]`; outputs y `[M, D]` and each
 * row's (mean, rstd) `[M, 2]`, which the gradient reads. Differentiable once. With attrs
 * `centred` false it is RMSNorm: mean 0, and no beta.
 */
export const LAYER_NORM = 'MixersLayerNorm';
/**
 * tfjs kernel name. Inputs `x` and `residual` `[M, D]`, `gamma` and `beta` `[D]`; outputs y, the
 * layer norm of x + residual `[M, D]`, each row's (mean, rstd) `[M, 2]` and the sum x + residual
 * `[M, D]`, in one launch. No gradient: `ops.addLayerNorm` runs it only where none is recorded.
 */
export const ADD_LAYER_NORM = 'MixersAddLayerNorm';
/**
 * tfjs kernel name. Inputs `x` and `gate` `[M, D]` and `gamma` `[D]`; outputs
 * y = RMSNorm(x)·swish(gate) `[M, D]` and each row's (0, rstd) `[M, 2]`, in one launch.
 * Differentiable once: three launches (`backward-gate.wgsl`, then the norm's two).
 */
export const RMS_NORM_SWISH_GATE = 'MixersRmsNormSwishGate';
/**
 * The gradient's kernels, dx, and dgamma with dbeta (one pass down the rows), and the gate's: the
 * norm's output gradient and the gate's from the gated output's.
 */
const LAYER_NORM_GRAD_X = 'MixersLayerNormGradX';
const LAYER_NORM_GRAD_GAMMA = 'MixersLayerNormGradGamma';
const RMS_NORM_SWISH_GATE_GRAD = 'MixersRmsNormSwishGateGrad';

/** The kernel's attributes. */
export interface LayerNormAttrs {
  epsilon: number;
  /** false: RMSNorm, y = x/√(mean(x²) + ε)·gamma. */
  centred: boolean;
}

const centredConstant = (attrs: unknown) => ({ CENTRED: (attrs as LayerNormAttrs).centred ? 1 : 0 });

const WG = 64;
const FORWARD = rowKernels('LayerNormForward', [forwardBody, forwardX].join('\n'));
const ADD_FORWARD = rowKernels('AddLayerNormForward', [forwardBody, forwardResidual].join('\n'));
const GATED_FORWARD = rowKernels('RmsNormSwishGateForward', [forwardBody, forwardGated].join('\n'));
const ROWS = rowKernels('LayerNormBackwardRows', rowsBody);
const GAMMA = laneVariants('LayerNormBackwardGamma', [grid, gammaBody]);
const GATE_GRAD = laneVariants('RmsNormSwishGateBackward', [grid, gateBody]);

/**
 * The forward's launch: of x; with a residual, of x + residual, whose sum is a third output; with
 * a gate, y·swish(gate).
 */
function forward(gpu: WebGPUBackend, x: tf.TensorInfo, extra: { residual?: tf.TensorInfo; gate?: tf.TensorInfo },
  gamma: tf.TensorInfo, beta: tf.TensorInfo, attrs: unknown): tf.TensorInfo[] {
  const [M, D] = x.shape as [number, number];
  const lanes = lanesFor(D);
  const { residual, gate } = extra;
  const kernels = residual ? ADD_FORWARD : gate ? GATED_FORWARD : FORWARD;
  const { kernel, constants, workgroups } = rowLaunch(gpu, kernels, lanes, M, WG);
  return runKernel(gpu, kernel, {
    inputs: residual ? [x, residual, gamma, beta] : gate ? [x, gamma, beta, gate] : [x, gamma, beta],
    outputs: residual ? [[M, D], [M, 2], [M, D]] : [[M, D], [M, 2]],
    params: [{ u32: M }, { u32: D / lanes }, { f32: D }, { f32: (attrs as LayerNormAttrs).epsilon }],
    constants: { ...constants, ...centredConstant(attrs) },
    workgroups,
  });
}

// every forward: ADD_LAYER_NORM's with its residual, RMS_NORM_SWISH_GATE's with its gate
for (const kernelName of [LAYER_NORM, ADD_LAYER_NORM, RMS_NORM_SWISH_GATE]) {
  registerKernelOnce({
    kernelName,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, gamma } = namedInputs(inputs, 'x', 'gamma');
      // RMSNorm's calls pass no beta, which the kernel then never reads: gamma stands in for it
      // (read-only bindings may alias), where a tensor of zeros would be an upload a call
      return forward(backend as WebGPUBackend, x, { residual: inputs.residual, gate: inputs.gate }, gamma, inputs.beta ?? gamma, attrs);
    },
  });
}

registerKernelOnce({
  kernelName: LAYER_NORM_GRAD_X,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, gamma, moments, dy } = namedInputs(inputs, 'x', 'gamma', 'moments', 'dy');
    const [M, D] = x.shape as [number, number];
    const lanes = lanesFor(D);
    const gpu = backend as WebGPUBackend;
    const { kernel, constants, workgroups } = rowLaunch(gpu, ROWS, lanes, M, WG);
    return runKernel(gpu, kernel, {
      inputs: [x, gamma, moments, dy],
      outputs: [[M, D]],
      params: [{ u32: M }, { u32: D / lanes }, { f32: D }],
      constants: { ...constants, ...centredConstant(attrs) },
      workgroups,
    })[0]!;
  },
});

registerKernelOnce({
  kernelName: LAYER_NORM_GRAD_GAMMA,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, moments, dy } = namedInputs(inputs, 'x', 'moments', 'dy');
    const [M, D] = x.shape as [number, number];
    const lanes = lanesFor(D);
    const gpu = backend as WebGPUBackend;
    const { centred } = attrs as unknown as LayerNormAttrs;
    const [dGamma, dBeta] = runKernel(gpu, GAMMA[lanes], {
      inputs: [x, moments, dy],
      outputs: [[D], [D]],
      params: [{ u32: M }, { u32: D / lanes }],
      constants: { WG, ...centredConstant(attrs) },
      workgroups: grid1d(D / lanes, WG),
    });
    // RMSNorm has no beta: its binding, never written, is given back
    if (!centred) gpu.disposeData(dBeta!.dataId);
    return centred ? [dGamma!, dBeta!] : [dGamma!];
  },
});

registerKernelOnce({
  kernelName: RMS_NORM_SWISH_GATE_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { x, gamma, moments, gate, dy } = namedInputs(inputs, 'x', 'gamma', 'moments', 'gate', 'dy');
    const [M, D] = x.shape as [number, number];
    const lanes = lanesFor(D);
    const total = M * D / lanes;
    return runKernel(backend as WebGPUBackend, GATE_GRAD[lanes], {
      inputs: [x, gamma, moments, gate, dy],
      outputs: [[M, D], [M, D]],
      params: [{ u32: total }, { u32: D / lanes }],
      constants: { WG },
      workgroups: grid1d(total, WG),
    });
  },
});

/**
 * x's, gamma's and (centred) beta's gradients from the norm's output gradient `dn`, on the saved x
 * and moments. gamma's and beta's are made here, in one launch, when the gradient function is
 * called: tfjs disposes with its backward scope what no input asks for.
 */
function normGrads(x: tf.Tensor, gamma: tf.Tensor, moments: tf.Tensor, dn: tf.Tensor, attrs: tf.NamedAttrMap) {
  const [dGamma, dBeta] = tf.engine().runKernel(LAYER_NORM_GRAD_GAMMA, { x, moments, dy: dn }, attrs) as unknown as tf.Tensor[];
  return {
    x: () => tf.engine().runKernel(LAYER_NORM_GRAD_X, { x, gamma, moments, dy: dn }, attrs) as tf.Tensor,
    gamma: () => dGamma!,
    // RMSNorm's beta is a stand-in off the gradient's path: no gradient is asked of it
    ...(dBeta ? { beta: () => dBeta } : {}),
  };
}

registerGradientOnce({
  kernelName: RMS_NORM_SWISH_GATE,
  inputsToSave: ['x', 'gamma', 'gate'],
  outputsToSave: [false, true],
  gradFunc: (dys, saved, attrs) => {
    const [x, gamma, gate, moments] = saved as tf.Tensor[];
    const dy = Array.isArray(dys) ? dys[0]! : dys;
    // made here: tfjs runs each input's gradient below in a scope of its own
    const [dn, dGate] = tf.engine().runKernel(RMS_NORM_SWISH_GATE_GRAD, { x: x!, gamma: gamma!, moments: moments!, gate: gate!, dy }) as tf.Tensor[];
    return { ...normGrads(x!, gamma!, moments!, dn!, attrs), gate: () => dGate! };
  },
});

registerGradientOnce({
  kernelName: LAYER_NORM,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [false, true],
  gradFunc: (dys, saved, attrs) => {
    const [x, gamma, moments] = saved as tf.Tensor[];
    // only y is the op's output: the moments' gradient is never asked for
    const dy = Array.isArray(dys) ? dys[0]! : dys;
    return normGrads(x!, gamma!, moments!, dy, attrs);
  },
});
