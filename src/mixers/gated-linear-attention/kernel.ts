import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import floatBits from '../../../kernels/common/float-bits.wgsl';
import hooks from '../../../kernels/gated-linear-attention/hooks.wgsl';
import backwardHooks from '../../../kernels/gated-linear-attention/backward-hooks.wgsl';
import seen from '../../../kernels/gated-linear-attention/seen.wgsl';
import seenChunks from '../../../kernels/gated-linear-attention/seen-chunks.wgsl';
import seenFind from '../../../kernels/gated-linear-attention/seen-find.wgsl';
import stepBody from '../../../kernels/gated-linear-attention/step.wgsl';
import logGateMath from '../../../kernels/gated-linear-attention/log-gate-math.wgsl';
import logGateBody from '../../../kernels/gated-linear-attention/log-gate.wgsl';
import splitGradsBody from '../../../kernels/gated-linear-attention/split-grads.wgsl';
import grid from '../../../kernels/common/grid.wgsl';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import {
  scanBackward, scanForward, scanKernels, scanSizes, splitGrads, splitGradsKernel, type ScanLaunch, type ScanSizes,
} from '../../webgpu/scan.js';

/**
 * tfjs kernel names. The forward's inputs are q, k, g `[B, T, H, K]`, v `[B, T, H, V]` and
 * initialState `[B, H, K, V]` (a one-element stand-in when attrs say there is none); its
 * outputs are the output `[B, T, H, V]`, the final state, and two saved for the backward: the
 * state entering each chunk and each chunk's total log decay. It reads each input's finite part
 * (a NaN or ±∞, or a g > 0, as 0: hooks.wgsl), such an input gets a zero gradient, and the
 * outputs and final states that see one are NaN, as the reference's (seen.wgsl, in place: see runSeen). The
 * gradient's kernel outputs q's, k's, v's and g's gradients and the initial state's. The
 * step takes q, k, v, g `[B, 1, H, ·]` and the state, has no gradient, and poisons in its own
 * launch (step.wgsl); with attrs `normalizer` its g holds the forget gate's low-rank features low
 * `[B, r]` and input `up` its up projection with the bias as a last row `[r + 1, H·K]`, and the
 * log gate is logsigmoid(low·up + bias)/normalizer.
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
  /**
   * The step's: g holds the forget gate's low-rank features, and the log gate is
   * logsigmoid(low·up + bias)/normalizer; absent, g is the log gate.
   */
  normalizer?: number;
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

/**
 * The backward scan's buffer cut into q's, k's, v's and g's gradients, each key block's partial
 * sums added (`kernels/gated-linear-attention/split-grads.wgsl`): the grad kernel's outputs.
 */
const SPLIT_GRADS = splitGradsKernel('GatedLinearAttention', splitGradsBody);

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
    const [total, vTotal] = [q, v].map((t) => tf.util.sizeFromShape(t.shape)) as [number, number];
    const split = splitGrads(gpu, SPLIT_GRADS, grads!, [q.shape, k.shape, v.shape, g.shape],
      [{ u32: total }, { u32: vTotal }, { u32: s.eBlocks }, { u32: layout.offParts }, { f32: a.scale }], Math.max(total, vTotal));
    return [...split, dInitialState!];
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
    const [dq, dk, dv, dg, dInitialState] = tf.engine().runKernel(GATED_LINEAR_ATTENTION_GRAD,
      { q: q!, k: k!, v: v!, g: g!, dOut: dOut!, dState: dState!, entering: entering!, decays: decays! },
      attrs) as tf.Tensor[];
    const result: Record<string, () => tf.Tensor> = { q: () => dq!, k: () => dk!, v: () => dv!, g: () => dg! };
    if (a.hasInitialState) result.initialState = () => dInitialState!.clone();
    return result;
  },
});

const STEP: KernelSource = { name: 'GatedLinearAttentionStep', code: [grid, floatBits, logGateMath, stepBody].join('\n') };
/** Invocations per workgroup of the step's and the log gate's launches. */
const LAUNCH_WG = 64;

registerKernelOnce({
  kernelName: GATED_LINEAR_ATTENTION_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v, g, state } = namedInputs(inputs, 'q', 'k', 'v', 'g', 'state');
    const a = attrs as unknown as GlaAttrs;
    const [B, , H, K] = q.shape as [number, number, number, number];
    const V = v.shape[3]!;
    const lowRank = a.normalizer !== undefined;
    // without a low-rank gate, up is never read: g stands in for it
    const up = lowRank ? namedInputs(inputs, 'up').up : g;
    return runKernel(backend as WebGPUBackend, STEP, {
      inputs: [q, k, v, g, up, state], outputs: [v.shape, state.shape],
      params: [
        { u32: B * H }, { u32: H }, { u32: K }, { u32: V }, { f32: a.scale }, { f32: a.normalizer ?? 1 }, { u32: lowRank ? up.shape[0]! - 1 : 0 },
      ],
      constants: { WG: LAUNCH_WG, GATE_LOW_RANK: lowRank ? 1 : 0 },
      workgroups: grid1d(B * H * V, LAUNCH_WG),
    });
  },
});

/**
 * tfjs kernel names, webgpu only: the layer's log forget gate g = logsigmoid(z)/normalizer of its
 * logits z (any shape; attrs `normalizer`), and its gradient dz of z and dg
 * (`kernels/gated-linear-attention/log-gate.wgsl`): one launch each, where tfjs's ops take three.
 */
