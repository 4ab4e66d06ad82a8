import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import floatBits from '../../../kernels/common/float-bits.wgsl';
import grid from '../../../kernels/common/grid.wgsl';
import convInputs from '../../../kernels/selective-ssm/conv-inputs.wgsl';
import convGradient from '../../../kernels/selective-ssm/conv-gradient.wgsl';
import convBody from '../../../kernels/selective-ssm/conv.wgsl';
import convBackwardBody from '../../../kernels/selective-ssm/conv-backward.wgsl';
import convProjectedBody from '../../../kernels/selective-ssm/conv-projected.wgsl';
import convProjectedBackwardBody from '../../../kernels/selective-ssm/conv-projected-backward.wgsl';
import convWeightsBackwardBody from '../../../kernels/selective-ssm/conv-weights-backward.wgsl';
import { copy } from '../../cpu-host.js';
import { useKernel, type Implementation } from '../../validate.js';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import { advancedPositions } from '../../positions.js';
import { detached } from '../../tensors.js';

/**
 * The T outputs of a depthwise convolution of `padded` `[B, T + dConv − 1, E]` with `taps`
 * `[dConv, E]`, plus `bias` `[E]`. With `whole` (by default where the backend has tfjs's
 * depthwise-convolution gradients: webgpu, webgl, cpu), one `depthwiseConv2d`; otherwise (wasm
 * has its forward kernel only) the taps as dConv shifted slices, each op with a gradient: 4·dConv
 * + 1 launches where the convolution is one, and a launch costs tens of µs of tfjs's CPU time on
 * a GPU backend.
 *
 * @example
 * ```ts
 * causalConv(tf.ones([1, 4, 2]), tf.ones([3, 2]), tf.zeros([2])).print();  // [[[3, 3], [3, 3]]]
 * ```
 */
export function causalConv(padded: tf.Tensor3D, taps: tf.Tensor2D, bias: tf.Tensor, whole = hasDepthwiseGradients()): tf.Tensor3D {
  const [B, padLength, E] = padded.shape;
  const K = taps.shape[0];
  const T = padLength - K + 1;
  if (whole) {
    // [B, 1, T + K − 1, E] by a [1, K] filter per channel
    const image = padded.expandDims(1) as tf.Tensor4D;
    const out = tf.depthwiseConv2d(image, taps.reshape([1, K, E, 1]) as tf.Tensor4D, 1, 'valid');
    return tf.add(out.reshape([B, T, E]), bias) as tf.Tensor3D;
  }
  let conv: tf.Tensor = bias;
  const each = tf.unstack(taps);
  for (let k = 0; k < K; k++) conv = tf.add(conv, tf.mul(copy.slice(padded, [0, k, 0], [B, T, E]), each[k]!));
  return conv as tf.Tensor3D;
}

function hasDepthwiseGradients(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel('DepthwiseConv2dNativeBackpropInput', backend) !== undefined &&
    tf.getKernel('DepthwiseConv2dNativeBackpropFilter', backend) !== undefined;
}

/** What {@link SSM_CONV} takes as attrs. */
interface ConvAttrs {
  hasWindow: boolean;
  nextWindow: boolean;
  advance: boolean;
}

/**
 * tfjs kernel name, webgpu only (`kernels/selective-ssm/conv.wgsl`). Inputs x `[B, T, E]` (or the
 * in projection's `[B, T, 2E]`, x its first half: no gradient then), the window of the dConv − 1
 * tokens before it `[B, dConv − 1, E]` (a stand-in where attrs say there is none: zeros), taps
 * `[dConv, E]`, bias `[E]` and a decode state's positions int32 `[B]` (a stand-in without attrs
 * `advance`); outputs u = silu(the causal convolution) `[B, T, E]`, with attrs `nextWindow` the
 * window after x `[B, dConv − 1, E]`, and with `advance` the positions plus one; those two have no
 * gradient. dConv ≥ 2.
 */
const SSM_CONV = 'MixersSelectiveSSMConv';
const CONV: KernelSource = { name: 'SelectiveSSMConv', code: [grid, floatBits, convInputs, convBody].join('\n') };
const CONV_WG = 64;

