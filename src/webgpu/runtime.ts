import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import lanes1 from '../../kernels/common/lanes-1.wgsl';
import lanes4 from '../../kernels/common/lanes-4.wgsl';

/**
 * The members of tfjs-backend-webgpu 4.22's `WebGPUBackend` that the runtime drives.
 * They are private in its typings; 4.22 is the last release, so they are stable.
 */
interface BackendInternals {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  activeTimers: Array<{ name: string; query: Promise<number> }> | null;
  supportTimestampQuery: boolean;
  querySet: GPUQuerySet | null;
  querySetCount: number;
  tensorMap: { get(dataId: object): { resource: GPUBuffer | null } };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  makeUniforms(uniforms: Array<{ type: 'int32' | 'uint32' | 'float32'; data: number[] }>): GPUBufferBinding;
}

/** A hand-written WGSL compute kernel: one `main` entry point, bindings by convention. */
export interface KernelSource {
  /** Label for pipelines, profiles and error messages. */
  name: string;
  /** WGSL source text, loaded from `kernels/**\/*.wgsl`. */
  code: string;
}

/** A field of the kernel's `Params` uniform struct, in declaration order. */
export type Param = { u32: number } | { i32: number } | { f32: number };

/** What one dispatch of a kernel reads, writes and how it is launched. */
export interface Launch {
  inputs: tf.TensorInfo[];
  /**
   * The outputs the kernel writes, allocated from tfjs's buffer pool: a shape for float32, or a
   * shape and `'int32'` for one the WGSL declares as i32 or u32 (bits, indices).
   */
  outputs: Array<number[] | { shape: number[]; dtype: 'int32' }>;
  /**
   * Tensors this dispatch also writes, in place: ones an earlier dispatch of the same kernel
   * function created and that nothing else holds yet (a scan's levels, filled one pass at a time).
   */
  updates?: tf.TensorInfo[];
  /** The `Params` uniform, or none. */
  params?: Param[];
  /** WGSL `override` constants; part of the pipeline cache key. */
  constants?: Record<string, number>;
  /** Workgroup counts. Use {@link grid1d} for a flat index space. */
  workgroups: [number, number, number];
}

const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * Workgroups covering `count` invocations of `workgroupSize` threads, folded into two
 * dimensions past WebGPU's 65535-per-dimension limit. Kernels recover the flat index as
 * `(wid.y * nwg.x + wid.x) * WG + lid.x` and bound-check it.
 */
export function grid1d(count: number, workgroupSize: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(count / workgroupSize));
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIM);
  return [Math.ceil(groups / y), y, 1];
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();
const compileErrors = new Map<string, string>();

function pipelineFor(
  device: GPUDevice,
  kernel: KernelSource,
  constants: Record<string, number>,
  numInputs: number,
  numOutputs: number,
  hasParams: boolean,
): GPUComputePipeline {
  let cache = pipelines.get(device);
  if (!cache) {
    cache = new Map();
    pipelines.set(device, cache);
  }
  // the key holds everything the pipeline is built from, the code itself included: no pipeline
  // is ever reused for code or constants it was not compiled for
  const key = `${kernel.code}|${numInputs}|${numOutputs}|${hasParams}|${JSON.stringify(constants)}`;
  let pipeline = cache.get(key);
  if (!pipeline) {
    const entries: GPUBindGroupLayoutEntry[] = [];
    for (let i = 0; i < numInputs; i++) {
      entries.push({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } });
    }
    for (let i = 0; i < numOutputs; i++) {
      entries.push({ binding: numInputs + i, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } });
    }
    if (hasParams) {
      entries.push({ binding: numInputs + numOutputs, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
    }
    const layout = device.createPipelineLayout({
      label: kernel.name,
      bindGroupLayouts: [device.createBindGroupLayout({ label: kernel.name, entries })],
    });
    // WebGPU reports a bad shader or constant asynchronously and then runs nothing, which
    // reads back as zeros: catch it, so the next launch of this kernel throws instead
    device.pushErrorScope('validation');
    pipeline = device.createComputePipeline({
      label: kernel.name,
      layout,
      compute: {
        module: device.createShaderModule({ label: kernel.name, code: kernel.code }),
        entryPoint: 'main',
        constants,
      },
    });
    void device.popErrorScope().then((error) => {
      if (error) compileErrors.set(key, `tfjs-mixers: kernel ${kernel.name} failed to compile: ${error.message}`);
    });
    cache.set(key, pipeline);
  }
  const error = compileErrors.get(key);
  if (error) throw new Error(error);
  return pipeline;
}

