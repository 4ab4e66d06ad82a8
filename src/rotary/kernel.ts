import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import sincos from '../../kernels/rotary/sincos.wgsl';
import body from '../../kernels/rotary/rotary.wgsl';
import { keptTable } from '../webgpu/bind-groups.js';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../webgpu/runtime.js';
import { rotaryFrequencies } from './reference.js';

/**
 * tfjs kernel names. `MixersRotary`: inputs `x` `[B, T, H, K]` and `positions` int32 (`[B, T]`
 * positions, or `[B]` per-row offsets); `MixersRotaryFrom`: input `x` alone, token t at
 * `offset + t` (an attr). Each one's gradient is the same kernel rotating back, so both are
 * differentiable to any order.
 */
export const ROTARY = 'MixersRotary';
export const ROTARY_FROM = 'MixersRotaryFrom';

/** The kernels' attributes. */
export interface RotaryAttrs {
  interleaved: boolean;
  /** 1 rotates by p·θ (the op), −1 by −p·θ (its gradient). */
  direction: 1 | -1;
  /** θ_m = base^(−2m/R). */
  base: number;
  /** R: channels 0..R−1 rotate. */
  rotaryDim: number;
  /** `MixersRotaryFrom`'s first position (0 for `MixersRotary`). */
  offset: number;
}

const WG = 256;
const KERNEL: KernelSource = { name: 'Rotary', code: [grid, sincos, body].join('\n') };

/**
 * One launch. The θ table is kept for (base, R) (`keptTable`) and the offset is a param, so that
 * nothing made on the CPU is uploaded at each call (a decode step rotates every layer's q and k).
 */
function launch(backend: WebGPUBackend, x: tf.TensorInfo, positions: tf.TensorInfo | null, a: RotaryAttrs): tf.TensorInfo {
  const [B, T, H, K] = x.shape as [number, number, number, number];
  const halfR = a.rotaryDim / 2;
  const theta = keptTable(backend, `Rotary|${a.base}|${a.rotaryDim}`, [halfR], () => rotaryFrequencies(a.base, a.rotaryDim));
  const width = halfR + K - 2 * halfR;
  // one invocation per token and pair (or copied channel), looping over the heads
  const total = B * T * width;
  // positions [B, T]: a table; [B]: an offset per row; none: t alone, after the offset
  const table = positions !== null && positions.shape.length === 2;
  const perRow = positions !== null && !table;
  return runKernel(backend, KERNEL, {
    // without positions, x's data stands in for their binding, never read
    inputs: [x, theta, positions ?? x],
    outputs: [x.shape],
    params: [
      ...[total, width, T, H, K, halfR, table ? T : perRow ? 1 : 0, table ? 1 : 0, table ? 0 : 1].map((u32) => ({ u32 })),
      { i32: a.offset },
    ],
    constants: { WG, INTERLEAVED: a.interleaved ? 1 : 0, DIRECTION: a.direction, HAS_POSITIONS: positions ? 1 : 0 },
    workgroups: grid1d(total, WG),
  })[0]!;
}

/** The attrs of the rotation back: dx = R(p·θ)ᵀ·dy = R(−p·θ)·dy, the rotation being orthogonal. */
function backOf(attrs: tf.NamedAttrMap): tf.NamedAttrMap {
  const a = attrs as unknown as RotaryAttrs;
  return { ...a, direction: a.direction === 1 ? -1 : 1 } as unknown as tf.NamedAttrMap;
}

registerKernelOnce({
  kernelName: ROTARY,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, positions } = namedInputs(inputs, 'x', 'positions');
    return launch(backend as WebGPUBackend, x, positions, attrs as unknown as RotaryAttrs);
  },
});

registerKernelOnce({
  kernelName: ROTARY_FROM,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) =>
    launch(backend as WebGPUBackend, namedInputs(inputs, 'x').x, null, attrs as unknown as RotaryAttrs),
});

registerGradientOnce({
  kernelName: ROTARY,
  inputsToSave: ['positions'],
  gradFunc: (dy, saved, attrs) => {
    const [positions] = saved as tf.Tensor[];
    return { x: () => tf.engine().runKernel(ROTARY, { x: dy as tf.Tensor, positions: positions! }, backOf(attrs)) as tf.Tensor };
  },
});

registerGradientOnce({
  kernelName: ROTARY_FROM,
  gradFunc: (dy, _saved, attrs) => ({ x: () => tf.engine().runKernel(ROTARY_FROM, { x: dy as tf.Tensor }, backOf(attrs)) as tf.Tensor }),
});
