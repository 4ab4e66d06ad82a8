import type * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import type { Param } from './runtime.js';

/**
 * What a launch binds, kept between launches. Recording a dispatch is CPU work on tfjs's path
 * (docs/benchmarks.md: 80–90 µs a launch in Node, of which 22 went to `createBindGroup` and 8 to
 * tfjs's pooled uniform buffer), and a decode step or a training step launches the same kernels
 * with the same params on the same pooled buffers again and again. So a launch's params live in
 * a uniform buffer kept for their bits, its bind group is kept for its layout and buffers, and
 * a table it reads that depends only on its attrs (BlockSparse's tile plan, the rotary
 * frequencies) is a tensor kept for its contents.
 *
 * A bind group names buffers, not their contents, so one kept for the same layout and the same
 * buffers is the one WebGPU would make again. A buffer tfjs destroys is never bound again, and
 * so never meets a kept group that names it. The params and groups are kept per device, the
 * tables per backend, all bounded, least recently used first out; a uniform buffer or group
 * dropped is left to the garbage collector, never destroyed, since a command buffer not yet
 * submitted may bind it, and a table dropped is disposed through tfjs, which waits for that.
 */

/** Kept uniform buffers per device: enough for every distinct Params of a model's launches. */
export const KEPT_PARAMS = 512;
/** Kept bind groups per device: a model's launches, on tfjs's rotating pool buffers. */
export const KEPT_BIND_GROUPS = 2048;
/** Kept tables per backend: BlockSparse's tile plans, two a (sequence length, layout), and rotary frequencies. */
export const KEPT_TABLES = 64;

const params = new WeakMap<GPUDevice, Map<string, GPUBufferBinding>>();
const groups = new WeakMap<GPUDevice, Map<string, GPUBindGroup>>();
const tables = new WeakMap<WebGPUBackend, Map<string, tf.TensorInfo>>();

// a number per object a key names (layouts, buffers, kept uniform bindings)
const ids = new WeakMap<object, number>();
let nextId = 0;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) {
    id = nextId++;
    ids.set(o, id);
  }
  return id;
}

/**
 * The entry of `cache` under `key` (now the most recently used), or `make`'s, dropping the least
 * recently used past `limit` (handed to `drop` where given).
 */
function kept<T>(cache: Map<string, T>, key: string, limit: number, make: () => T, drop?: (entry: T) => void): T {
  const found = cache.get(key);
  if (found !== undefined) {
    cache.delete(key);
    cache.set(key, found);
    return found;
  }
  const made = make();
  if (cache.size >= limit) {
    const [oldest, entry] = cache.entries().next().value!;
    cache.delete(oldest);
    drop?.(entry);
  }
  cache.set(key, made);
  return made;
}

function cacheOf<O extends object, T>(caches: WeakMap<O, Map<string, T>>, owner: O): Map<string, T> {
  let cache = caches.get(owner);
  if (!cache) {
    cache = new Map();
    caches.set(owner, cache);
  }
  return cache;
}

/**
 * A uniform binding holding `fields` (a `Params` struct of 4-byte scalars, in declaration
 * order), kept for their bits: a float's −0 and NaN payloads are their own keys.
 *
 * @example
 * ```ts
 * const device = (tf.backend() as WebGPUBackend).device;
 * const a = paramsBinding(device, [{ u32: 64 }, { f32: 0.5 }]);
 * paramsBinding(device, [{ u32: 64 }, { f32: 0.5 }]) === a;   // true: the same buffer, written once
 * ```
 */
export function paramsBinding(device: GPUDevice, fields: Param[]): GPUBufferBinding {
  const words = new Uint32Array(fields.length);
  const ints = new Int32Array(words.buffer);
  const floats = new Float32Array(words.buffer);
  fields.forEach((p, i) => {
    if ('u32' in p) words[i] = p.u32;
    else if ('i32' in p) ints[i] = p.i32;
    else floats[i] = p.f32;
  });
  return kept(cacheOf(params, device), words.join(','), KEPT_PARAMS, () => {
    const buffer = device.createBuffer({ label: 'tfjs-mixers params', size: words.byteLength, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint32Array(buffer.getMappedRange()).set(words);
    buffer.unmap();
    return { buffer, offset: 0, size: words.byteLength };
  });
}

/**
 * A bind group of `layout` binding `buffers` whole at 0, 1, … and then `uniform` (from
 * {@link paramsBinding}) where given, kept for those objects.
 *
 * @example
 * ```ts
 * const device = (tf.backend() as WebGPUBackend).device;
 * const layout = device.createBindGroupLayout({ entries: [0, 1].map((binding) =>
 *   ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' as const } })) });
 * const buffers = [0, 1].map(() => device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE }));
 * const group = bindGroupFor(device, 'MyKernel', layout, buffers);   // binding 0 and 1
 * bindGroupFor(device, 'MyKernel', layout, buffers) === group;        // true: made once
 * ```
 */
export function bindGroupFor(device: GPUDevice, label: string, layout: GPUBindGroupLayout, buffers: GPUBuffer[],
  uniform?: GPUBufferBinding): GPUBindGroup {
  let key = `${idOf(layout)}`;
  for (const buffer of buffers) key += `,${idOf(buffer)}`;
  if (uniform) key += `|${idOf(uniform)}`;
  return kept(cacheOf(groups, device), key, KEPT_BIND_GROUPS, () => {
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
    if (uniform) entries.push({ binding: buffers.length, resource: uniform });
    return device.createBindGroup({ label, layout, entries });
  });
}

/**
 * A tensor of `backend` of `shape` holding `make()`'s values (int32 or float32, as their array),
 * made once for `key` (equal keys, equal values) and kept: tfjs uploads it the first time a launch binds it, where a table
 * made for each launch would be uploaded at each (two pool buffers, a mapped copy, the compute
 * pass ended: 100–150 µs of recording). Per backend and bounded ({@link KEPT_TABLES}), least
 * recently used first out; a table dropped is disposed, which tfjs defers past a pending command
 * buffer that binds it. Callers bind it and never dispose it.
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * const plan = keptTable(backend, 'plan|256', [3, 2], () => Int32Array.of(0, 64, 64, 128, 128, 256));
 * keptTable(backend, 'plan|256', [3, 2], () => new Int32Array(6)) === plan;   // true: made once
 * ```
 */
export function keptTable(backend: WebGPUBackend, key: string, shape: number[], make: () => Int32Array | Float32Array): tf.TensorInfo {
  return kept(cacheOf(tables, backend), key, KEPT_TABLES, () => {
    const values = make();
    return backend.makeTensorInfo(shape, values instanceof Float32Array ? 'float32' : 'int32', values);
  }, (table) => backend.disposeData(table.dataId));
}
