import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import floatBits from '../../../kernels/common/float-bits.wgsl';
import grid from '../../../kernels/common/grid.wgsl';
import frameBody from '../../../kernels/aaren/frame.wgsl';
import frameBackwardBody from '../../../kernels/aaren/frame-backward.wgsl';
import rowRuns from '../../../kernels/aaren/row-runs.wgsl';
import frameInputsBackwardBody from '../../../kernels/aaren/frame-inputs-backward.wgsl';
import finalStateBody from '../../../kernels/aaren/final-state.wgsl';
import initialStateBody from '../../../kernels/aaren/initial-state.wgsl';
import ratioBody from '../../../kernels/aaren/ratio.wgsl';
import ratioBackwardBody from '../../../kernels/aaren/ratio-backward.wgsl';
import stepFrameBody from '../../../kernels/aaren/step-frame.wgsl';
import stepMergeBody from '../../../kernels/aaren/step-merge.wgsl';
import valuesBody from '../../../kernels/aaren/values.wgsl';
import valuesBackwardBody from '../../../kernels/aaren/values-backward.wgsl';
import packedRows from '../../../kernels/aaren/packed-rows.wgsl';
import { columnSums } from '../../dense/kernel.js';
import { detached } from '../../tensors.js';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, zerosOnHost, type KernelSource } from '../../webgpu/runtime.js';
import { runSeen } from '../gated-linear-attention/kernel.js';
import { gatedLinearAttentionWithState } from '../gated-linear-attention/op.js';
import type { AarenArgs, AarenState } from './reference.js';

/** What {@link AAREN_FRAME} takes as attrs. */
interface FrameAttrs {
  scale: number;
  hasInit: boolean;
  hasReal: boolean;
}

/**
 * tfjs kernel name, webgpu only: the scan's inputs in the frame of the running max
 * (`kernels/aaren/frame.wgsl`). Inputs q `[H, K]`, k `[B, T, H, K]` (its NaN and ±∞ read as
 * 0), mInit `[B, H]` and real `[B, T]` (each a stand-in where attrs say it is absent); outputs
 * the key e^{s_t − m_t}·real_t and the gate m_{t−1} − m_t, each `[B, T, H, 1]`, the max m_T of
 * (m_init, s_0..s_{T−1}) `[B, H]` and move = e^{m_{T−1} − m_T} `[B, H]`. The frame m_t carries
 * no gradient (the outputs do not depend on it), so the key's reaches its score alone, and
 * m_T's (less move's, times move) reaches the first maximiser.
 */
export const AAREN_FRAME = 'MixersAarenFrame';
const FRAME: KernelSource = { name: 'AarenFrame', code: [floatBits, rowRuns, frameBody].join('\n') };

registerKernelOnce({
  kernelName: AAREN_FRAME,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as FrameAttrs;
    const { q, k, mInit, real } = namedInputs(inputs, 'q', 'k', 'mInit', 'real');
    const [B, T, H, K] = k.shape as [number, number, number, number];
    return runKernel(backend as WebGPUBackend, FRAME, {
      inputs: [q, k, mInit, real],
      outputs: [[B, T, H, 1], [B, T, H, 1], [B, H], [B, H]],
      params: [{ u32: B * H }, { u32: T }, { u32: H }, { u32: K }, { f32: a.scale }],
      constants: { HAS_INIT: a.hasInit ? 1 : 0, HAS_REAL: a.hasReal ? 1 : 0 },
      workgroups: grid1d(B * H, 1),
    });
  },
});

/**
 * tfjs kernel names, webgpu only: the frame's gradient. {@link AAREN_FRAME_GRAD}: inputs the
 * frame's gate, key, key's gradient `[B, T, H, 1]` and `ends` `[B, H, 4]` (m_T, move and their
 * gradients; a stand-in where the attribute `hasEnds` is false, the gradients being 0); outputs
 * the scores' gradient ds `[B, T, H, 1]` and m_init's `[B, H]`
 * (`kernels/aaren/frame-backward.wgsl`). {@link AAREN_FRAME_INPUTS_GRAD}: inputs q, k and ds;
 * outputs k's gradient and ds·finite(k)·scale `[B, T, H, K]`, whose column sums are q's
 * (`frame-inputs-backward.wgsl`). With the stack of `ends` and the sums, four launches where tfjs
 * ops took some thirty.
 */
