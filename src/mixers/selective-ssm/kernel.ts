import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../../kernels/common/grid.wgsl';
import scan from '../../../kernels/selective-ssm/scan.wgsl';
import gate from '../../../kernels/selective-ssm/gate.wgsl';
import chunkStatesBody from '../../../kernels/selective-ssm/chunk-states.wgsl';
import carryBody from '../../../kernels/selective-ssm/carry.wgsl';
import forwardBody from '../../../kernels/selective-ssm/forward.wgsl';
import backwardChunkStatesBody from '../../../kernels/selective-ssm/backward-chunk-states.wgsl';
import backwardBody from '../../../kernels/selective-ssm/backward.wgsl';
import stepBody from '../../../kernels/selective-ssm/step.wgsl';
import sumRowsBody from '../../../kernels/common/sum-rows.wgsl';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource, type Param } from '../../webgpu/runtime.js';

/**
 * tfjs kernel names. The forward's inputs are u, delta, chan = A | D | deltaBias `[E, N+2]`,
 * bc = B | C `[B, T, 2N]`, z and initialState (a one-element stand-in when absent, which
 * attrs mark and the kernels never read); its outputs are the output,
 * the final state, and two saved for the backward: the state entering each chunk and each
 * chunk's Σ Δ.
 */
export const SELECTIVE_SCAN = 'MixersSelectiveScan';
export const SELECTIVE_SCAN_GRAD = 'MixersSelectiveScanGrad';
export const SELECTIVE_SCAN_STEP = 'MixersSelectiveScanStep';

const WG = 64;
/** Steps per chunk and channels per backward workgroup, as in scan.wgsl and backward.wgsl. */
const L = 32;
const WE = 32;

const source = (name: string, ...parts: string[]): KernelSource => ({ name, code: parts.join('\n') });
const KERNELS = {
  chunkStates: source('SelectiveScanChunkStates', grid, scan, chunkStatesBody),
  carry: source('SelectiveScanCarry', grid, scan, carryBody),
  forward: source('SelectiveScanForward', grid, scan, gate, forwardBody),
  backwardChunkStates: source('SelectiveScanBackwardChunkStates', grid, scan, gate, backwardChunkStatesBody),
  backward: source('SelectiveScanBackward', scan, gate, backwardBody),
  step: source('SelectiveScanStep', grid, scan, gate, stepBody),
  sumRows: source('SumRows', grid, sumRowsBody),
};

/** What the op passes as attrs: which optional inputs are present, and the softplus flag. */
export interface ScanAttrs {
  deltaSoftplus: boolean;
  hasZ: boolean;
  hasInitialState: boolean;
}

interface Sizes { B: number; T: number; E: number; N: number; chunks: number; eBlocks: number }

function sizesOf(u: tf.TensorInfo, chan: tf.TensorInfo): Sizes {
  const [B, T, E] = u.shape as [number, number, number];
  return { B, T, E, N: chan.shape[1]! - 2, chunks: Math.ceil(T / L), eBlocks: Math.ceil(E / WE) };
}

/** The backward's packed output: du, d delta, dz, chan parts, bc parts (see backward.wgsl). */
function gradLayout(s: Sizes, hasZ: boolean) {
  const seq = s.B * s.T * s.E;
  const offDelta = seq;
  const offZ = 2 * seq;
  const offChan = offZ + (hasZ ? seq : 0);
  const offBC = offChan + s.E * (s.N + 2) * s.B * s.chunks;
  return { offDelta, offZ, offChan, offBC, size: offBC + s.B * s.T * 2 * s.N * s.eBlocks };
}

function params(s: Sizes, offsets: number[] = [0, 0, 0, 0]): Param[] {
  return [s.B, s.T, s.E, s.N, s.chunks, s.eBlocks, ...offsets].map((v) => ({ u32: v }));
}

function constants(a: ScanAttrs): Record<string, number> {
  return { WG, SOFTPLUS: a.deltaSoftplus ? 1 : 0, HAS_Z: a.hasZ ? 1 : 0 };
}

/** Runs pass 2 (carry.wgsl) forwards or in reverse. */
function carry(
  gpu: WebGPUBackend, s: Sizes, reverse: boolean, chan: tf.TensorInfo, dtSum: tf.TensorInfo,
  ends: tf.TensorInfo, start: tf.TensorInfo | undefined, entering: tf.TensorInfo | undefined,
): tf.TensorInfo[] {
  const lanes = s.B * s.E * s.N;
  return runKernel(gpu, KERNELS.carry, {
    // an absent optional input is bound to a buffer the kernel never reads
    inputs: [chan, dtSum, ends, start ?? ends, entering ?? ends],
    outputs: [[s.B, s.chunks, s.E, reverse ? 2 * s.N : s.N], [s.B, s.E, s.N]],
    params: params(s),
    constants: { WG, REVERSE: reverse ? 1 : 0, HAS_START: start ? 1 : 0 },
    workgroups: grid1d(lanes, WG),
  });
}

/** Sums rows of k partial sums that start at `offset` in `x`, into a tensor of `shape`. */
function sumRows(gpu: WebGPUBackend, x: tf.TensorInfo, offset: number, k: number, shape: number[]): tf.TensorInfo {
  const rows = tf.util.sizeFromShape(shape);
  return runKernel(gpu, KERNELS.sumRows, {
    inputs: [x], outputs: [shape], params: [{ u32: rows }, { u32: k }, { u32: offset }],
    constants: { WG }, workgroups: grid1d(rows, WG),
  })[0]!;
}