/**
 * A kernel written over the WGSL alias `V`, in both widths: one channel per invocation, or four
 * adjacent channels as `vec4<f32>` (16-byte loads and stores), usable when the channel count
 * is a multiple of 4.
 */
export interface LaneVariants {
  1: KernelSource;
  4: KernelSource;
}

/** Builds both lane widths of a kernel from its WGSL parts (helpers first, the entry point last). */
export function laneVariants(name: string, parts: string[]): LaneVariants {
  return {
    1: { name, code: [lanes1, ...parts].join('\n') },
    4: { name: `${name}Vec4`, code: [lanes4, ...parts].join('\n') },
  };
}

/** 4 when `width` channels split into vec4s, else 1. */
export function lanesFor(width: number): 1 | 4 {
  return width % 4 === 0 ? 4 : 1;
}

/** The named inputs of a kernel call, each checked present (tfjs types them as optional). */
export function namedInputs<K extends string>(inputs: tf.NamedTensorInfoMap, ...names: K[]): Record<K, tf.TensorInfo> {
  const out = {} as Record<K, tf.TensorInfo>;
  for (const name of names) {
    const t = inputs[name];
    if (!t) throw new Error(`tfjs-mixers: kernel input '${name}' is missing.`);
    out[name] = t;
  }
  return out;
}

/** The active backend as a webgpu backend, or a clear error. */
export function webgpuBackend(): WebGPUBackend {
  if (tf.getBackend() !== 'webgpu') {
    throw new Error(`tfjs-mixers: a WGSL kernel needs the 'webgpu' backend, but the active backend is '${tf.getBackend()}'.`);
  }
  return tf.backend() as unknown as WebGPUBackend;
}

/**
 * Records one dispatch of a hand-written WGSL kernel into tfjs's own command encoder, so
 * it is ordered and batched with tfjs's kernels, timed by `tf.time`, and its outputs are
 * ordinary tfjs tensors freed with them.
 *
 * Binding convention, in this order: inputs as `var<storage, read>` (0..I-1), outputs then
 * updates as `var<storage, read_write>` (I..I+O+U-1), then `params` as `var<uniform>` when given.
 * Returns the new outputs only.
 */
export function runKernel(backend: WebGPUBackend, kernel: KernelSource, launch: Launch): tf.TensorInfo[] {
  const b = backend as unknown as BackendInternals;
  const outputs = launch.outputs.map((o) => Array.isArray(o) ? b.makeTensorInfo(o, 'float32') : b.makeTensorInfo(o.shape, o.dtype));
  if (outputs.some((o) => tf.util.sizeFromShape(o.shape) === 0)) {
    throw new Error(`tfjs-mixers: kernel ${kernel.name} was launched with an empty output.`);
  }
  const hasParams = launch.params !== undefined && launch.params.length > 0;
  const written = [...outputs, ...launch.updates ?? []];
  const pipeline = pipelineFor(
    b.device, kernel, launch.constants ?? {}, launch.inputs.length, written.length, hasParams);

  const resources: GPUBindingResource[] = [];
  for (const t of [...launch.inputs, ...written]) {
    b.uploadToGPU(t.dataId);
    // buffers bound to a pending command buffer must not be recycled before it is submitted
    b.commandQueueOwnedIds.add(t.dataId);
    resources.push({ buffer: b.tensorMap.get(t.dataId).resource! });
  }
  if (hasParams) {
    resources.push(b.makeUniforms(launch.params!.map((p) =>
      'u32' in p ? { type: 'uint32' as const, data: [p.u32] }
        : 'i32' in p ? { type: 'int32' as const, data: [p.i32] }
          : { type: 'float32' as const, data: [p.f32] })));
  }
  const bindGroup = b.device.createBindGroup({
    label: kernel.name,
    layout: pipeline.getBindGroupLayout(0),
    entries: resources.map((resource, binding) => ({ binding, resource })),
  });

  b.ensureCommandEncoderReady();
  const timed = b.activeTimers != null;
  if (timed && b.supportTimestampQuery) {
    // tf.time: this dispatch gets a pass of its own, bracketed by timestamps, as tfjs's own kernels do
    b.endComputePassEncoder();
    b.querySet ??= b.device.createQuerySet({ type: 'timestamp', count: b.querySetCount });
    b.computePassEncoder = b.commandEncoder!.beginComputePass({
      timestampWrites: { querySet: b.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
  } else if (!b.computePassEncoder) {
    b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  }
  const pass = b.computePassEncoder!;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...launch.workgroups);
  b.dispatchCountInPass++;
  if (timed || tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (timed) {
      b.activeTimers!.push({ name: kernel.name, query: b.getQueryTime() });
    } else {
      b.submitQueue();
    }
  }
  return outputs;
}