const AAREN_FRAME_GRAD = 'MixersAarenFrameGrad';
const AAREN_FRAME_INPUTS_GRAD = 'MixersAarenFrameInputsGrad';
const FRAME_GRAD: KernelSource = { name: 'AarenFrameBackward', code: [floatBits, rowRuns, frameBackwardBody].join('\n') };
const FRAME_INPUTS_GRAD: KernelSource = { name: 'AarenFrameInputsBackward', code: [grid, floatBits, frameInputsBackwardBody].join('\n') };

registerKernelOnce({
  kernelName: AAREN_FRAME_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { gate, key, dKey, ends } = namedInputs(inputs, 'gate', 'key', 'dKey', 'ends');
    const [B, T, H] = gate.shape as [number, number, number, number];
    return runKernel(backend as WebGPUBackend, FRAME_GRAD, {
      inputs: [gate, key, dKey, ends],
      outputs: [gate.shape, [B, H]],
      params: [{ u32: B * H }, { u32: T }, { u32: H }],
      constants: { HAS_ENDS: (attrs as { hasEnds: boolean }).hasEnds ? 1 : 0 },
      workgroups: grid1d(B * H, 1),
    });
  },
});

registerKernelOnce({
  kernelName: AAREN_FRAME_INPUTS_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, ds } = namedInputs(inputs, 'q', 'k', 'ds');
    const [, , H, K] = k.shape as [number, number, number, number];
    const total = tf.util.sizeFromShape(k.shape);
    return runKernel(backend as WebGPUBackend, FRAME_INPUTS_GRAD, {
      inputs: [q, k, ds],
      outputs: [k.shape, k.shape],
      params: [{ u32: total }, { u32: H }, { u32: K }, { f32: (attrs as unknown as FrameAttrs).scale }],
      constants: { WG: LAUNCH_WG },
      workgroups: grid1d(total, LAUNCH_WG),
    });
  },
});

registerGradientOnce({
  kernelName: AAREN_FRAME,
  inputsToSave: ['q', 'k', 'mInit', 'real'],
  outputsToSave: [true, true, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [dKey, , dMax, dMove] = dys as tf.Tensor[];
    const [q, k, mInit, real, key, gate, mMax, move] = saved as tf.Tensor[];
    const [B, T] = k!.shape;
    // no gradient reaches m_T or move where tfjs hands them zeros it made (a caller that does not
    // read the final state): then the kernel needs no ends, and gate stands in for them
    const gpu = tf.backend() as WebGPUBackend;
    const hasEnds = !(zerosOnHost(gpu, dMax!) && zerosOnHost(gpu, dMove!));
    const ends = hasEnds ? tf.stack([mMax!, move!, dMax!, dMove!], 2) : gate!;
    const [ds, dmInit] = tf.engine().runKernel(AAREN_FRAME_GRAD, { gate: gate!, key: key!, dKey: dKey!, ends }, { hasEnds }) as tf.Tensor[];
    // k's gradient and q's column sums' input from one launch, made here: tfjs runs each
    // input's gradient below in a scope of its own, which would free what another reads
    const [dk, part] = tf.engine().runKernel(AAREN_FRAME_INPUTS_GRAD, { q: q!, k: k!, ds: ds! }, attrs) as tf.Tensor[];
    return {
      // a sum over B·T rows as one dense launch, not tfjs's workgroup per output
      q: () => columnSums(part!.reshape([B * T, -1]) as tf.Tensor2D).reshape(q!.shape),
      k: () => dk!,
      mInit: () => dmInit!.reshape(mInit!.shape),
      real: () => tf.zerosLike(real!),
    };
  },
});