registerKernelOnce({
  kernelName: SSM_CONV,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as ConvAttrs;
    const { x, window, taps, bias, positions } = namedInputs(inputs, 'x', 'window', 'taps', 'bias', 'positions');
    const [B, T, width] = x.shape as [number, number, number];
    const [K, E] = taps.shape as [number, number];
    const gpu = backend as WebGPUBackend;
    const [u, next, after] = runKernel(gpu, CONV, {
      inputs: [x, window, taps, bias, positions],
      outputs: [[B, T, E], a.nextWindow ? [B, K - 1, E] : [1], { shape: a.advance ? [B] : [1], dtype: 'int32' }],
      params: [B, T, E, K].map((u32) => ({ u32 })),
      constants: {
        WG: CONV_WG, HAS_WINDOW: a.hasWindow ? 1 : 0, NEXT_WINDOW: a.nextWindow ? 1 : 0, ADVANCE: a.advance ? 1 : 0,
        X_IN_PROJECTION: width === E ? 0 : 1,
      },
      workgroups: grid1d(B * T * E + (a.nextWindow ? B * (K - 1) * E : 0), CONV_WG),
    });
    // a stand-in is unwritten, and bound to the pending command buffer: tfjs frees it once that is submitted
    const kept = [u!];
    for (const [wanted, out] of [[a.nextWindow, next!], [a.advance, after!]] as const) {
      if (wanted) kept.push(out);
      else gpu.disposeData(out.dataId);
    }
    return kept;
  },
});

/**
 * tfjs kernel name, webgpu only (`kernels/selective-ssm/conv-backward.wgsl`): {@link SSM_CONV}'s
 * inputs and du `[B, T, E]`; outputs dx `[B, T, E]`, dWindow `[B, dConv − 1, E]` and
 * dPre = du·silu'(pre) `[B, T, E]`, from which {@link SSM_CONV_WEIGHTS_GRAD} takes the taps' and
 * the bias's gradients.
 */
const SSM_CONV_GRAD = 'MixersSelectiveSSMConvGrad';
const CONV_GRAD: KernelSource = {
  name: 'SelectiveSSMConvBackward', code: [grid, floatBits, convInputs, convGradient, convBackwardBody].join('\n'),
};

registerKernelOnce({
  kernelName: SSM_CONV_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, window, taps, bias, du } = namedInputs(inputs, 'x', 'window', 'taps', 'bias', 'du');
    const [B, T, E] = x.shape as [number, number, number];
    const K = taps.shape[0]!;
    return runKernel(backend as WebGPUBackend, CONV_GRAD, {
      inputs: [x, window, taps, bias, du],
      outputs: [x.shape, [B, K - 1, E], x.shape],
      params: [B, T, E, K].map((u32) => ({ u32 })),
      constants: { WG: CONV_WG, HAS_WINDOW: (attrs as unknown as ConvAttrs).hasWindow ? 1 : 0 },
      workgroups: grid1d(B * (T + K - 1) * E, CONV_WG),
    });
  },
});

/**
 * tfjs kernel name, webgpu only (`kernels/selective-ssm/conv-weights-backward.wgsl`): from the
 * convolution's x (or the in projection, attrs `projected`), window (a stand-in without attrs
 * `hasWindow`), taps and bias, and dPre `[B, T, E]`, the taps' gradient `[dConv, E]` and the
 * bias's `[E]`, in one launch where tfjs took three.
 */
const SSM_CONV_WEIGHTS_GRAD = 'MixersSelectiveSSMConvWeightsGrad';
const CONV_WEIGHTS_GRAD: KernelSource = {
  name: 'SelectiveSSMConvWeightsBackward', code: [floatBits, convInputs, convWeightsBackwardBody].join('\n'),
};
// channels a workgroup takes (CH in the WGSL)
const WEIGHTS_CHANNELS = 16;

registerKernelOnce({
  kernelName: SSM_CONV_WEIGHTS_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as { hasWindow: boolean; projected: boolean };
    const { x, window, taps, bias, dPre } = namedInputs(inputs, 'x', 'window', 'taps', 'bias', 'dPre');
    const [B, T, E] = dPre.shape as [number, number, number];
    const K = taps.shape[0]!;
    return runKernel(backend as WebGPUBackend, CONV_WEIGHTS_GRAD, {
      inputs: [x, window, taps, bias, dPre],
      outputs: [[K, E], [E]],
      params: [B, T, E, K].map((u32) => ({ u32 })),
      constants: { HAS_WINDOW: a.hasWindow ? 1 : 0, X_IN_PROJECTION: a.projected ? 1 : 0 },
      workgroups: [Math.ceil(E / WEIGHTS_CHANNELS), K + 1, 1],
    });
  },
});

