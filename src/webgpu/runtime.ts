import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import lanes1 from '../../kernels/common/lanes-1.wgsl';
import lanes4 from '../../kernels/common/lanes-4.wgsl';
import grid from '../../kernels/common/grid.wgsl';
import fill from '../../kernels/common/fill.wgsl';
import { backendInternals, type BackendInternals } from './internals.js';
import { bindGroupFor, paramsBinding } from './bind-groups.js';

/**
 * A tfjs env flag, for tests: when true, every new output of a WGSL kernel is filled with NaN
 * in the same compute pass just before the kernel runs, so an element a kernel skips reads back
 * as NaN. Outputs written in place (`updates`) are left as they are. Off by default.
 *
 * @example
 * ```ts
 * tf.env().set(POISON_OUTPUTS_FLAG, true); // as the library's own tests do
 * ```
 */
export const POISON_OUTPUTS_FLAG = 'MIXERS_POISON_OUTPUTS';
tf.env().registerFlag(POISON_OUTPUTS_FLAG, () => false);

// how the runtime's errors about one kernel start (a launch past a limit, a failed compile);
// the kernel function that launched it renames it after its op
const KERNEL_ERROR = 'tfjs-mixers: kernel ';

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
   * function created and that nothing else holds yet (a scan's levels, filled one pass at a time),
   * or long-lived ones whose buffer the caller has checked it owns alone ({@link ownsData}: a KV
   * cache). A copy of their values that a read left on the CPU is dropped, so later reads see
   * the write.
   */
  updates?: tf.TensorInfo[];
  /** The `Params` uniform, or none. */
  params?: Param[];
  /** WGSL `override` constants; part of the pipeline cache key. */
  constants?: Record<string, number>;
  /** Workgroup counts. Use {@link grid1d} for a flat index space. */
  workgroups: [number, number, number];
}

export const MAX_WORKGROUPS_PER_DIM = 65535;

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

/** A compiled kernel: its pipeline, the bind group layout it was made with, and its compile error once WebGPU reports one. */
interface Compiled {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  error?: string;
}

/**
 * Per device, by the kernel's code, then by what else the pipeline is built from. Two levels,
 * because a launch looks its pipeline up on tfjs's CPU-bound recording path: a key that
 * concatenated the code would copy and hash tens of kilobytes a dispatch, where the kernel
 * sources, built once each, keep their code's hash.
 */
const pipelines = new WeakMap<GPUDevice, Map<string, Map<string, Compiled>>>();