/**
 * tfjs kernel name, webgpu only. Inputs k, v `[B, T, H, K]`; outputs the NaN-or-0 terms for the
 * outputs `[B, T, H, 1]` and the final state `[B, H, 1, 1]` of each head from the first token
 * whose k or v is NaN or ±∞ on: the reference's `poisonAfterNonFinite` and its last token, in one
 * launch of GatedLinearAttention's seen kernel, two past its SEEN_CHUNK tokens (runSeen; k stands
 * in for its q and g, checked as k is).
 * No gradient reaches k or v through them: it has none, and runs on detached inputs.
 */
const AAREN_POISON = 'MixersAarenPoison';

registerKernelOnce({
  kernelName: AAREN_POISON,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { k, v } = namedInputs(inputs, 'k', 'v');
    return runSeen(backend as WebGPUBackend, [k, k, v, k], false);
  },
});

/** Invocations per workgroup of the packed rows' and the step's launches. */
const LAUNCH_WG = 64;

/** One of Aaren's kernels on packed rows (`kernels/aaren/packed-rows.wgsl` with `body`). */
function packedKernel(name: string, body: string): KernelSource {
  return { name, code: [grid, floatBits, packedRows, body].join('\n') };
}

/** One launch of a {@link packedKernel}: an invocation per number of its `total` (Params' K the head width). */
function runPacked(backend: WebGPUBackend, kernel: KernelSource, inputs: tf.TensorInfo[], outputs: number[][], total: number, K: number,
  constants: Record<string, number> = {}): tf.TensorInfo[] {
  return runKernel(backend, kernel, {
    inputs, outputs, params: [{ u32: total }, { u32: K }], constants: { WG: LAUNCH_WG, ...constants }, workgroups: grid1d(total, LAUNCH_WG),
  });
}

/**
 * Registers a kernel on packed rows: its inputs named in binding order, the first `[B, T, H, ·]`
 * packed (K + 1 numbers a row) or not (K), its output likewise, an invocation per output number;
 * with `perRow`, a second output of one number a row `[B, T, H, 1]`.
 */
function registerPacked(kernelName: string, kernel: KernelSource, names: string[],
  packed: { first: boolean; output: boolean; perRow?: boolean }): void {
  registerKernelOnce({
    kernelName,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend }) => {
      const ins = names.map((n) => namedInputs(inputs, n)[n]);
      const [B, T, H, width] = ins[0]!.shape as [number, number, number, number];
      const K = packed.first ? width - 1 : width;
      const output = [B, T, H, packed.output ? K + 1 : K];
      const outs = runPacked(backend as WebGPUBackend, kernel, ins, packed.perRow ? [output, [B, T, H, 1]] : [output],
        tf.util.sizeFromShape(output), K);
      return packed.perRow ? outs : outs[0]!;
    },
  });
}

/**
 * tfjs kernel names, webgpu only: o = w/u `[B, T, H, K]` from the scan's packed output [w, u]
 * `[B, T, H, K + 1]`, 0 where u = 0 (a padded row that has seen no real token yet), plus the
 * row's `poison` `[B, T, H, 1]` (NaN or 0, {@link AAREN_POISON}'s, which gets no gradient), and
 * its gradient in the packed output (`kernels/aaren/ratio.wgsl`, `ratio-backward.wgsl`).
 */
const AAREN_RATIO = 'MixersAarenRatio';
const AAREN_RATIO_GRAD = 'MixersAarenRatioGrad';
registerPacked(AAREN_RATIO, packedKernel('AarenRatio', ratioBody), ['packed', 'poison'], { first: true, output: false });
registerPacked(AAREN_RATIO_GRAD, packedKernel('AarenRatioBackward', ratioBackwardBody), ['packed', 'dO'], { first: true, output: true });

registerGradientOnce({
  kernelName: AAREN_RATIO,
  inputsToSave: ['packed', 'poison'],
  gradFunc: (dy, [packed, poison]) => ({
    packed: () => tf.engine().runKernel(AAREN_RATIO_GRAD, { packed: packed!, dO: dy as tf.Tensor }) as tf.Tensor,
    poison: () => tf.zerosLike(poison!),
  }),
});

