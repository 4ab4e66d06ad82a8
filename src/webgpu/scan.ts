import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import partSums from '../../kernels/scan/part-sums.wgsl';
import scan from '../../kernels/scan/scan.wgsl';
import chunkStatesBody from '../../kernels/scan/chunk-states.wgsl';
import carryBody from '../../kernels/scan/carry.wgsl';
import forwardBody from '../../kernels/scan/forward.wgsl';
import backwardChunkStatesBody from '../../kernels/scan/backward-chunk-states.wgsl';
import backwardBody from '../../kernels/scan/backward.wgsl';
import walkBody from '../../kernels/scan/walk.wgsl';
import { onSwiftShader } from './internals.js';
import { grid1d, runKernel, zerosOnHost, type KernelSource, type Param } from './runtime.js';

/**
 * The scan kernel family (docs/scan-kernels.md): a diagonal linear recurrence per row, channel
 * and state, run in chunks of {@link SCAN_CHUNK} steps with the state carried between them,
 * forward, backward and one decode step ({@link scanStepKernel}). A mixer is an instance: its
 * WGSL hooks say what the decay, the input and the output of each step are, and where its inputs
 * and gradients live.
 */
export const SCAN_CHUNK = 32;
const WG = 64;
/** Channels per backward workgroup, as in scan/backward.wgsl. */
const WE = 32;

/**
 * The tfjs flag that picks how a forward that records no gradient runs: `'auto'` (the default)
 * walks on SwiftShader and runs the chunks' parallel passes elsewhere; `'chunks'` or `'walk'`
 * whatever the adapter (the tests run both on SwiftShader). A forward under a gradient tape
 * always runs the chunks: its backward reads the states entering them.
 */
export const SCAN_FLAG = 'MIXERS_SCAN';
tf.env().registerFlag(SCAN_FLAG, () => 'auto');

/** Invocations per workgroup of the walk: its rows·E invocations spread over a few cores. */
const WALK_WG = 16;

/** One mixer's kernels of the family, built from its hooks. */
export interface ScanKernels {
  chunkStates: KernelSource;
  forward: KernelSource;
  /** The forward in one pass (scan/walk.wgsl), for a CPU adapter. */
  walk: KernelSource;
  backwardChunkStates: KernelSource;
  backward: KernelSource;
}

const source = (name: string, ...parts: string[]): KernelSource => ({ name, code: parts.join('\n') });
const CARRY = source('ScanCarry', grid, scan, carryBody);

/**
 * The family's kernels for one mixer. `hooks` defines its Params, its input bindings and the
 * forward hooks; `backwardHooks` what the backward adds (see scan/scan.wgsl and scan/backward.wgsl).
 */
export function scanKernels(name: string, hooks: string, backwardHooks: string): ScanKernels {
  return {
    chunkStates: source(`${name}ChunkStates`, grid, hooks, scan, chunkStatesBody),
    forward: source(`${name}Forward`, grid, hooks, scan, forwardBody),
    walk: source(`${name}Walk`, grid, hooks, scan, walkBody),
    backwardChunkStates: source(`${name}BackwardChunkStates`, grid, hooks, scan, backwardChunkStatesBody),
    backward: source(`${name}Backward`, hooks, scan, backwardBody, backwardHooks),
  };
}

/** The family's decode step for one mixer's hooks (scan/walk.wgsl over one step), launched by {@link scanStep}. */
export function scanStepKernel(name: string, hooks: string): KernelSource {
  return source(`${name}Step`, grid, hooks, scan, walkBody);
}

/** The sizes every pass reads: rows (independent sequences), steps, channels and states. */
export interface ScanSizes {
  rows: number;
  T: number;
  E: number;
  N: number;
  chunks: number;
  eBlocks: number;
}

export function scanSizes(rows: number, T: number, E: number, N: number): ScanSizes {
  return { rows, T, E, N, chunks: Math.ceil(T / SCAN_CHUNK), eBlocks: Math.ceil(E / WE) };
}