function compiledFor(
  device: GPUDevice,
  kernel: KernelSource,
  constants: Record<string, number>,
  numInputs: number,
  numOutputs: number,
  hasParams: boolean,
): Compiled {
  let byCode = pipelines.get(device);
  if (!byCode) {
    byCode = new Map();
    pipelines.set(device, byCode);
  }
  let variants = byCode.get(kernel.code);
  if (!variants) {
    variants = new Map();
    byCode.set(kernel.code, variants);
  }
  // with the code, everything the pipeline is built from: no pipeline is ever reused for code
  // or constants it was not compiled for
  const key = `${numInputs}|${numOutputs}|${hasParams}|${JSON.stringify(constants)}`;
  let compiled = variants.get(key);
  if (!compiled) {
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
    const layout = device.createBindGroupLayout({ label: kernel.name, entries });
    // WebGPU reports a bad shader or constant asynchronously and then runs nothing, which
    // reads back as zeros: catch it, so the next launch of this kernel throws instead
    device.pushErrorScope('validation');
    const pipeline = device.createComputePipeline({
      label: kernel.name,
      layout: device.createPipelineLayout({ label: kernel.name, bindGroupLayouts: [layout] }),
      compute: {
        module: device.createShaderModule({ label: kernel.name, code: kernel.code }),
        entryPoint: 'main',
        constants,
      },
    });
    const made: Compiled = { pipeline, layout };
    void device.popErrorScope().then((error) => {
      if (error) made.error = `${KERNEL_ERROR}${kernel.name} failed to compile: ${error.message}`;
    });
    variants.set(key, made);
    compiled = made;
  }
  if (compiled.error) throw new Error(compiled.error);
  return compiled;
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

/**
 * Builds both lane widths of a kernel from its WGSL parts (helpers first, the entry point last);
 * `directives` (`enable subgroups;`) open the module.
 */
export function laneVariants(name: string, parts: string[], directives?: string): LaneVariants {
  const open = directives ? [directives] : [];
  return {
    1: { name, code: [...open, lanes1, ...parts].join('\n') },
    4: { name: `${name}Vec4`, code: [...open, lanes4, ...parts].join('\n') },
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

const FILL: KernelSource = { name: 'FillWords', code: [grid, fill].join('\n') };
// the same fill under a label of its own, which tests that list a run's pipelines leave out (a
// line of its own keeps its pipeline apart: compiledFor keeps pipelines by code)
const POISON: KernelSource = { name: 'PoisonOutput', code: `${FILL.code}\n// MIXERS_POISON_OUTPUTS` };
const FILL_WG = 256;
/** A quiet NaN's float32 bits: what {@link POISON_OUTPUTS_FLAG} fills outputs with. */
const POISON_BITS = 0x7fc00000;

const shapeOf = (o: Launch['outputs'][number]) => Array.isArray(o) ? o : o.shape;

/** The launch as an error message shows it: every binding's shape, and the grid. */
function describeLaunch(launch: Launch): string {
  const shapes = (ts: Array<{ shape: number[] }>) => ts.map((t) => `[${t.shape.join(', ')}]`).join(', ');
  return `inputs ${shapes(launch.inputs)}; outputs ${shapes(launch.outputs.map((o) => ({ shape: shapeOf(o) })))}` +
    `${launch.updates?.length ? `; updates ${shapes(launch.updates)}` : ''}; workgroups [${launch.workgroups.join(', ')}]`;
}

/**
 * The public op behind a registered kernel, by the naming convention `Mixers` + the op's name:
 * `MixersFlashAttention` → `flashAttention`, `MixersFlashAttentionGradQ` → `flashAttentionGradQ`.
 */
function opName(kernelName: string): string {
  const name = kernelName.replace(/^Mixers/, '');
  return name.charAt(0).toLowerCase() + name.slice(1);
}

/**
 * Checks a launch against the device's limits before anything is allocated or recorded: a
 * dispatch past them would be dropped by WebGPU with only a validation message, leaving its
 * outputs unwritten.
 */
function checkLaunch(device: GPUDevice, kernel: KernelSource, launch: Launch): void {
  const fail = (what: string) =>
    new Error(`${KERNEL_ERROR}${kernel.name} cannot run on this device: ${what}. Its launch: ${describeLaunch(launch)}.`);
  const maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
  launch.workgroups.forEach((n, dim) => {
    if (!Number.isInteger(n) || n < 1) throw fail(`workgroup count ${n} in dimension ${'xyz'[dim]} is not a positive integer`);
    if (n > maxGroups) {
      throw fail(`${n} workgroups in dimension ${'xyz'[dim]} exceed maxComputeWorkgroupsPerDimension = ${maxGroups}`);
    }
  });
  const maxBinding = device.limits.maxStorageBufferBindingSize;
  const maxBuffer = device.limits.maxBufferSize;
  const bound = [...launch.inputs, ...launch.outputs.map((o) => ({ shape: shapeOf(o) })), ...launch.updates ?? []];
  for (const o of launch.outputs) {
    if (tf.util.sizeFromShape(shapeOf(o)) === 0) throw fail(`an output of shape [${shapeOf(o).join(', ')}] is empty`);
  }
  for (const t of bound) {
    // every dtype a kernel binds (float32, int32) is 4 bytes
    const bytes = 4 * tf.util.sizeFromShape(t.shape);
    if (bytes > maxBinding) {
      throw fail(`a binding of shape [${t.shape.join(', ')}] takes ${bytes} bytes, over maxStorageBufferBindingSize = ${maxBinding}`);
    }
    if (bytes > maxBuffer) {
      throw fail(`a buffer of shape [${t.shape.join(', ')}] takes ${bytes} bytes, over maxBufferSize = ${maxBuffer}`);
    }
  }
}

/** Fills `output` with NaN bits in `pass`, ahead of the kernel that will write it. */
function poisonOutput(b: BackendInternals, pass: GPUComputePassEncoder, output: GPUBuffer, words: number): void {
  const { pipeline, layout } = compiledFor(b.device, POISON, { WG: FILL_WG }, 0, 1, true);
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroupFor(b.device, POISON.name, layout, [output], paramsBinding(b.device, [{ u32: words }, { u32: POISON_BITS }])));
  pass.dispatchWorkgroups(...grid1d(words, FILL_WG));
}

/**
 * A new int32 tensor of `words` elements, every one holding the 32 bits `value`, written by one
 * dispatch (as {@link runKernel} records it): a kernel's scratch words, such as a one-pass scan's
 * status.
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * const status = filledWords(backend, 4, 0xffffffff);          // every bit set
 * tf.engine().makeTensorFromTensorInfo(status).print();       // [-1, -1, -1, -1]
 * ```
 */
export function filledWords(backend: WebGPUBackend, words: number, value: number): tf.TensorInfo {
  return runKernel(backend, FILL, {
    inputs: [], outputs: [{ shape: [words], dtype: 'int32' }], params: [{ u32: words }, { u32: value }], constants: { WG: FILL_WG },
    workgroups: grid1d(words, FILL_WG),
  })[0]!;
}

/**
 * Records one dispatch of a hand-written WGSL kernel into tfjs's own command encoder, so
 * it is ordered and batched with tfjs's kernels, timed by `tf.time`, and its outputs are
 * ordinary tfjs tensors freed with them.
 *
 * Binding convention, in this order: inputs as `var<storage, read>` (0..I-1), outputs then
 * updates as `var<storage, read_write>` (I..I+O+U-1), then `params` as `var<uniform>` when given.
 * Returns the new outputs only.
 *
 * The launch is first checked against the device's limits (workgroups per dimension, storage
 * binding size, buffer size); past one, it throws naming the kernel, the limit and the shapes,
 * having allocated and recorded nothing. Throws too when `backend` lacks one of the private
 * members the runtime drives (see `internals.ts`).
 */
export function runKernel(backend: WebGPUBackend, kernel: KernelSource, launch: Launch): tf.TensorInfo[] {
  const b = backendInternals(backend, `tfjs-mixers: kernel ${kernel.name}`);
  checkLaunch(b.device, kernel, launch);
  const hasParams = launch.params !== undefined && launch.params.length > 0;
  const numWritten = launch.outputs.length + (launch.updates?.length ?? 0);
  const { pipeline, layout } = compiledFor(
    b.device, kernel, launch.constants ?? {}, launch.inputs.length, numWritten, hasParams);

  const outputs = launch.outputs.map((o) => Array.isArray(o) ? b.makeTensorInfo(o, 'float32') : b.makeTensorInfo(o.shape, o.dtype));
  launched?.push(...outputs);
  const written = [...outputs, ...launch.updates ?? []];
  const buffers = [...launch.inputs, ...written].map((t) => {
    b.uploadToGPU(t.dataId);
    // buffers bound to a pending command buffer must not be recycled before it is submitted
    b.commandQueueOwnedIds.add(t.dataId);
    return b.tensorMap.get(t.dataId).resource!;
  });
  for (const t of launch.updates ?? []) {
    // tfjs keeps the values a read downloaded beside the buffer and serves later reads (and its
    // CPU kernels) from them: after an in-place write they would be stale
    (b.tensorMap.get(t.dataId) as { values?: unknown }).values = null;
  }
  const bindGroup = bindGroupFor(b.device, kernel.name, layout, buffers,
    hasParams ? paramsBinding(b.device, launch.params!) : undefined);

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
  if (tf.env().getBool(POISON_OUTPUTS_FLAG)) {
    // dispatches in one pass see each other's storage writes in order: the kernel runs after the fill
    outputs.forEach((o, i) => poisonOutput(b, pass, buffers[launch.inputs.length + i]!, tf.util.sizeFromShape(o.shape)));
  }
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...launch.workgroups);
  traced?.push(pipeline, launch.workgroups.join('×'));
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

/**
 * Whether `t`'s data belongs to `t` alone on the webgpu `backend`: tfjs shares one buffer
 * between a tensor and its clones, reshapes and other views, counting them, and a kernel may
 * write in place (`updates`) only into a buffer that no other live tensor reads.
 *
 * @example
 * ```ts
 * const keys = tf.zeros([1, 16, 2, 8]);
 * ownsData(tf.backend() as WebGPUBackend, keys); // true
 * const view = keys.reshape([16, 16]);
 * ownsData(tf.backend() as WebGPUBackend, keys); // false: view reads it too
 * view.dispose();
 * ownsData(tf.backend() as WebGPUBackend, keys); // true
 * ```
 */
export function ownsData(backend: WebGPUBackend, t: tf.TensorInfo): boolean {
  const b = backendInternals(backend, 'tfjs-mixers: ownsData');
  return b.tensorMap.has(t.dataId) && b.tensorMap.get(t.dataId).refCount === 1;
}

/**
 * Whether `t`'s data is still on the CPU, not yet in a buffer, and every value 0: what tfjs makes
 * as the gradient of an output that the loss does not reach (a final state), anew at every
 * backward. A kernel that binds it would upload it; one told it is zero need not.
 *
 * @example
 * ```ts
 * zerosOnHost(tf.backend() as WebGPUBackend, tf.zeros([2, 8])); // true
 * ```
 */
export function zerosOnHost(backend: WebGPUBackend, t: tf.TensorInfo): boolean {
  const data = backendInternals(backend, 'tfjs-mixers: zerosOnHost').tensorMap.get(t.dataId);
  const values = data.values;
  if (data.resource != null || values == null) return false;
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) return false;
  return true;
}

// each launch's pipeline and workgroups while launchTrace runs
let traced: unknown[] | null = null;

/**
 * What `run` launches of this library's kernels: each launch's compiled pipeline (the same object
 * for the same code and constants) and its workgroups, in order. Two runs whose traces are equal
 * ({@link sameLaunches}) ran the same kernels on the same grids; `tuneKernels` so tells a flag's
 * values apart from those that resolve to the same kernels.
 */
export function launchTrace<T>(run: () => T): { result: T; trace: unknown[] } {
  const outer = traced;
  const trace: unknown[] = [];
  traced = trace;
  try {
    return { result: run(), trace };
  } finally {
    traced = outer;
  }
}

/** Whether two {@link launchTrace} traces are the same launches. */
export function sameLaunches(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// the outputs of every launch of the kernel function now running (see registerKernelOnce)
let launched: tf.TensorInfo[] | null = null;

/** Frees those of `infos` that are still held: a kernel function may have freed some itself. */
function freeHeld(backend: object, infos: tf.TensorInfo[]): void {
  const b = backendInternals(backend);
  for (const { dataId } of infos) {
    // a second disposeData of a freed tensor that is still bound to the pending batch would free its buffer twice
    if (b.tensorMap.has(dataId) && b.tensorMap.get(dataId).refCount > 0) b.disposeData(dataId);
  }
}

/**
 * Registers a kernel unless one is registered already under its name and backend: loading the
 * library twice in one process (its ESM and CJS builds) registers each kernel once, without
 * tfjs's "already registered" warning. If the kernel function throws (a later launch past a
 * device limit), the outputs its earlier launches made are freed before the error propagates.
 */
export function registerKernelOnce(config: tf.KernelConfig): void {
  if (tf.getKernel(config.kernelName, config.backendName)) return;
  tf.registerKernel({
    ...config,
    kernelFunc: (args) => {
      const outer = launched;
      const mine: tf.TensorInfo[] = [];
      launched = mine;
      try {
        return config.kernelFunc(args);
      } catch (error) {
        freeHeld(args.backend, mine);
        if (error instanceof Error && error.message.startsWith(KERNEL_ERROR)) {
          error.message = `${opName(config.kernelName)}: ${error.message.slice('tfjs-mixers: '.length)}`;
        }
        throw error;
      } finally {
        launched = outer;
      }
    },
  });
}

/** Registers a kernel's gradient unless one is registered already (see {@link registerKernelOnce}). */
export function registerGradientOnce(config: tf.GradConfig): void {
  if (tf.getGradient(config.kernelName)) return;
  tf.registerGradient(config);
}