export const GATED_LINEAR_ATTENTION_LOG_GATE = 'MixersGatedLinearAttentionLogGate';
const LOG_GATE_GRAD = 'MixersGatedLinearAttentionLogGateGrad';
const LOG_GATE: KernelSource = { name: 'GatedLinearAttentionLogGate', code: [grid, logGateMath, logGateBody].join('\n') };

/** One of the two over z's numbers: g, or with `dg` its gradient dz. */
function runLogGate(gpu: WebGPUBackend, z: tf.TensorInfo, normalizer: number, dg?: tf.TensorInfo): tf.TensorInfo {
  const total = tf.util.sizeFromShape(z.shape);
  return runKernel(gpu, LOG_GATE, {
    // without dg, z stands in for it, never read
    inputs: [z, dg ?? z], outputs: [z.shape], params: [{ u32: total }, { f32: normalizer }],
    constants: { WG: LAUNCH_WG, BACKWARD: dg ? 1 : 0 }, workgroups: grid1d(total, LAUNCH_WG),
  })[0]!;
}

registerKernelOnce({
  kernelName: GATED_LINEAR_ATTENTION_LOG_GATE,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) =>
    runLogGate(backend as WebGPUBackend, namedInputs(inputs, 'z').z, (attrs as unknown as { normalizer: number }).normalizer),
});

registerKernelOnce({
  kernelName: LOG_GATE_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { z, dg } = namedInputs(inputs, 'z', 'dg');
    return runLogGate(backend as WebGPUBackend, z, (attrs as unknown as { normalizer: number }).normalizer, dg);
  },
});

registerGradientOnce({
  kernelName: GATED_LINEAR_ATTENTION_LOG_GATE,
  inputsToSave: ['z'],
  gradFunc: (dg, [z], attrs) => ({
    z: () => tf.engine().runKernel(LOG_GATE_GRAD, { z: z!, dg: dg as tf.Tensor }, attrs) as tf.Tensor,
  }),
});

const SEEN: KernelSource = { name: 'GatedLinearAttentionSeen', code: [seenFind, seen].join('\n') };
const SEEN_CHUNKS: KernelSource = { name: 'GatedLinearAttentionSeenChunks', code: [seenFind, seenChunks].join('\n') };
const SEEN_WG_MIN = 64;

/**
 * Tokens per workgroup of the seen kernel (seen.wgsl). A sequence of at most this many takes one
 * launch (a decode step's T = 1 among them: the step is CPU-bound, and each launch costs it), a
 * longer one two, with a workgroup per chunk, head and batch row. Why 256: one workgroup's work
 * (256 tokens' k, g and v words over its 256 invocations, 192 reads each at K = V = 64, then q's
 * 64) stays small, so the one launch up to T = 256 costs no more than a chunk of the two; T = 4096 at
 * B·H = 4 makes 64 workgroups (0.12 ms for both launches on an H200, where one workgroup per head
 * walking all T took 1.96 ms); and the second launch's min reads one entry per 256 tokens.
 */
export const SEEN_CHUNK = 256;

/**
 * The seen kernel's launches on q, k, v, g `[B, T, H, ·]` (seen.wgsl): with `poisoned`, the output
 * and final state it writes NaN into, in place; otherwise it returns the terms to add, NaN or 0,
 * `[B, T, H, 1]` and `[B, H, 1, 1]`. `gate`: whether a g > 0 counts as bad. One launch where T ≤
 * {@link SEEN_CHUNK}; otherwise a first one (seen-chunks.wgsl) writes each chunk's first bad token
 * to a small `[B, H, chunks]` buffer, freed here, that the second reads.
 */
export function runSeen(gpu: WebGPUBackend, inputs: tf.TensorInfo[], gate: boolean, poisoned?: tf.TensorInfo[]): tf.TensorInfo[] {
  const [q, k, v, g] = inputs as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
  const [B, T, H, K] = q.shape as [number, number, number, number];
  const chunks = Math.ceil(T / SEEN_CHUNK);
  const params = [T, H, K, v.shape[3]!].map((u32) => ({ u32 }));
  // one launch: a chunk and workgroup no larger than T in whole 64s, so a decode step's T = 1
  // takes 64 invocations (with 256, GatedLinearAttention's and Aaren's steps took 1.6 and 2.3 times
  // as long on SwiftShader, and the H200's whole-model decode step of the first 8.1 → 12.2 ms)
  const size = chunks > 1 ? SEEN_CHUNK : Math.min(SEEN_CHUNK, SEEN_WG_MIN * Math.ceil(T / SEEN_WG_MIN));
  const constants = { WG: size, CHUNK: size, GATE: gate ? 1 : 0 };
  // a workgroup per (chunk, head, batch row)
  const workgroups: [number, number, number] = [chunks, H, B];
  const [firsts] = chunks > 1
    ? runKernel(gpu, SEEN_CHUNKS, { inputs: [k, v, g], outputs: [{ shape: [B, H, chunks], dtype: 'int32' }], params, constants, workgroups })
    : [];
  const outs = runKernel(gpu, SEEN, {
    // in one launch, q stands in for the firsts, never read
    inputs: [q, k, v, g, firsts ?? q],
    outputs: poisoned ? [] : [[B, T, H, 1], [B, H, 1, 1]],
    updates: poisoned,
    params,
    constants: { ...constants, IN_PLACE: poisoned ? 1 : 0, FIRSTS: firsts ? 1 : 0 },
    workgroups,
  });
  if (firsts) gpu.disposeData(firsts.dataId);
  return outs;
}
