import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import subgroupRank from '../../kernels/common/subgroup-rank.wgsl';
import subgroupJobBody from '../../kernels/common/subgroup-job.wgsl';
import rowPerInvocation from '../../kernels/common/row-per-invocation.wgsl';
import rowPerSubgroup from '../../kernels/common/row-per-subgroup.wgsl';
import grid from '../../kernels/common/grid.wgsl';
import { grid1d, laneVariants, type KernelSource, type LaneVariants } from './runtime.js';

/** The largest subgroup WebGPU allows: the bound when the adapter does not say. */
const MAX_SUBGROUP_SIZE = 128;

/** The adapter's largest subgroup size, for each device {@link registerSubgroupBackend} made. */
const largestSubgroup = new WeakMap<GPUDevice, number>();

/**
 * Registers tfjs's `webgpu` backend on a device that has the adapter's `subgroups` feature,
 * which tfjs-backend-webgpu 4.22 does not request. The mixers' kernels then take their subgroup
 * paths: the tiled attention passes (forward, dQ, dK/dV) four lanes per row, which add their
 * parts of each score with subgroup shuffles; the split-K decode a subgroup per chunk of keys,
 * whose lanes merge their partial rows with subgroup shuffles; `ops.layerNorm` and the attention
 * gradient's row sums a subgroup per row. Without the feature, or without this call, they take
 * the paths that need none, with the same results up to rounding. The paths are meant for GPUs: on SwiftShader, whose subgroups are
 * its SIMD lanes, they measured slower or even. The device is otherwise the one tfjs asks for
 * (its features and limits, `WEBGPU_USE_LOW_POWER_GPU`). Call it after `navigator.gpu` exists
 * (in Node, after `installWebGPU`) and before the webgpu backend is first used; the backend is
 * made, as tfjs's is, at `tf.setBackend('webgpu')`.
 *
 * @returns Whether the adapter offers subgroups (false: the backend is still registered,
 *   without them).
 * @throws If there is no `navigator.gpu`, or the webgpu backend is already initialised.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import '@tensorflow/tfjs-backend-webgpu';
 * import { registerSubgroupBackend } from 'tfjs-mixers';
 *
 * const offered = await registerSubgroupBackend();
 * await tf.setBackend('webgpu');
 * console.log(offered ? 'subgroups on' : 'no subgroups on this adapter');
 * ```
 */
export async function registerSubgroupBackend(): Promise<boolean> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) {
    throw new Error('registerSubgroupBackend: expected WebGPU (navigator.gpu), found none; in Node call installWebGPU() first.');
  }
  if (tf.engine().registry.webgpu) {
    throw new Error('registerSubgroupBackend: expected to run before the webgpu backend is initialised, but it is; ' +
      'call it before tf.setBackend(\'webgpu\') or tf.ready().');
  }
  // the package registers tfjs's own factory on import; this one replaces it
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  const powerPreference = tf.env().get('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance';
  const offered = (await gpu.requestAdapter({ powerPreference }))?.features.has('subgroups') ?? false;
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', async () => {
    // an adapter of its own: one that has made a device cannot make another
    const adapter = await gpu.requestAdapter({ powerPreference });
    if (!adapter) throw new Error('registerSubgroupBackend: navigator.gpu.requestAdapter() returned no adapter.');
    const wanted: GPUFeatureName[] = ['timestamp-query', 'bgra8unorm-storage', 'subgroups' as GPUFeatureName];
    const limits = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: wanted.filter((f) => adapter.features.has(f)),
      // the limits tfjs-backend-webgpu asks for
      requiredLimits: {
        maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxBufferSize: limits.maxBufferSize,
        maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      },
    });
    const info = adapter.info as GPUAdapterInfo & { subgroupMaxSize?: number };
    if (info.subgroupMaxSize) largestSubgroup.set(device, info.subgroupMaxSize);
    return new WebGPUBackend(device, info);
  }, 3);
  return offered;
}

/**
 * The largest subgroup the backend's device may run, or null when the device lacks the
 * `subgroups` feature (tfjs's own device; see {@link registerSubgroupBackend}).
 */
export function subgroupLanes(backend: WebGPUBackend): number | null {
  const device = backend.device;
  let lanes = lanesOf.get(device);
  if (lanes === undefined) {
    lanes = device.features.has('subgroups') ? largestSubgroup.get(device) ?? MAX_SUBGROUP_SIZE : null;
    lanesOf.set(device, lanes);
  }
  return lanes;
}

// per device, once: launches ask on tfjs's recording path, where each read of `device.features`
// crosses into Dawn's Node bindings (0.3 µs, measured; a decode step asked some 30 times)
const lanesOf = new WeakMap<GPUDevice, number | null>();

/** What opens a module that uses subgroups (`kernels/common/subgroup-job.wgsl` says why the diagnostic is off). */
export const SUBGROUP_DIRECTIVES = 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);';

/** The WGSL that gives each subgroup of a workgroup its job (`kernels/common/subgroup-job.wgsl`); needs `grid.wgsl`. */
export const SUBGROUP_JOB = [subgroupRank, subgroupJobBody].join('\n');

/** Invocations per workgroup of a kernel with a subgroup per job: a multiple of every subgroup size. */
export const SUBGROUP_WG = 128;

/**
 * The workgroups that give each of `jobs` jobs a subgroup of up to `lanes` lanes (see
 * `kernels/common/subgroup-job.wgsl`), with {@link SUBGROUP_WG} invocations each.
 */
export function subgroupGrid(jobs: number, lanes: number): [number, number, number] {
  return grid1d(jobs * lanes, SUBGROUP_WG);
}

/** A row kernel (`row(m, lane, lanes)` over `params.rows`) in both lane widths, an invocation or a subgroup per row. */
export interface RowKernels {
  plain: LaneVariants;
  subgroups: LaneVariants;
}

/** Builds a row kernel's variants from its WGSL body (after grid.wgsl). */
export function rowKernels(name: string, body: string): RowKernels {
  return {
    plain: laneVariants(name, [grid, body, rowPerInvocation]),
    subgroups: laneVariants(`${name}Subgroups`, [grid, SUBGROUP_JOB, body, rowPerSubgroup], SUBGROUP_DIRECTIVES),
  };
}

/**
 * How to launch a row kernel over `rows` rows with vectors of `lanes` channels: a subgroup per
 * row where the device has subgroups, else an invocation per row in workgroups of `WG`.
 */
export function rowLaunch(
  backend: WebGPUBackend, kernels: RowKernels, lanes: 1 | 4, rows: number, WG: number,
): { kernel: KernelSource; constants: { WG: number }; workgroups: [number, number, number] } {
  const width = subgroupLanes(backend);
  if (width === null) return { kernel: kernels.plain[lanes], constants: { WG }, workgroups: grid1d(rows, WG) };
  return { kernel: kernels.subgroups[lanes], constants: { WG: SUBGROUP_WG }, workgroups: subgroupGrid(rows, width) };
}