/**
 * What one launch of a mixer's passes shares: its inputs (bound first, in its hooks' order), the
 * fields of its Params after the family's six, its override constants, and whether its state
 * layout is `[rows, N, E]` (N_FIRST) rather than `[rows, E, N]`.
 */
export interface ScanLaunch {
  inputs: tf.TensorInfo[];
  tail: Param[];
  constants: Record<string, number>;
  nFirst: boolean;
}

function paramsOf(s: ScanSizes, tail: Param[]): Param[] {
  return [...[s.rows, s.T, s.E, s.N, s.chunks, s.eBlocks].map((v) => ({ u32: v })), ...tail];
}

const constantsOf = (l: ScanLaunch) => ({ ...l.constants, N_FIRST: l.nFirst ? 1 : 0 });

/** Runs pass 2 (scan/carry.wgsl) forwards or in reverse. */
function carry(gpu: WebGPUBackend, s: ScanSizes, nFirst: boolean, reverse: boolean, decays: tf.TensorInfo,
  ends: tf.TensorInfo, start: tf.TensorInfo | undefined, entering: tf.TensorInfo | undefined, stateShape: number[]): tf.TensorInfo[] {
  return runKernel(gpu, CARRY, {
    // an absent optional input is bound to a buffer the kernel never reads
    inputs: [decays, ends, start ?? ends, entering ?? ends],
    outputs: [[s.rows, s.chunks, (reverse ? 2 : 1) * s.E * s.N], stateShape],
    params: [s.rows, s.T, s.E, s.N, s.chunks].map((v) => ({ u32: v })),
    constants: { WG, REVERSE: reverse ? 1 : 0, HAS_START: start ? 1 : 0, N_FIRST: nFirst ? 1 : 0 },
    workgroups: grid1d(s.rows * s.E * s.N, WG),
  });
}

/** Whether a forward walks ({@link SCAN_FLAG}): only where no gradient is recorded. */
function walks(gpu: WebGPUBackend): boolean {
  if (tf.engine().state.gradientDepth > 0) return false;
  const chosen = tf.env().get(SCAN_FLAG);
  if (chosen === 'walk' || chosen === 'chunks') return chosen === 'walk';
  if (chosen !== 'auto') throw new Error(`tfjs-mixers: flag ${SCAN_FLAG} must be 'auto', 'chunks' or 'walk'; received ${JSON.stringify(chosen)}.`);
  return onSwiftShader(gpu);
}

/**
 * The forward: the output (`outShape`, written at the hooks' seqAt), the final state
 * (`stateShape`), and two tensors the backward needs: the state entering each chunk and each
 * chunk's total log decay, `[rows, chunks, E·N]`; where the forward walks (no gradient is
 * recorded), these two are empty.
 */
export function scanForward(gpu: WebGPUBackend, kernels: ScanKernels, s: ScanSizes, l: ScanLaunch,
  start: tf.TensorInfo | undefined, outShape: number[], stateShape: number[]): tf.TensorInfo[] {
  if (walks(gpu)) {
    const [out, state] = walk(gpu, kernels.walk, s, l, start, outShape, stateShape, WALK_WG);
    // no chunk states: nothing is saved for a backward, since none is recorded
    return [out!, state!, gpu.makeTensorInfo([0], 'float32'), gpu.makeTensorInfo([0], 'float32')];
  }
  const chunkShape = [s.rows, s.chunks, s.E * s.N];
  const launch = { params: paramsOf(s, l.tail), constants: { WG, ...constantsOf(l) }, workgroups: grid1d(s.rows * s.chunks * s.E, WG) };
  const [ends, decays] = runKernel(gpu, kernels.chunkStates, { ...launch, inputs: l.inputs, outputs: [chunkShape, chunkShape] });
  const [entering, state] = carry(gpu, s, l.nFirst, false, decays!, ends!, start, undefined, stateShape);
  gpu.disposeData(ends!.dataId);
  const [out] = runKernel(gpu, kernels.forward, { ...launch, inputs: [...l.inputs, entering!], outputs: [outShape] });
  return [out!, state!, entering!, decays!];
}

