import { backendInternals } from './internals.js';

/**
 * A fenced sample lasts at least this long: a run shorter than this is repeated back to back,
 * fenced once, and the sample divided by the repeats. On a real GPU a fence costs tens of µs and
 * an idle GPU between short runs lowers its clocks, so single runs of under a millisecond measure
 * the fence and the clock ramp rather than the kernel.
 */
export const MIN_SAMPLE_MS = 5;
/** At most this many runs in one sample. */
export const MAX_RUNS_PER_SAMPLE = 64;

/**
 * Submits whatever tfjs has recorded but not yet submitted, then waits until the GPU has
 * finished all submitted work: no readback, so a timing of it measures compute, not copies.
 * `who` names the caller in the error of a backend without the members it drives.
 *
 * @example
 * ```ts
 * const start = performance.now();
 * ops.flashAttention(q, k, v).dispose();
 * await fence(tf.backend());
 * console.log(`${performance.now() - start} ms`);
 * ```
 */
export async function fence(backend: object, who = 'tfjs-mixers'): Promise<void> {
  const b = backendInternals(backend, who);
  // tfjs batches up to WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches before it submits
  if (b.commandEncoder) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  await b.device.queue.onSubmittedWorkDone();
}

/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
