import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import hooks from '../../../kernels/gated-linear-attention/hooks.wgsl';
import backwardHooks from '../../../kernels/gated-linear-attention/backward-hooks.wgsl';
import seen from '../../../kernels/gated-linear-attention/seen.wgsl';
import { zeroWhereNotFinite } from '../../tensors.js';
import { namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import { scanBackward, scanForward, scanKernels, scanSizes, scanStep, sumRows, type ScanLaunch, type ScanSizes } from '../../webgpu/scan.js';

/**
 * tfjs kernel names. The forward's inputs are q, k, g `[B, T, H, K]`, v `[B, T, H, V]` and
 * initialState `[B, H, K, V]` (a one-element stand-in when attrs say there is none); its
 * outputs are the output `[B, T, H, V]`, the final state, and two saved for the backward: the
 * state entering each chunk and each chunk's total log decay. It reads each input's finite part
 * (a NaN or ±∞, or a g > 0, as 0: hooks.wgsl), and such an input gets a zero gradient. The step
 * takes q, k, v, g `[B, 1, H, ·]` and the state, and has no gradient. The seen kernel takes q,
 * k, v, g and gives the NaN-or-0 terms that poison the outputs and final states that see a
 * non-finite input (seen.wgsl), `[B, T, H, 1]` and `[B, H, 1, 1]`; they get no gradient. With
 * the attr `gate` false, a g > 0 is not counted.
 */
export const GATED_LINEAR_ATTENTION = 'MixersGatedLinearAttention';
export const GATED_LINEAR_ATTENTION_GRAD = 'MixersGatedLinearAttentionGrad';
export const GATED_LINEAR_ATTENTION_STEP = 'MixersGatedLinearAttentionStep';
export const GATED_LINEAR_ATTENTION_SEEN = 'MixersGatedLinearAttentionSeen';

const KERNELS = scanKernels('GatedLinearAttention', hooks, backwardHooks);

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
    return scanForward(backend as WebGPUBackend, KERNELS, s, launchOf([q, k, v, g], s, a.scale),
      a.hasInitialState ? inputs.initialState : undefined, v.shape, [s.B, s.H, s.N, s.E]);
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
    // the kernels read 0 for a non-finite input (and a positive gate): it gets no gradient
    const result: Record<string, () => tf.Tensor> = {
      q: () => zeroWhereNotFinite(q!, tf.mul(part(1), a.scale)),
      k: () => zeroWhereNotFinite(k!, part(0)),
      v: () => zeroWhereNotFinite(v!, grads!.slice(0, v!.size).reshape(v!.shape)),
      g: () => {
        const d = part(2);
        return tf.where(tf.logicalAnd(tf.isFinite(g!), tf.lessEqual(g!, 0)), d, tf.zerosLike(d));
      },
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
    return scanStep(backend as WebGPUBackend, KERNELS, s, l, state, v.shape);
  },
});

const SEEN: KernelSource = { name: 'GatedLinearAttentionSeen', code: seen };
const SEEN_WG = 64;

registerKernelOnce({
  kernelName: GATED_LINEAR_ATTENTION_SEEN,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v, g } = namedInputs(inputs, 'q', 'k', 'v', 'g');
    const [B, T, H, K] = q.shape as [number, number, number, number];
    return runKernel(backend as WebGPUBackend, SEEN, {
      inputs: [q, k, v, g],
      outputs: [[B, T, H, 1], [B, H, 1, 1]],
      params: [T, H, K, v.shape[3]!].map((u32) => ({ u32 })),
      constants: { WG: SEEN_WG, GATE: (attrs as { gate?: boolean } | undefined)?.gate === false ? 0 : 1 },
      // a workgroup per (head, batch row)
      workgroups: [H, B, 1],
    });
  },
});

registerGradientOnce({
  kernelName: GATED_LINEAR_ATTENTION_SEEN,
  inputsToSave: ['q', 'v'],
  gradFunc: (_dys, [q, v]) => ({
    q: () => tf.zerosLike(q!), k: () => tf.zerosLike(q!), v: () => tf.zerosLike(v!), g: () => tf.zerosLike(q!),
  }),
});
