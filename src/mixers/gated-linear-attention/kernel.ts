import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import floatBits from '../../../kernels/common/float-bits.wgsl';
import hooks from '../../../kernels/gated-linear-attention/hooks.wgsl';
import backwardHooks from '../../../kernels/gated-linear-attention/backward-hooks.wgsl';
import seen from '../../../kernels/gated-linear-attention/seen.wgsl';
import { namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import { scanBackward, scanForward, scanKernels, scanSizes, scanStep, sumRows, type ScanLaunch, type ScanSizes } from '../../webgpu/scan.js';

/**
 * tfjs kernel names. The forward's inputs are q, k, g `[B, T, H, K]`, v `[B, T, H, V]` and
 * initialState `[B, H, K, V]` (a one-element stand-in when attrs say there is none); its
 * outputs are the output `[B, T, H, V]`, the final state, and two saved for the backward: the
 * state entering each chunk and each chunk's total log decay. It reads each input's finite part
 * (a NaN or ±∞, or a g > 0, as 0: hooks.wgsl), such an input gets a zero gradient, and the
 * outputs and final states that see one are NaN, as the reference's (seen.wgsl, in place). The
 * step takes q, k, v, g `[B, 1, H, ·]` and the state, and has no gradient.
 */
export const GATED_LINEAR_ATTENTION = 'MixersGatedLinearAttention';
export const GATED_LINEAR_ATTENTION_GRAD = 'MixersGatedLinearAttentionGrad';
export const GATED_LINEAR_ATTENTION_STEP = 'MixersGatedLinearAttentionStep';

// the hooks read their inputs' finite parts (common/float-bits.wgsl's isFinite)
const KERNELS = scanKernels('GatedLinearAttention', [floatBits, hooks].join('\n'), backwardHooks);

/** What the op passes as attrs. */
export interface GlaAttrs {
  scale: number;
  hasInitialState: boolean;
}

function sizesOf(q: tf.TensorInfo, v: tf.TensorInfo): ScanSizes & { B: number; H: number } {
  const [B, T, H, K] = q.shape as [number, number, number, number];
  return { ...scanSizes(B * H, T, v.shape[3]!, K), B, H };
}

/** The backward's packed output: dv, then the per-key parts (see backward-hooks.wgsl). */
function gradLayout(s: ScanSizes) {
  const offParts = s.rows * s.T * s.E;
  return { offParts, size: offParts + 3 * s.rows * s.T * s.N * s.eBlocks };
}

function launchOf(inputs: tf.TensorInfo[], s: ScanSizes & { H: number }, scale: number, offParts = 0): ScanLaunch {
  return { inputs, tail: [{ u32: s.H }, { u32: offParts }, { f32: scale }], constants: {}, nFirst: true };
}

registerKernelOnce({
  kernelName: GATED_LINEAR_ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as GlaAttrs;
    const { q, k, v, g } = namedInputs(inputs, 'q', 'k', 'v', 'g');
    const s = sizesOf(q, v);
    const gpu = backend as WebGPUBackend;
    const outs = scanForward(gpu, KERNELS, s, launchOf([q, k, v, g], s, a.scale),
      a.hasInitialState ? inputs.initialState : undefined, v.shape, [s.B, s.H, s.N, s.E]);
    runSeen(gpu, [q, k, v, g], true, outs.slice(0, 2));
    return outs;
  },
});

registerKernelOnce({
  kernelName: GATED_LINEAR_ATTENTION_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as GlaAttrs;
    const { q, k, v, g, dOut, dState, entering, decays } =
      namedInputs(inputs, 'q', 'k', 'v', 'g', 'dOut', 'dState', 'entering', 'decays');
    const s = sizesOf(q, v);
    const layout = gradLayout(s);
    const [grads, dInitialState] = scanBackward(gpu, KERNELS, s, launchOf([q, k, v, g], s, a.scale, layout.offParts),
      dOut, dState, entering, decays, layout.size);
    const perKey = sumRows(gpu, grads!, layout.offParts, s.eBlocks, [3, ...q.shape]);
    return [grads!, perKey, dInitialState!];
  },
});

registerGradientOnce({
  kernelName: GATED_LINEAR_ATTENTION,
  inputsToSave: ['q', 'k', 'v', 'g'],
  outputsToSave: [false, false, true, true],
  gradFunc: (dys, saved, attrs) => {
    const a = attrs as unknown as GlaAttrs;
    const [dOut, dState] = dys as tf.Tensor[];
    const [q, k, v, g, entering, decays] = saved;
    const [grads, perKey, dInitialState] = tf.engine().runKernel(GATED_LINEAR_ATTENTION_GRAD,
      { q: q!, k: k!, v: v!, g: g!, dOut: dOut!, dState: dState!, entering: entering!, decays: decays! },
      attrs) as tf.Tensor[];
    // the parts are d k, d (scale·q) and d g, each [B, T, H, K]
    const part = (i: number) => tf.squeeze(tf.slice(perKey!, [i, 0, 0, 0, 0], [1, ...q!.shape]), [0]);
    const result: Record<string, () => tf.Tensor> = {
      q: () => tf.mul(part(1), a.scale),
      k: () => part(0),
      v: () => grads!.slice(0, v!.size).reshape(v!.shape),
      g: () => part(2),
    };
    if (a.hasInitialState) result.initialState = () => dInitialState!.clone();
    return result;
  },
});

registerKernelOnce({
  kernelName: GATED_LINEAR_ATTENTION_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v, g, state } = namedInputs(inputs, 'q', 'k', 'v', 'g', 'state');
    const s = sizesOf(q, v);
    const l = launchOf([q, k, v, g], s, (attrs as unknown as GlaAttrs).scale);
    const gpu = backend as WebGPUBackend;
    const outs = scanStep(gpu, KERNELS, s, l, state, v.shape);
    runSeen(gpu, [q, k, v, g], true, outs);
    return outs;
  },
});

const SEEN: KernelSource = { name: 'GatedLinearAttentionSeen', code: seen };
const SEEN_WG = 64;

/**
 * The seen kernel's launch on q, k, v, g `[B, T, H, ·]` (seen.wgsl): with `poisoned`, the output
 * and final state it writes NaN into, in place; otherwise it returns the terms to add, NaN or 0,
 * `[B, T, H, 1]` and `[B, H, 1, 1]`. `gate`: whether a g > 0 counts as bad.
 */
export function runSeen(gpu: WebGPUBackend, inputs: tf.TensorInfo[], gate: boolean, poisoned?: tf.TensorInfo[]): tf.TensorInfo[] {
  const [q, , v] = inputs as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
  const [B, T, H, K] = q.shape as [number, number, number, number];
  return runKernel(gpu, SEEN, {
    inputs,
    outputs: poisoned ? [] : [[B, T, H, 1], [B, H, 1, 1]],
    updates: poisoned,
    params: [T, H, K, v.shape[3]!].map((u32) => ({ u32 })),
    constants: { WG: SEEN_WG, GATE: gate ? 1 : 0, IN_PLACE: poisoned ? 1 : 0 },
    // a workgroup per (head, batch row)
    workgroups: [H, B, 1],
  });
}
