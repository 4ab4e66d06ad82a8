import * as tf from '@tensorflow/tfjs';
import { INTERNALS_WARNING, internalsError, missingInternal, warnOnce } from './webgpu/internals.js';

/**
 * Which implementation an op or layer runs.
 * - `'auto'`: the WGSL kernels on the `webgpu` backend, the tfjs-ops reference elsewhere.
 * - `'webgpu'`: the WGSL kernels; throws on any other backend.
 * - `'reference'`: the tfjs-ops reference on every backend (the ground truth).
 */
export type Implementation = 'auto' | 'webgpu' | 'reference';

/** Every {@link Implementation}, for option checks. */
export const IMPLEMENTATIONS: readonly Implementation[] = ['auto', 'webgpu', 'reference'];

/** A shape as tfjs prints it in messages, with unknown dimensions as `null`: `[null, 16]`. */
export function formatShape(shape: ReadonlyArray<number | null | undefined>): string {
  return `[${shape.map((d) => (d == null ? 'null' : String(d))).join(', ')}]`;
}

/**
 * A received value, for error messages: a tensor's dtype and shape (with the right article),
 * a string quoted, an array element by element, and anything else with its type.
 */
export function describe(value: unknown): string {
  if (value instanceof tf.Tensor) {
    return `${/^[aeiou]/.test(value.dtype) ? 'an' : 'a'} ${value.dtype} tensor of shape ${formatShape(value.shape)}`;
  }
  if (typeof value === 'string') return `'${value}' (a string)`;
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') {
    const keys = Object.keys(value);
    return keys.length === 0 ? 'an empty object' : `an object with keys ${keys.map((k) => `'${k}'`).join(', ')}`;
  }
  return `${String(value)} (a ${typeof value})`;
}

/** An `Error` whose message starts with the op's name, as tfjs's own argument errors do. */
export function argumentError(op: string, message: string): Error {
  return new Error(`${op}: ${message}`);
}

/** Returns `value ?? fallback` when it is one of `allowed`, else throws naming the argument. */
export function checkOneOf<T extends string>(
  op: string, name: string, value: T | undefined, allowed: readonly T[], fallback: T,
): T {
  const v = value ?? fallback;
  if (!allowed.includes(v)) {
    throw argumentError(op, `option '${name}' must be one of ${allowed.map((a) => `'${a}'`).join(', ')}; received ${describe(v)}.`);
  }
  return v;
}

/**
 * The option names of an options interface `T`, from a record the compiler checks to name
 * every key of `T` and nothing else, for {@link checkOptionNames}.
 *
 * @example
 * ```ts
 * interface ScaleOptions { scale?: number; implementation?: Implementation }
 * const SCALE_OPTIONS = optionNames<ScaleOptions>({ scale: true, implementation: true }); // ['scale', 'implementation']
 * ```
 */
export function optionNames<T extends object>(names: Record<keyof T, true>): readonly string[] {
  return Object.keys(names);
}

/**
 * Throws unless `options` is an object (or `undefined`) whose every key is one of `known`,
 * naming the first unknown option and listing the known ones.
 */
export function checkOptionNames(op: string, options: unknown, known: readonly string[]): void {
  const list = known.map((k) => `'${k}'`).join(', ');
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options) || options instanceof tf.Tensor) {
    throw argumentError(op, `argument 'options' must be an object with some of the options ${list}; received ${describe(options)}.`);
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw argumentError(op, `unknown option '${name}'; the options are ${list}.`);
    }
  }
}

/** Returns `value` when it is a positive integer, else throws naming the argument (or option). */
export function checkPositiveInteger(op: string, name: string, value: unknown, kind: 'argument' | 'option' = 'argument'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw argumentError(op, `${kind} '${name}' must be a positive integer; received ${describe(value)}.`);
  }
  return value;
}

/**
 * A decode step's position, the tokens each row saw before this one: a non-negative integer for
 * every row, or an int32 tensor `[B]`, one per row; returned as such, else throws naming `name`
 * (an argument, or an option).
 */
export function checkPosition(
  op: string, name: string, position: unknown, B: number, kind: 'argument' | 'option' = 'argument',
): number | tf.Tensor1D {
  if (position instanceof tf.Tensor) {
    if (position.dtype !== 'int32' || position.rank !== 1 || position.shape[0] !== B) {
      throw argumentError(op, `${kind} '${name}' must be a non-negative integer or an int32 tensor of shape ${formatShape([B])}; ` +
        `received ${describe(position)}.`);
    }
    return position as tf.Tensor1D;
  }
  if (typeof position !== 'number' || !Number.isInteger(position) || position < 0) {
    throw argumentError(op, `${kind} '${name}' must be a non-negative integer; received ${describe(position)}.`);
  }
  return position;
}

/** Returns `value ?? fallback` when it is a boolean, else throws naming the option. */
export function checkBoolean(op: string, name: string, value: boolean | undefined, fallback: boolean): boolean {
  const v = value ?? fallback;
  if (typeof v !== 'boolean') throw argumentError(op, `option '${name}' must be a boolean; received ${describe(v)}.`);
  return v;
}