/**
 * The backward from the output's gradient and the final state's: the mixer's packed gradients
 * (`gradsSize` floats, laid out by its backward hooks) and the initial state's gradient. A final
 * state's gradient of zeros still on the CPU (tfjs's, where the loss does not read the state) is
 * left out of the carry rather than uploaded.
 */
export function scanBackward(gpu: WebGPUBackend, kernels: ScanKernels, s: ScanSizes, l: ScanLaunch, dOut: tf.TensorInfo,
  dState: tf.TensorInfo, entering: tf.TensorInfo, decays: tf.TensorInfo, gradsSize: number): tf.TensorInfo[] {
  const [ends] = runKernel(gpu, kernels.backwardChunkStates, {
    inputs: [...l.inputs, dOut], outputs: [[s.rows, s.chunks, s.E * s.N]],
    params: paramsOf(s, l.tail), constants: { WG, ...constantsOf(l) }, workgroups: grid1d(s.rows * s.chunks * s.E, WG),
  });
  const [carries, dStart] = carry(gpu, s, l.nFirst, true, decays, ends!, zerosOnHost(gpu, dState) ? undefined : dState, entering, dState.shape);
  gpu.disposeData(ends!.dataId);
  const [grads] = runKernel(gpu, kernels.backward, {
    inputs: [...l.inputs, dOut, carries!], outputs: [[gradsSize]],
    params: paramsOf(s, l.tail), constants: constantsOf(l), workgroups: grid1d(s.rows * s.chunks * s.eBlocks, 1),
  });
  gpu.disposeData(carries!.dataId);
  return [grads!, dStart!];
}

/** One decode step (T = 1): the output (`outShape`) and the next state, shaped as `state`. */
export function scanStep(gpu: WebGPUBackend, step: KernelSource, s: ScanSizes, l: ScanLaunch,
  state: tf.TensorInfo, outShape: number[]): tf.TensorInfo[] {
  return walk(gpu, step, s, l, state, outShape, state.shape, WG);
}

/**
 * One launch of scan/walk.wgsl: the output and the final state from `start` (or 0), one
 * invocation per (row, e) in workgroups of `wg`.
 */
function walk(gpu: WebGPUBackend, kernel: KernelSource, s: ScanSizes, l: ScanLaunch, start: tf.TensorInfo | undefined,
  outShape: number[], stateShape: number[], wg: number): tf.TensorInfo[] {
  return runKernel(gpu, kernel, {
    // an absent initial state is bound to a buffer the kernel never reads
    inputs: [...l.inputs, start ?? l.inputs[0]!], outputs: [outShape, stateShape],
    params: paramsOf(s, l.tail), constants: { WG: wg, ...constantsOf(l), HAS_START: start ? 1 : 0 },
    workgroups: grid1d(s.rows * s.E, wg),
  });
}

/**
 * A mixer's last backward launch (its `split-grads.wgsl`, after scan/part-sums.wgsl): it finishes
 * the partial sums that scan/backward.wgsl leaves in the backward's buffer and cuts the buffer
 * into the inputs' gradients.
 */
export function splitGradsKernel(name: string, body: string): KernelSource {
  return source(`${name}SplitGrads`, grid, partSums, body);
}

/**
 * Runs a {@link splitGradsKernel} on the backward's buffer `grads`, an invocation for each of
 * `count` numbers, then frees the buffer; returns the gradients.
 */
export function splitGrads(
  gpu: WebGPUBackend, kernel: KernelSource, grads: tf.TensorInfo, outputs: number[][], params: Param[], count: number,
  constants: Record<string, number> = {},
): tf.TensorInfo[] {
  const out = runKernel(gpu, kernel, {
    inputs: [grads], outputs, params, constants: { WG, ...constants }, workgroups: grid1d(count, WG),
  });
  gpu.disposeData(grads.dataId);
  return out;
}