/** The taps' and the bias's gradients from dPre, as the gradient functions below hand them to tfjs. */
function weightGrads(x: tf.Tensor, window: tf.Tensor, taps: tf.Tensor, bias: tf.Tensor, dPre: tf.Tensor,
  hasWindow: boolean, projected: boolean): { taps: () => tf.Tensor; bias: () => tf.Tensor } {
  const [dTaps, dBias] = tf.engine().runKernel(SSM_CONV_WEIGHTS_GRAD, { x, window, taps, bias, dPre },
    { hasWindow, projected } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { taps: () => dTaps!, bias: () => dBias! };
}

registerGradientOnce({
  kernelName: SSM_CONV,
  inputsToSave: ['x', 'window', 'taps', 'bias'],
  gradFunc: (dys, saved, attrs) => {
    const { hasWindow } = attrs as unknown as ConvAttrs;
    const du = Array.isArray(dys) ? dys[0]! : dys;
    const [x, window, taps, bias] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor2D, tf.Tensor1D];
    if (taps.shape[1] !== x.shape[2]) throw new Error('tfjs-mixers: SelectiveSSM\'s convolution of the in projection\'s first half has no gradient; convolvedProjection has.');
    const [dx, dWindow, dPre] = tf.engine().runKernel(SSM_CONV_GRAD, { x, window, taps, bias, du }, attrs) as tf.Tensor[];
    const result: Record<string, () => tf.Tensor> = { x: () => dx!, ...weightGrads(x, window, taps, bias, dPre!, hasWindow, false) };
    // an absent window is a stand-in off the gradient's path: no gradient is asked of it
    if (hasWindow) result.window = () => dWindow!;
    return result;
  },
});

/**
 * tfjs kernel names, webgpu only (`kernels/selective-ssm/conv-projected.wgsl` and its backward):
 * the convolution of the in projection's first half under a gradient tape. Inputs the in
 * projection `[B, T, 2E]`, taps `[dConv, E]` and bias `[E]`; outputs u `[B, T, E]` and z, the
 * projection's second half. The gradient's inputs are those, du and dz; its outputs the in
 * projection's gradient and dPre. dConv ≥ 2.
 */
const SSM_CONV_PROJECTED = 'MixersSelectiveSSMConvProjected';
const SSM_CONV_PROJECTED_GRAD = 'MixersSelectiveSSMConvProjectedGrad';
const CONV_PROJECTED: KernelSource = { name: 'SelectiveSSMConvProjected', code: [grid, floatBits, convInputs, convProjectedBody].join('\n') };
const CONV_PROJECTED_GRAD: KernelSource = {
  name: 'SelectiveSSMConvProjectedBackward', code: [grid, floatBits, convInputs, convGradient, convProjectedBackwardBody].join('\n'),
};

registerKernelOnce({
  kernelName: SSM_CONV_PROJECTED,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { projected, taps, bias } = namedInputs(inputs, 'projected', 'taps', 'bias');
    const [B, T] = projected.shape as [number, number, number];
    const [K, E] = taps.shape as [number, number];
    // the bias stands in for the window the kernel never reads (no tensor made for it)
    return runKernel(backend as WebGPUBackend, CONV_PROJECTED, {
      inputs: [projected, bias, taps, bias],
      outputs: [[B, T, E], [B, T, E]],
      params: [B, T, E, K].map((u32) => ({ u32 })),
      constants: { WG: CONV_WG, X_IN_PROJECTION: 1 },
      workgroups: grid1d(B * T * E, CONV_WG),
    });
  },
});

registerKernelOnce({
  kernelName: SSM_CONV_PROJECTED_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { projected, taps, bias, du, dz } = namedInputs(inputs, 'projected', 'taps', 'bias', 'du', 'dz');
    const [B, T, E] = du.shape as [number, number, number];
    const K = taps.shape[0]!;
    return runKernel(backend as WebGPUBackend, CONV_PROJECTED_GRAD, {
      inputs: [projected, bias, taps, bias, du, dz],
      outputs: [projected.shape, du.shape],
      params: [B, T, E, K].map((u32) => ({ u32 })),
      constants: { WG: CONV_WG, X_IN_PROJECTION: 1 },
      workgroups: grid1d(B * T * 2 * E, CONV_WG),
    });
  },
});

registerGradientOnce({
  kernelName: SSM_CONV_PROJECTED,
  inputsToSave: ['projected', 'taps', 'bias'],
  gradFunc: (dys, saved) => {
    const [du, dz] = dys as tf.Tensor[];
    const [projected, taps, bias] = saved as [tf.Tensor3D, tf.Tensor2D, tf.Tensor1D];
    const [dProjected, dPre] = tf.engine().runKernel(SSM_CONV_PROJECTED_GRAD, { projected, taps, bias, du: du!, dz: dz! }) as tf.Tensor[];
    // the bias stands in for the absent window, as in the forward
    return { projected: () => dProjected!, ...weightGrads(projected, bias, taps, bias, dPre!, false, true) };
  },
});

