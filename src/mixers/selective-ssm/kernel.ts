import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import hooks from '../../../kernels/selective-ssm/hooks.wgsl';
import backwardHooks from '../../../kernels/selective-ssm/backward-hooks.wgsl';
import splitGradsBody from '../../../kernels/selective-ssm/split-grads.wgsl';
import tableBody from '../../../kernels/selective-ssm/table.wgsl';
import tableBackwardBody from '../../../kernels/selective-ssm/table-backward.wgsl';
import grid from '../../../kernels/common/grid.wgsl';
import {
  grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource, type Param,
} from '../../webgpu/runtime.js';
import {
  scanBackward, scanForward, scanKernels, scanSizes, scanStep, scanStepKernel, splitGrads, splitGradsKernel, type ScanLaunch,
  type ScanSizes,
} from '../../webgpu/scan.js';

/**
 * tfjs kernel names. The forward's inputs are u, delta, chan = A | D | deltaBias `[E, N+2]`,
 * bc = B | C `[B, T, 2N]`, z and initialState (a one-element stand-in when absent, which
 * attrs mark and the kernels never read); its outputs are the output,
 * the final state, and two saved for the backward: the state entering each chunk and each
 * chunk's total log decay (scan family, src/webgpu/scan.ts).
 */
export const SELECTIVE_SCAN = 'MixersSelectiveScan';
export const SELECTIVE_SCAN_GRAD = 'MixersSelectiveScanGrad';
export const SELECTIVE_SCAN_STEP = 'MixersSelectiveScanStep';

const KERNELS = scanKernels('SelectiveScan', hooks, backwardHooks);
/** The backward's buffer cut into du, d delta, dz, d chan and d bc (`kernels/selective-ssm/split-grads.wgsl`). */
const SPLIT_GRADS = splitGradsKernel('SelectiveScan', splitGradsBody);
const STEP = scanStepKernel('SelectiveScan', hooks);

/** What the op passes as attrs: which optional inputs are present, and the softplus flag. */
export interface ScanAttrs {
  deltaSoftplus: boolean;
  hasZ: boolean;
  hasInitialState: boolean;
  /** z is the second half of each row of the in projection's `[B, (T,) 2E]`. */
  zInProjection?: boolean;
  /**
   * delta is formed in the kernels from the x projection: the delta input is dtProj `[R, E]` and
   * bc that projection's output `[B, (T,) R + 2N]` = low | B | C.
   */
  lowRank?: boolean;
}

function sizesOf(u: tf.TensorInfo, chan: tf.TensorInfo): ScanSizes {
  const [B, T, E] = u.shape as [number, number, number];
  return scanSizes(B, T, E, chan.shape[1]! - 2);
}

/** The backward's packed output: du, d delta, dz, chan parts, bc parts (see backward-hooks.wgsl). */
function gradLayout(s: ScanSizes, hasZ: boolean) {
  const seq = s.rows * s.T * s.E;
  const offDelta = seq;
  const offZ = 2 * seq;
  const offChan = offZ + (hasZ ? seq : 0);
  const offBC = offChan + s.E * (s.N + 2) * s.rows * s.chunks;
  return { offDelta, offZ, offChan, offBC, size: offBC + s.rows * s.T * 2 * s.N * s.eBlocks };
}

/** The hooks' inputs u, delta, chan, bc, z, their Params' offsets and Δ's rank, and constants. */
function launchOf(inputs: tf.TensorInfo[], a: ScanAttrs, offsets: number[] = [0, 0, 0, 0]): ScanLaunch {
  const R = a.lowRank ? inputs[1]!.shape[0]! : 0;
  return {
    inputs, tail: [...offsets, R].map((v): Param => ({ u32: v })), nFirst: false,
    constants: {
      SOFTPLUS: a.deltaSoftplus ? 1 : 0, HAS_Z: a.hasZ ? 1 : 0, Z_IN_PROJECTION: a.zInProjection ? 1 : 0, LOW_RANK: a.lowRank ? 1 : 0,
    },
  };
}

registerKernelOnce({
  kernelName: SELECTIVE_SCAN,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as ScanAttrs;
    const { u, delta, chan, bc } = namedInputs(inputs, 'u', 'delta', 'chan', 'bc');
    const s = sizesOf(u, chan);
    return scanForward(backend as WebGPUBackend, KERNELS, s, launchOf([u, delta, chan, bc, inputs.z!], a),
      a.hasInitialState ? inputs.initialState : undefined, u.shape, [s.rows, s.E, s.N]);
  },
});

registerKernelOnce({
  kernelName: SELECTIVE_SCAN_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const a = attrs as unknown as ScanAttrs;
    const { u, delta, chan, bc, dOut, dState, entering, decays } =
      namedInputs(inputs, 'u', 'delta', 'chan', 'bc', 'dOut', 'dState', 'entering', 'decays');
    const s = sizesOf(u, chan);
    const layout = gradLayout(s, a.hasZ);
    const l = launchOf([u, delta, chan, bc, inputs.z!], a, [layout.offDelta, layout.offZ, layout.offChan, layout.offBC]);
    const [grads, dInitialState] = scanBackward(gpu, KERNELS, s, l, dOut, dState, entering, decays, layout.size);
    const seq = s.rows * s.T * s.E;
    const [chanCount, bcCount] = [s.E * (s.N + 2), s.rows * s.T * 2 * s.N];
    const split = splitGrads(gpu, SPLIT_GRADS, grads!, [u.shape, u.shape, a.hasZ ? u.shape : [1], [s.E, s.N + 2], [s.rows, s.T, 2 * s.N]],
      [seq, chanCount, s.rows * s.chunks, layout.offChan, bcCount, s.eBlocks, layout.offBC].map((u32) => ({ u32 })),
      Math.max(seq, chanCount, bcCount), { HAS_Z: a.hasZ ? 1 : 0 });
    return [...split, dInitialState!];
  },
});