registerKernelOnce({
  kernelName: SELECTIVE_SCAN,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as ScanAttrs;
    const { u, delta, chan, bc } = namedInputs(inputs, 'u', 'delta', 'chan', 'bc');
    const s = sizesOf(u, chan);
    const cells = s.B * s.chunks * s.E;
    const launch = { params: params(s), constants: constants(a), workgroups: grid1d(cells, WG) };
    const [ends, dtSum] = runKernel(gpu, KERNELS.chunkStates, {
      ...launch, inputs: [u, delta, chan, bc], outputs: [[s.B, s.chunks, s.E, s.N], [s.B, s.chunks, s.E]],
    });
    const [entering, state] = carry(gpu, s, false, chan, dtSum!, ends!, a.hasInitialState ? inputs.initialState : undefined, undefined);
    gpu.disposeData(ends!.dataId);
    const [out] = runKernel(gpu, KERNELS.forward, {
      ...launch, inputs: [u, delta, chan, bc, inputs.z!, entering!], outputs: [u.shape],
    });
    return [out!, state!, entering!, dtSum!];
  },
});

registerKernelOnce({
  kernelName: SELECTIVE_SCAN_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as ScanAttrs;
    const { u, delta, chan, bc, dOut, dState, entering, dtSum } =
      namedInputs(inputs, 'u', 'delta', 'chan', 'bc', 'dOut', 'dState', 'entering', 'dtSum');
    const z = inputs.z!;
    const s = sizesOf(u, chan);
    const [ends] = runKernel(gpu, KERNELS.backwardChunkStates, {
      inputs: [dOut, z, delta, chan, bc], outputs: [[s.B, s.chunks, s.E, s.N]],
      params: params(s), constants: constants(a), workgroups: grid1d(s.B * s.chunks * s.E, WG),
    });
    const [carries, dInitialState] = carry(gpu, s, true, chan, dtSum, ends!, dState, entering);
    gpu.disposeData(ends!.dataId);
    const layout = gradLayout(s, a.hasZ);
    const [grads] = runKernel(gpu, KERNELS.backward, {
      inputs: [u, delta, chan, bc, z, dOut, carries!],
      outputs: [[layout.size]],
      params: params(s, [layout.offDelta, layout.offZ, layout.offChan, layout.offBC]),
      constants: { SOFTPLUS: a.deltaSoftplus ? 1 : 0, HAS_Z: a.hasZ ? 1 : 0 },
      workgroups: grid1d(s.B * s.chunks * s.eBlocks, 1),
    });
    gpu.disposeData(carries!.dataId);
    const dChan = sumRows(gpu, grads!, layout.offChan, s.B * s.chunks, [s.E, s.N + 2]);
    const dBC = sumRows(gpu, grads!, layout.offBC, s.eBlocks, [s.B, s.T, 2 * s.N]);
    return [grads!, dChan, dBC, dInitialState!];
  },
});

registerGradientOnce({
  kernelName: SELECTIVE_SCAN,
  inputsToSave: ['u', 'delta', 'chan', 'bc', 'z', 'initialState'],
  outputsToSave: [false, false, true, true],
  gradFunc: (dys, saved, attrs) => {
    const a = attrs as unknown as ScanAttrs;
    const [dOut, dState] = dys as tf.Tensor[];
    const [u, delta, chan, bc, z, , entering, dtSum] = saved;
    const [grads, dChan, dBC, dInitialState] = tf.engine().runKernel(SELECTIVE_SCAN_GRAD,
      { u: u!, delta: delta!, chan: chan!, bc: bc!, z: z!, dOut: dOut!, dState: dState!, entering: entering!, dtSum: dtSum! },
      attrs) as tf.Tensor[];
    const [B, T, E] = u!.shape as [number, number, number];
    const layout = gradLayout(sizesOf(u!, chan!), a.hasZ);
    const seq = (start: number) => grads!.slice(start, B * T * E).reshape([B, T, E]);
    const result: Record<string, () => tf.Tensor> = {
      u: () => seq(0),
      delta: () => seq(layout.offDelta),
      chan: () => dChan!.clone(),
      bc: () => dBC!.clone(),
    };
    if (a.hasZ) result.z = () => seq(layout.offZ);
    if (a.hasInitialState) result.initialState = () => dInitialState!.clone();
    return result;
  },
});

registerKernelOnce({
  kernelName: SELECTIVE_SCAN_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { u, chan, bc, state } = namedInputs(inputs, 'u', 'delta', 'chan', 'bc', 'state');
    const [B, E] = u.shape as [number, number];
    const s: Sizes = { B, T: 1, E, N: chan.shape[1]! - 2, chunks: 1, eBlocks: 1 };
    return runKernel(backend as WebGPUBackend, KERNELS.step, {
      inputs: [u, inputs.delta!, chan, bc, inputs.z!, state],
      outputs: [[B, E], state.shape],
      params: params(s),
      constants: constants(attrs as unknown as ScanAttrs),
      workgroups: grid1d(B * E, WG),
    });
  },
});
