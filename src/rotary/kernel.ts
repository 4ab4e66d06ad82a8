import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import sincos from '../../kernels/rotary/sincos.wgsl';
import body from '../../kernels/rotary/rotary.wgsl';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../webgpu/runtime.js';

/**
 * tfjs kernel name. Inputs `x` `[B, T, H, K]`, `theta` `[R/2]` float32 and `positions` int32
 * (`[B, T]` positions, `[B]` per-row offsets or `[1]` one offset); its gradient is the same
 * kernel rotating back, so it is differentiable to any order.
 */
export const ROTARY = 'MixersRotary';

/** The kernel's attributes. */
export interface RotaryAttrs {
  interleaved: boolean;
  /** 1 rotates by p·θ (the op), −1 by −p·θ (its gradient). */
  direction: 1 | -1;
}

const WG = 256;
const KERNEL: KernelSource = { name: 'Rotary', code: [grid, sincos, body].join('\n') };

registerKernelOnce({
  kernelName: ROTARY,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, theta, positions } = namedInputs(inputs, 'x', 'theta', 'positions');
    const a = attrs as unknown as RotaryAttrs;
    const [B, T, H, K] = x.shape as [number, number, number, number];
    const halfR = theta.shape[0]!;
    const width = halfR + K - 2 * halfR;
    // one invocation per token and pair (or copied channel), looping over the heads
    const total = B * T * width;
    // positions [B, T]: a table; [B]: an offset per row; [1]: one offset for every row
    const table = positions.shape.length === 2;
    const perRow = !table && positions.shape[0] !== 1;
    return runKernel(backend as WebGPUBackend, KERNEL, {
      inputs: [x, theta, positions],
      outputs: [x.shape],
      params: [total, width, T, H, K, halfR, table ? T : perRow ? 1 : 0, table ? 1 : 0, table ? 0 : 1].map((u32) => ({ u32 })),
      constants: { WG, INTERLEAVED: a.interleaved ? 1 : 0, DIRECTION: a.direction },
      workgroups: grid1d(total, WG),
    })[0]!;
  },
});

registerGradientOnce({
  kernelName: ROTARY,
  inputsToSave: ['theta', 'positions'],
  gradFunc: (dy, saved, attrs) => {
    const [theta, positions] = saved as tf.Tensor[];
    const a = attrs as unknown as RotaryAttrs;
    // the rotation is orthogonal: dx = R(p·θ)ᵀ·dy = R(−p·θ)·dy
    const back: RotaryAttrs = { interleaved: a.interleaved, direction: a.direction === 1 ? -1 : 1 };
    return {
      x: () => tf.engine().runKernel(ROTARY, { x: dy as tf.Tensor, theta: theta!, positions: positions! },
        back as unknown as tf.NamedAttrMap) as tf.Tensor,
    };
  },
});