/**
 * tfjs kernel names, webgpu only: the scan's values, the packed rows [v, 1] `[B, T, H, K + 1]` of
 * v `[B, T, H, K]` with its NaN and ±∞ read as 0, beside its query, a 1 a row `[B, T, H, 1]` (no
 * gradient), and their gradient in v, 0 at those (`kernels/aaren/values.wgsl`,
 * `values-backward.wgsl`): one launch each, where tfjs ops took four and three, and the query an
 * upload of ones at every call. GLA's output stays finite so: its own poison of a non-finite v
 * would reach every gradient through the ratio's (NaN·0); Aaren's poison, detached, takes its place.
 */
const AAREN_VALUES = 'MixersAarenValues';
const AAREN_VALUES_GRAD = 'MixersAarenValuesGrad';
registerPacked(AAREN_VALUES, packedKernel('AarenValues', valuesBody), ['v'], { first: false, output: true, perRow: true });
registerPacked(AAREN_VALUES_GRAD, packedKernel('AarenValuesBackward', valuesBackwardBody), ['v', 'dPacked'], { first: false, output: false });

registerGradientOnce({
  kernelName: AAREN_VALUES,
  inputsToSave: ['v'],
  // the query's gradient is never read
  gradFunc: (dys, [v]) => ({
    v: () => tf.engine().runKernel(AAREN_VALUES_GRAD, { v: v!, dPacked: (dys as tf.Tensor[])[0]! }) as tf.Tensor,
  }),
});

/**
 * tfjs kernel names, webgpu only, the scan's state in and out of the frame
 * (`kernels/aaren/initial-state.wgsl`, `final-state.wgsl`), one launch each where tfjs ops took
 * five and nine. {@link AAREN_INITIAL_STATE}: inputs m, u `[B, H]` and w `[B, H, K]`; outputs
 * the packed rows [w, u] `[B, H, 1, K + 1]` (GLA's state of one key channel), the same numbers
 * through a factor e^{m − m} of value 1, whose gradient in m is their product with the packed
 * gradient (the frame floors m at −10³⁰, below which lies only the empty state's −∞, whose u and
 * w are 0). {@link AAREN_FINAL_STATE}: inputs the scan's final packed rows
 * `[B, H, K + 1]`, move, the frame's max m_T and the heads' poison `[B, H]`; attrs `hasReal`;
 * outputs m, u `[B, H]` and w `[B, H, K]`: u and w times move, m = m_T (−∞ where u is 0 with
 * padding), each plus the poison, which gets no gradient.
 */
const AAREN_INITIAL_STATE = 'MixersAarenInitialState';
const AAREN_FINAL_STATE = 'MixersAarenFinalState';
const INITIAL_STATE = packedKernel('AarenInitialState', initialStateBody);
const FINAL_STATE = packedKernel('AarenFinalState', finalStateBody);

registerKernelOnce({
  kernelName: AAREN_INITIAL_STATE,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { u, w } = namedInputs(inputs, 'u', 'w');
    const [B, H, K] = w.shape as [number, number, number];
    // m only routes its gradient (the frame kernel reads its value)
    return runPacked(backend as WebGPUBackend, INITIAL_STATE, [u, w], [[B, H, 1, K + 1]], B * H * (K + 1), K)[0]!;
  },
});

registerGradientOnce({
  kernelName: AAREN_INITIAL_STATE,
  inputsToSave: ['u', 'w'],
  gradFunc: (dy, [u, w]) => {
    const [B, H, K] = w!.shape as [number, number, number];
    const [dw, du] = tf.split((dy as tf.Tensor).reshape([B, H, K + 1]), [K, 1], 2);
    return {
      m: () => tf.add(tf.sum(tf.mul(dw!, w!), 2), tf.mul(du!.squeeze([2]), u!)),
      u: () => du!.squeeze([2]),
      w: () => dw!,
    };
  },
});

