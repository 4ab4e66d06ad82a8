import * as tf from '@tensorflow/tfjs';

/**
 * Which implementation an op or layer runs.
 * - `'auto'`: the WGSL kernels on the `webgpu` backend, the tfjs-ops reference elsewhere.
 * - `'webgpu'`: the WGSL kernels; throws on any other backend.
 * - `'reference'`: the tfjs-ops reference on every backend (the ground truth).
 */
export type Implementation = 'auto' | 'webgpu' | 'reference';

/** Every {@link Implementation}, for option checks. */
export const IMPLEMENTATIONS: readonly Implementation[] = ['auto', 'webgpu', 'reference'];

function describe(value: unknown): string {
  if (value instanceof tf.Tensor) return `a ${value.dtype} tensor of shape [${value.shape.join(', ')}]`;
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  return String(value);
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

/** Throws for an option `op` does not know, listing the ones it does. */
export function checkOptionNames(op: string, options: object, known: readonly string[]): void {
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw argumentError(op, `unknown option '${name}'; the options are ${known.map((k) => `'${k}'`).join(', ')}.`);
    }
  }
}

/** Returns `value` when it is a positive integer, else throws naming the argument. */
export function checkPositiveInteger(op: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw argumentError(op, `argument '${name}' must be a positive integer; received ${String(value)}.`);
  }
  return value;
}

/** Returns `value ?? fallback` when it is a boolean, else throws naming the option. */
export function checkBoolean(op: string, name: string, value: boolean | undefined, fallback: boolean): boolean {
  const v = value ?? fallback;
  if (typeof v !== 'boolean') throw argumentError(op, `option '${name}' must be a boolean; received ${describe(v)}.`);
  return v;
}

/**
 * Checks that `x` is a float32 tensor of the given rank, naming the dimensions (`layout`,
 * e.g. `['B', 'T', 'D']`) in the message, and that no dimension is empty.
 */
export function checkTensor<R extends tf.Rank>(op: string, name: string, x: unknown, layout: string[]): tf.Tensor<R> {
  const expected = `a float32 tensor of rank ${layout.length} [${layout.join(', ')}]`;
  if (!(x instanceof tf.Tensor)) throw argumentError(op, `argument '${name}' must be ${expected}; received ${describe(x)}.`);
  if (x.rank !== layout.length) {
    throw argumentError(op, `argument '${name}' must be ${expected}; received rank ${x.rank}, shape [${x.shape.join(', ')}].`);
  }
  if (x.dtype !== 'float32') {
    throw argumentError(op, `argument '${name}' must be ${expected}; received dtype ${x.dtype}. Cast it with tf.cast(${name}, 'float32').`);
  }
  if (x.size === 0) throw argumentError(op, `argument '${name}' must not be empty; received shape [${x.shape.join(', ')}].`);
  return x as tf.Tensor<R>;
}

/** Throws unless `x` has exactly `shape`. */
export function checkShape(op: string, name: string, x: tf.Tensor, shape: number[], layout: string[]): void {
  if (!tf.util.arraysEqual(x.shape, shape)) {
    throw argumentError(op, `argument '${name}' must have shape [${layout.join(', ')}] = [${shape.join(', ')}]; received [${x.shape.join(', ')}].`);
  }
}

/**
 * Resolves `implementation` to whether the WGSL kernel runs, throwing for an unknown value
 * or for `'webgpu'` while another backend is active.
 */
export function useKernel(op: string, implementation: Implementation | undefined): boolean {
  const impl = checkOneOf(op, 'implementation', implementation, IMPLEMENTATIONS, 'auto');
  const backend = tf.getBackend();
  if (impl === 'webgpu' && backend !== 'webgpu') {
    throw argumentError(op, `implementation 'webgpu' needs the 'webgpu' backend; the active backend is '${backend}'. ` +
      `Import '@tensorflow/tfjs-backend-webgpu' and await tf.setBackend('webgpu'), or use implementation 'auto'.`);
  }
  return impl === 'webgpu' || (impl === 'auto' && backend === 'webgpu');
}

/** Checks one decode token of a layer's `step`: a float32 `[B, D]` tensor with the layer's D. */
export function checkStepToken(layer: string, x: unknown, D: number): void {
  if (!(x instanceof tf.Tensor) || x.rank !== 2 || x.shape[1] !== D || x.dtype !== 'float32') {
    throw new Error(`${layer}.step: argument 'x' must be a float32 tensor [B, D] = [B, ${D}]; received ${describe(x)}.`);
  }
}