registerGradientOnce({
  kernelName: SELECTIVE_SCAN,
  inputsToSave: ['u', 'delta', 'chan', 'bc', 'z', 'initialState'],
  outputsToSave: [false, false, true, true],
  gradFunc: (dys, saved, attrs) => {
    const a = attrs as unknown as ScanAttrs;
    const [dOut, dState] = dys as tf.Tensor[];
    const [u, delta, chan, bc, z, , entering, decays] = saved;
    const [du, dDelta, dz, dChan, dBC, dInitialState] = tf.engine().runKernel(SELECTIVE_SCAN_GRAD,
      { u: u!, delta: delta!, chan: chan!, bc: bc!, z: z!, dOut: dOut!, dState: dState!, entering: entering!, decays: decays! },
      attrs) as tf.Tensor[];
    const result: Record<string, () => tf.Tensor> = { u: () => du!, delta: () => dDelta!, chan: () => dChan!, bc: () => dBC! };
    if (a.hasZ) result.z = () => dz!;
    if (a.hasInitialState) result.initialState = () => dInitialState!.clone();
    return result;
  },
});

registerKernelOnce({
  kernelName: SELECTIVE_SCAN_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { u, delta, chan, bc, state } = namedInputs(inputs, 'u', 'delta', 'chan', 'bc', 'state');
    const [B, E] = u.shape as [number, number];
    const l = launchOf([u, delta, chan, bc, inputs.z!], attrs as unknown as ScanAttrs);
    return scanStep(backend as WebGPUBackend, STEP, scanSizes(B, 1, E, chan.shape[1]! - 2), l, state, [B, E]);
  },
});

/**
 * tfjs kernel names, webgpu only: SelectiveSSM's table for the scan kernels from its weights,
 * chan = −exp(ALog) | D | deltaBias `[E, N + 2]` (inputs aLog `[E, N]`, d and bias `[E]`), in one
 * launch (`kernels/selective-ssm/table.wgsl`), and its gradient in the three, in one
 * (`table-backward.wgsl`), where tfjs ops took three and five.
 */
const SELECTIVE_SSM_TABLE = 'MixersSelectiveSSMTable';
const SELECTIVE_SSM_TABLE_GRAD = 'MixersSelectiveSSMTableGrad';
const TABLE: KernelSource = { name: 'SelectiveSSMTable', code: [grid, tableBody].join('\n') };
const TABLE_GRAD: KernelSource = { name: 'SelectiveSSMTableBackward', code: [grid, tableBackwardBody].join('\n') };
const TABLE_WG = 64;

/** One of the two, an invocation per entry of the table of `aLog` `[E, N]`: outputs by E and N. */
function runTable(gpu: WebGPUBackend, kernel: KernelSource, aLog: tf.TensorInfo, more: tf.TensorInfo[],
  outputs: (E: number, N: number) => number[][]): tf.TensorInfo[] {
  const [E, N] = aLog.shape as [number, number];
  const total = E * (N + 2);
  return runKernel(gpu, kernel, {
    inputs: [aLog, ...more], outputs: outputs(E, N), params: [{ u32: total }, { u32: N }],
    constants: { WG: TABLE_WG }, workgroups: grid1d(total, TABLE_WG),
  });
}

registerKernelOnce({
  kernelName: SELECTIVE_SSM_TABLE,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { aLog, d, bias } = namedInputs(inputs, 'aLog', 'd', 'bias');
    return runTable(backend as WebGPUBackend, TABLE, aLog, [d, bias], (E, N) => [[E, N + 2]])[0]!;
  },
});

registerKernelOnce({
  kernelName: SELECTIVE_SSM_TABLE_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { aLog, dChan } = namedInputs(inputs, 'aLog', 'dChan');
    return runTable(backend as WebGPUBackend, TABLE_GRAD, aLog, [dChan], (E, N) => [[E, N], [E], [E]]);
  },
});

registerGradientOnce({
  kernelName: SELECTIVE_SSM_TABLE,
  inputsToSave: ['aLog'],
  gradFunc: (dy, [aLog]) => {
    // made here: tfjs runs each input's gradient below in a scope of its own
    const [dALog, dD, dBias] = tf.engine().runKernel(SELECTIVE_SSM_TABLE_GRAD, { aLog: aLog!, dChan: dy as tf.Tensor }) as tf.Tensor[];
    return { aLog: () => dALog!, d: () => dD!, bias: () => dBias! };
  },
});

/**
 * SelectiveSSM's table for the scan kernels from its weights, `[E, N + 2]`: channelTable of
 * A = −exp(ALog), D and deltaBias (src/mixers/selective-ssm/op.ts) in one launch, and its
 * gradient in one. webgpu only.
 */
export function tableFromWeights(aLog: tf.Tensor2D, d: tf.Tensor1D, bias: tf.Tensor1D): tf.Tensor2D {
  return tf.engine().runKernel(SELECTIVE_SSM_TABLE, { aLog, d, bias }) as tf.Tensor2D;
}