/** The dimensions that may be 0: an op given an empty batch or sequence returns an empty or zero result. */
const MAY_BE_EMPTY: readonly string[] = ['B', 'T', 'Tq', 'Tk'];

/**
 * Checks that `x` is a float32 tensor of the given rank, naming the dimensions (`layout`,
 * e.g. `['B', 'T', 'D']`) in the message. The batch and sequence dimensions (`B`, `T`, `Tq`,
 * `Tk`) may be 0; every other dimension must be at least 1.
 */
export function checkTensor<R extends tf.Rank>(op: string, name: string, x: unknown, layout: string[]): tf.Tensor<R> {
  const layoutText = `[${layout.join(', ')}]`;
  if (!(x instanceof tf.Tensor) || x.rank !== layout.length || x.dtype !== 'float32') {
    const cast = x instanceof tf.Tensor && x.rank === layout.length ? ` Cast it with tf.cast(${name}, 'float32').` : '';
    throw argumentError(op, `argument '${name}' must be a float32 tensor of rank ${layout.length} ${layoutText}; received ${describe(x)}.${cast}`);
  }
  const empty = layout.findIndex((d, i) => x.shape[i] === 0 && !MAY_BE_EMPTY.includes(d));
  if (empty >= 0) {
    throw argumentError(op, `argument '${name}' ${layoutText} must have ${layout[empty]} ≥ 1 (dimension ${empty}); received ${describe(x)}.`);
  }
  return x as tf.Tensor<R>;
}

/** Throws unless `x` has exactly `shape`. */
export function checkShape(op: string, name: string, x: tf.Tensor, shape: number[], layout: string[]): void {
  if (!tf.util.arraysEqual(x.shape, shape)) {
    throw argumentError(op, `argument '${name}' must have shape [${layout.join(', ')}] = ${formatShape(shape)}; received ${formatShape(x.shape)}.`);
  }
}

/**
 * Zeros of `shape` that tf.grad differentiates with respect to `inputs`, each gradient zeros of
 * that input's shape: what an op returns, without launching a kernel, when its output is empty
 * or no output sees any input (an empty batch, sequence or KV cache). A plain `tf.zeros` would
 * have no path to the inputs, and tf.grad would throw.
 *
 * @example
 * ```ts
 * const q = tf.ones([1, 2, 4, 8]);
 * const dq = tf.grad((t) => tf.sum(differentiableZeros([1, 2, 4, 8], [t])))(q);   // zeros [1, 2, 4, 8]
 * ```
 */
export function differentiableZeros<R extends tf.Rank>(shape: number[], inputs: readonly tf.Tensor[]): tf.Tensor<R> {
  const f = tf.customGrad(() => ({ value: tf.zeros(shape), gradFunc: () => inputs.map((x) => tf.zeros(x.shape)) }));
  return f(...inputs) as tf.Tensor<R>;
}

/**
 * The backends whose tensors live in host memory (a JS array, or the wasm heap), where reading
 * a tensor synchronously is a copy and no device sync: where the plain-JS paths run (the
 * selective scan's kernels, the chunked references' one-read split).
 */
export const HOST_BACKENDS = ['cpu', 'wasm'] as const;

/** Whether the active backend is one of {@link HOST_BACKENDS}. */
export function onHostBackend(): boolean {
  return (HOST_BACKENDS as readonly string[]).includes(tf.getBackend());
}

/**
 * Resolves `implementation` to whether the WGSL kernel runs, throwing for an unknown value
 * or for `'webgpu'` while another backend is active. When the webgpu backend lacks a private
 * member the kernels drive (another tfjs-backend-webgpu version), `'webgpu'` throws naming the
 * member and the version, and `'auto'` runs the reference, warning once per process.
 */
export function useKernel(op: string, implementation: Implementation | undefined): boolean {
  const impl = checkOneOf(op, 'implementation', implementation, IMPLEMENTATIONS, 'auto');
  const backend = tf.getBackend();
  if (impl === 'webgpu' && backend !== 'webgpu') {
    throw argumentError(op, `implementation 'webgpu' needs the 'webgpu' backend; the active backend is '${backend}'. ` +
      `Import '@tensorflow/tfjs-backend-webgpu' and await tf.setBackend('webgpu'), or use implementation 'auto'.`);
  }
  if (impl === 'reference' || backend !== 'webgpu') return false;
  const missing = missingInternal(tf.backend());
  if (missing === null) return true;
  if (impl === 'webgpu') throw internalsError(op, missing);
  warnOnce(INTERNALS_WARNING, `${internalsError(op, missing).message} Running the tfjs-ops reference instead.`);
  return false;
}

/** Checks one decode token of a layer's `step`: a float32 `[B, D]` tensor with the layer's D. */
export function checkStepToken(layer: string, x: unknown, D: number): void {
  if (!(x instanceof tf.Tensor) || x.rank !== 2 || x.shape[1] !== D || x.dtype !== 'float32') {
    throw new Error(`${layer}.step: argument 'x' must be a float32 tensor [B, D] = [B, ${D}]; received ${describe(x)}.`);
  }
}