/** The window (zeros without one) followed by x: `[B, dConv − 1 + T, E]`. */
function joined(x: tf.Tensor3D, window: tf.Tensor3D | undefined, K: number): tf.Tensor3D {
  if (K === 1) return x;
  return window ? copy.concat([window, x], 1) : copy.pad(x, [[0, 0], [K - 1, 0], [0, 0]]);
}

/**
 * SelectiveSSM's u = silu(causal depthwise convolution of x `[B, T, E]` with `taps` `[dConv, E]`
 * and `bias` `[E]`), the window `[B, dConv − 1, E]` (a decode step's or a prefill's state)
 * before x, zeros without one; with `next`, also the window after x, the last dConv − 1 of the
 * window followed by x; with `positions` (a decode state's, int32 `[B]`), also each plus one. On
 * webgpu one launch (with dConv ≥ 2), elsewhere tfjs ops ({@link causalConv}); differentiable in
 * x, the window, the taps and the bias. On that launch x may also be the in projection's
 * `[B, T, 2E]`, read in its first half where it lies (a decode step's; no gradient then).
 */
export function convolved(x: tf.Tensor3D, taps: tf.Tensor2D, bias: tf.Tensor1D, implementation: Implementation,
  window?: tf.Tensor3D, next = false, positions?: tf.Tensor1D): { u: tf.Tensor3D; next?: tf.Tensor3D; positions?: tf.Tensor1D } {
  const K = taps.shape[0];
  if (K >= 2 && useKernel('selectiveSSM', implementation)) {
    const attrs: ConvAttrs = { hasWindow: window !== undefined, nextWindow: next, advance: positions !== undefined };
    // an absent window or positions is a stand-in never read: x's data off the gradient's path,
    // where a tensor made on the CPU would be uploaded at every call
    const outs = tf.tidy(() => {
      const standIn = detached(x);
      return tf.engine().runKernel(SSM_CONV, { x, window: window ?? standIn, taps, bias, positions: positions ?? standIn },
        attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    });
    // (the array is the gradient tape's record of the outputs: read, never changed)
    const [u, ...more] = outs as [tf.Tensor3D, ...tf.Tensor[]];
    return { u, next: next ? more[0] as tf.Tensor3D : undefined, positions: more[next ? 1 : 0] as tf.Tensor1D | undefined };
  }
  return tf.tidy(() => {
    const padded = joined(x.shape[2] === taps.shape[1] ? x : copy.slice(x, [0, 0, 0], [-1, -1, taps.shape[1]]), window, K);
    const conv = causalConv(padded, taps, bias);
    const [B, length, E] = padded.shape;
    return {
      u: tf.mul(conv, tf.sigmoid(conv)) as tf.Tensor3D,
      ...(next ? { next: copy.slice(padded, [0, length - (K - 1), 0], [B, K - 1, E]) } : {}),
      ...(positions ? { positions: advancedPositions(positions) } : {}),
    };
  });
}

/**
 * SelectiveSSM's convolution of the in projection `[B, T, 2E]` under a gradient tape: u =
 * silu(the causal convolution of its first half x with `taps` `[dConv, E]` and `bias` `[E]`,
 * zeros before it), and z, its second half, each `[B, T, E]`. On webgpu (dConv ≥ 2) one launch,
 * and its gradient in the projection, the taps and the bias two, where slicing x and z out and
 * tfjs's gradients of the taps and the bias took seven; elsewhere a split and {@link convolved}.
 *
 * @example
 * ```ts
 * const projected = tf.randomNormal([2, 16, 2 * 8]) as tf.Tensor3D;      // [B, T, 2E], E = 8
 * const [grad] = tf.grads((p: tf.Tensor) => {
 *   const { u, z } = convolvedProjection(p as tf.Tensor3D, tf.ones([4, 8]), tf.zeros([8]), 'auto');
 *   return tf.sum(tf.mul(u, z));                                          // u, z [2, 16, 8]
 * })([projected]);                                                        // [2, 16, 16]
 * ```
 */
export function convolvedProjection(projected: tf.Tensor3D, taps: tf.Tensor2D, bias: tf.Tensor1D,
  implementation: Implementation): { u: tf.Tensor3D; z: tf.Tensor3D } {
  if (taps.shape[0] >= 2 && useKernel('selectiveSSM', implementation)) {
    const [u, z] = tf.engine().runKernel(SSM_CONV_PROJECTED, { projected, taps, bias }) as tf.Tensor3D[];
    return { u: u!, z: z! };
  }
  return tf.tidy(() => {
    const [x, z] = copy.split(projected, 2, -1) as [tf.Tensor3D, tf.Tensor3D];
    return { u: convolved(x, taps, bias, implementation).u, z };
  });
}