registerKernelOnce({
  kernelName: AAREN_FINAL_STATE,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { state, move, mMax, poison } = namedInputs(inputs, 'state', 'move', 'mMax', 'poison');
    const [B, H] = move.shape as [number, number];
    const K = state.shape[2]! - 1;
    return runPacked(backend as WebGPUBackend, FINAL_STATE, [state, move, mMax, poison], [[B, H], [B, H], [B, H, K]], B * H * (K + 1), K,
      { HAS_REAL: (attrs as { hasReal: boolean }).hasReal ? 1 : 0 });
  },
});

registerGradientOnce({
  kernelName: AAREN_FINAL_STATE,
  inputsToSave: ['state', 'move', 'mMax', 'poison'],
  gradFunc: (dys, [state, move, , poison]) => {
    const [dm, du, dw] = dys as tf.Tensor[];
    const K = state!.shape[2]! - 1;
    const [w, u] = tf.split(state!, [K, 1], 2);
    return {
      state: () => tf.mul(tf.concat([dw!, du!.expandDims(2)], 2), move!.expandDims(2)),
      move: () => tf.add(tf.sum(tf.mul(dw!, w!), 2), tf.mul(du!, u!.squeeze([2]))),
      // as it is where −∞ stood in for it too: an empty row's frame has no real score to take it
      mMax: () => dm!,
      poison: () => tf.zerosLike(poison!),
    };
  },
});

/**
 * tfjs kernel name, webgpu only: one decode token merged into the state, with no gradient. Inputs
 * q `[H, K]`, k and v `[B, 1, H, K]`, the state's m, u `[B, H]` and w `[B, H, K]` and its
 * positions int32 `[B]`; outputs o `[B, 1, H, K]`, the next m, u, w and the positions plus one.
 * Two launches (`kernels/aaren/step-frame.wgsl`, then `step-merge.wgsl`), where the scan kernels
 * and the tfjs ops around them took nineteen, and tfjs's add one for the positions: the step is
 * bound by the CPU's cost per launch. Two, not one, because a kernel may count on only 8 storage
 * buffers, and the step reads seven and writes five.
 */
const AAREN_STEP = 'MixersAarenStep';
const STEP_FRAME: KernelSource = { name: 'AarenStepFrame', code: [grid, floatBits, stepFrameBody].join('\n') };
const STEP_MERGE = packedKernel('AarenStepMerge', stepMergeBody);

registerKernelOnce({
  kernelName: AAREN_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const { q, k, v, m, u, w, positions } = namedInputs(inputs, 'q', 'k', 'v', 'm', 'u', 'w', 'positions');
    const [B, , H, K] = k.shape as [number, number, number, number];
    const rows = B * H;
    const [mNext, factors, nextPositions] = runKernel(gpu, STEP_FRAME, {
      inputs: [q, k, v, m, positions], outputs: [[B, H], [B, H, 2], { shape: [B], dtype: 'int32' }],
      params: [{ u32: rows }, { u32: H }, { u32: K }, { f32: (attrs as unknown as { scale: number }).scale }],
      constants: { WG: LAUNCH_WG }, workgroups: grid1d(rows, LAUNCH_WG),
    });
    const [o, uNext, wNext] = runPacked(gpu, STEP_MERGE, [v, u, w, factors!], [k.shape, [B, H], [B, H, K]], rows * K, K);
    gpu.disposeData(factors!.dataId);
    return [o!, mNext!, uNext!, wNext!, nextPositions!];
  },
});

/**
 * One decode token on {@link AAREN_STEP}: `args.k` and `args.v` `[B, 1, H, K]` from the initial
 * state, whose frame m the token's score may raise, of rows at `positions`. No gradient.
 */
function aarenStepOnKernel(args: AarenArgs, init: AarenState, positions: tf.Tensor1D):
  { output: tf.Tensor4D; state: AarenState; positions: tf.Tensor1D } {
  const [output, m, u, w, next] = tf.engine().runKernel(AAREN_STEP,
    { q: args.q, k: args.k, v: args.v, m: init.m, u: init.u, w: init.w, positions }, { scale: args.scale }) as tf.Tensor[];
  return {
    output: output as tf.Tensor4D, state: { m: m as tf.Tensor2D, u: u as tf.Tensor2D, w: w as tf.Tensor3D }, positions: next as tf.Tensor1D,
  };
}

