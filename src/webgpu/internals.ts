import type * as tf from '@tensorflow/tfjs';

/**
 * The version of `@tensorflow/tfjs-backend-webgpu` whose private members the runtime is
 * written against (its last release).
 */
export const WEBGPU_BACKEND_VERSION = '4.22.0';

/**
 * The members of tfjs-backend-webgpu 4.22's `WebGPUBackend` that tfjs-mixers drives: the
 * kernel runtime, the bench and the examples. They are private in its typings; this is the
 * one place they are declared. Get them through {@link backendInternals}, which checks them.
 */
export interface BackendInternals {
  device: GPUDevice;
  adapterInfo: { vendor?: string; architecture?: string };
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  /** Set only while `tf.time` runs. */
  activeTimers?: Array<{ name: string; query: Promise<number> }> | null;
  supportTimestampQuery: boolean;
  querySet: GPUQuerySet | null;
  querySetCount: number;
  tensorMap: {
    has(dataId: object): boolean;
    /** `values`: the data as the CPU holds it, before (or besides) the buffer. */
    get(dataId: object): { resource: GPUBuffer | null; refCount: number; values?: ArrayLike<number> | null };
  };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

// every member, so the check cannot drift from the interface: 'field' must be present,
// 'method' a function; 'unset' fields exist only at times (tfjs sets them lazily)
const MEMBERS: Record<keyof BackendInternals, 'field' | 'method' | 'unset'> = {
  device: 'field',
  adapterInfo: 'field',
  commandEncoder: 'field',
  computePassEncoder: 'field',
  dispatchCountInPass: 'field',
  commandQueueOwnedIds: 'field',
  activeTimers: 'unset',
  supportTimestampQuery: 'field',
  querySet: 'field',
  querySetCount: 'field',
  tensorMap: 'field',
  ensureCommandEncoderReady: 'method',
  endComputePassEncoder: 'method',
  submitQueue: 'method',
  getQueryTime: 'method',
  uploadToGPU: 'method',
  makeTensorInfo: 'method',
  disposeData: 'method',
};

// backends that had every member: checked once each
const checked = new WeakSet<object>();

/**
 * The first member of {@link BackendInternals} that `backend` lacks, or null when it has them
 * all. A backend that passes is remembered and not checked again.
 */
export function missingInternal(backend: object): string | null {
  if (checked.has(backend)) return null;
  const b = backend as Record<string, unknown>;
  for (const [name, kind] of Object.entries(MEMBERS)) {
    if (kind === 'field' && !(name in b)) return name;
    if (kind === 'method' && typeof b[name] !== 'function') return name;
  }
  checked.add(backend);
  return null;
}

/** The error for a backend without `member`, naming who needs it and the version it was written for. */
export function internalsError(who: string, member: string): Error {
  return new Error(`${who}: the active 'webgpu' backend has no WebGPUBackend.${member}, a private member of ` +
    `@tensorflow/tfjs-backend-webgpu ${WEBGPU_BACKEND_VERSION} that tfjs-mixers' WGSL kernels drive; another ` +
    `version of @tensorflow/tfjs-backend-webgpu is loaded. Install @tensorflow/tfjs-backend-webgpu@${WEBGPU_BACKEND_VERSION}, ` +
    `or use implementation 'reference'.`);
}

/**
 * `backend`'s private members, after checking that it has every one (else throws
 * {@link internalsError}, naming `who`).
 *
 * @example
 * ```ts
 * // the GPU device tfjs's webgpu backend made
 * const device = backendInternals(tf.backend(), 'my kernel').device;
 * ```
 */
export function backendInternals(backend: object, who = 'tfjs-mixers'): BackendInternals {
  const missing = missingInternal(backend);
  if (missing) throw internalsError(who, missing);
  return backend as BackendInternals;
}

/**
 * Whether the backend's adapter is SwiftShader, which runs WGSL on the CPU, four invocations to
 * a SIMD register: kernels that tune their shape to the adapter ask this.
 *
 * @example
 * ```ts
 * const invocations = onSwiftShader(tf.backend()) ? 4 : 64;
 * ```
 */
export function onSwiftShader(backend: object): boolean {
  const info = backendInternals(backend).adapterInfo;
  return info.architecture === 'swiftshader' || info.vendor === 'google';
}

/** The {@link warnOnce} key of the warning that `implementation: 'auto'` falls back to the reference. */
export const INTERNALS_WARNING = 'tfjs-mixers: webgpu internals missing';

// on globalThis, so that the library's ESM and CJS builds loaded together still warn once
const warned: Set<string> = ((globalThis as { __tfjsMixersWarned?: Set<string> }).__tfjsMixersWarned ??= new Set());

/** `console.warn(message)`, the first time `key` is seen in this process only. */
export function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  console.warn(message);
}