/**
 * Aaren on the scan kernels: with the running max m_t (max of m_init and the scores so far) as
 * the frame, the state (u, w) after token t obeys the diagonal linear recurrence
 * ```
 * [w_t, u_t] = e^{m_{t−1} − m_t}·[w_{t−1}, u_{t−1}] + e^{s_t − m_t}·[v_t, 1]
 * ```
 * which is GatedLinearAttention with one key channel: log gate g_t = m_{t−1} − m_t ≤ 0, key
 * e^{s_t − m_t} (0 at a padded token), value [v_t, 1], query 1, scale 1, so it runs on GLA's scan
 * kernels, forward, backward and step. One launch ({@link AAREN_FRAME}) forms the scores, the
 * frame, the keys and the gates. The frame carries no gradient (the outputs do not depend on it);
 * the final state's dependence on its m, the one place the frame shows, goes through a factor
 * e^{m_frame − m} (value 1) with m = max(m_init, the real scores), whose gradient reaches the first
 * maximiser, so every gradient is the reference's. Non-finite k and v are taken as 0 and poison
 * exactly what the reference poisons. With `step` (one token from an initial state, for the
 * layer's decode, of rows at `step.positions`) it runs {@link AAREN_STEP} instead, which has no
 * gradient and returns the positions plus one. Without `withState` it forms no final state
 * (undefined), a launch fewer.
 */
export function aarenOnScanKernels(args: AarenArgs, step?: { positions: tf.Tensor1D }, withState = true):
  { output: tf.Tensor4D; state: AarenState | undefined; positions?: tf.Tensor1D } {
  if (step && args.initialState) return aarenStepOnKernel(args, args.initialState, step.positions);
  return tf.tidy(() => {
    const [B, , H, K] = args.k.shape;
    const { real } = args;
    const init = args.initialState;
    // absent inputs are stand-ins never read: k's data off the gradient's path (no upload)
    const standIn = detached(args.k);
    const [key, gate, mT, move] = tf.engine().runKernel(AAREN_FRAME,
      { q: args.q, k: args.k, mInit: init?.m ?? standIn, real: real ?? standIn },
      { scale: args.scale, hasInit: init !== undefined, hasReal: real !== undefined } satisfies FrameAttrs as unknown as tf.NamedAttrMap,
    ) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor2D, tf.Tensor2D];
    const [values, ones] = tf.engine().runKernel(AAREN_VALUES, { v: args.v }) as tf.Tensor4D[];
    // without an initial state none (GLA's zeros), where zeros made on the CPU would be uploaded
    const run = gatedLinearAttentionWithState(ones!, key, values!, gate, {
      scale: 1,
      ...(init ? { initialState: tf.engine().runKernel(AAREN_INITIAL_STATE, { m: init.m, u: init.u, w: init.w }) as tf.Tensor4D } : {}),
    });
    // a non-finite k or v at token t: that head's outputs from t on, and its final state
    // (from detached k and v: no gradient is asked of it, nor of the adds' poison side)
    const [poison, poisonHeads] = tf.engine().runKernel(AAREN_POISON, { k: detached(args.k), v: detached(args.v) }) as tf.Tensor4D[];
    // with padding a row may have seen no real token (u = 0): its output is 0
    const output = tf.engine().runKernel(AAREN_RATIO, { packed: run.output, poison: poison! }) as tf.Tensor4D;
    // the state's launch only where the caller reads it
    if (!withState) return { output, state: undefined };
    // the final state, moved from the frame to m = max(m_init, real scores) (the same value),
    // so that its gradient in m reaches the maximiser as the reference's does
    const [m, u, w] = tf.engine().runKernel(AAREN_FINAL_STATE,
      { state: run.state.reshape([B, H, K + 1]), move, mMax: mT, poison: poisonHeads!.reshape([B, H]) },
      { hasReal: real !== undefined }) as tf.Tensor[];
    return { output, state: { m: m as tf.Tensor2D, u: u as tf.Tensor2D, w: w as tf.Tensor3D } };
  });
}
