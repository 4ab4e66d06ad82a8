import { backendInternals } from './internals.js';

/**
 * A fenced sample lasts at least this long: a run shorter than this is repeated back to back,
 * fenced once, and the sample divided by the repeats. On a real GPU a fence costs tens of µs and
 * an idle GPU between short runs lowers its clocks, so single runs of under a millisecond measure
 * the fence and the clock ramp rather than the kernel.
 */
export const MIN_SAMPLE_MS = 5;
/** At most this many runs in one sample. */
const MAX_RUNS_PER_SAMPLE = 64;

/**
 * Submits whatever tfjs has recorded but not yet submitted, then waits until the GPU has
 * finished all submitted work: no readback, so a timing of it measures compute, not copies.
 * `who` names the caller in the error of a backend without the members it drives.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([1, 256, 4, 64]) as tf.Tensor4D;
 * await fence(tf.backend());                        // q made, nothing else pending
 * const start = performance.now();
 * ops.flashAttention(q, q, q).dispose();
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

/** How long to sample one measurement. */
export interface Budget {
  /** Untimed runs of each contender first (pipeline compiles, buffer pool warm-up). */
  warmup: number;
  /** Timed runs of each contender at least, whatever the time. */
  minIterations: number;
  /** Timed runs of each contender at most. */
  maxIterations: number;
  /** A contender stops sampling once its timed runs have taken this long (after `minIterations`). */
  budgetMs: number;
  /** A sample's length at least, by runs back to back (see {@link MIN_SAMPLE_MS}, the default); needs a warm-up run. */
  minSampleMs?: number;
}

/** The fenced wall times of one measurement. */
export interface Timing {
  /** Median of the samples, in ms. */
  medianMs: number;
  /** Fastest sample, in ms. */
  minMs: number;
  /**
   * Median over the samples of the time before their fence, per run, in ms: the CPU's recording
   * of the runs (and whatever they wait for themselves). On a GPU that finishes a run's kernels
   * sooner than the CPU records them, it is most of {@link Timing.medianMs}. Absent where a
   * measurement was not sampled by {@link timeRuns}.
   */
  recordMs?: number;
  /** How many timed runs, over all samples. */
  iterations: number;
  /** Runs per sample: back-to-back runs fenced once (see {@link MIN_SAMPLE_MS}). */
  runsPerSample: number;
}

/**
 * What {@link timeRuns} times: one run (its outputs released, or left to `fence`), and the wait
 * until the GPU has finished the work the runs queued.
 */
export interface Contender {
  run(): void | Promise<void>;
  fence(): Promise<void>;
}

/**
 * Times each contender by fenced wall time: a sample records `runs` runs back to back, fences
 * once, and counts the time per run. `runs` is 1 unless a warm-up run took under
 * {@link MIN_SAMPLE_MS}. Contenders alternate sample by sample while they sample, so load from
 * other processes on the machine falls on all of them alike; each stops on its own budget, its
 * entry in `own` or else `budget` (so that a kernel of milliseconds is not sampled as sparsely
 * as a reference of seconds beside it).
 */
export async function timeRuns<K extends string>(
  contenders: Record<K, Contender>, budget: Budget, own: Partial<Record<K, Budget>> = {},
): Promise<Record<K, Timing>> {
  const sample = async (c: Contender, runs: number): Promise<{ ms: number; recordMs: number }> => {
    const start = performance.now();
    for (let i = 0; i < runs; i++) await c.run();
    const recorded = performance.now();
    await c.fence();
    return { ms: (performance.now() - start) / runs, recordMs: (recorded - start) / runs };
  };
  const names = Object.keys(contenders) as K[];
  const budgetOf = (k: K): Budget => own[k] ?? budget;
  const samples = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const recordings = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const runs = Object.fromEntries(names.map((k) => [k, 1])) as Record<K, number>;
  const warmups = Math.max(...names.map((k) => budgetOf(k).warmup));
  for (let i = 0; i < warmups; i++) {
    for (const k of names.filter((name) => i < budgetOf(name).warmup)) {
      const { ms } = await sample(contenders[k], 1);
      runs[k] = Math.min(MAX_RUNS_PER_SAMPLE, Math.max(1, Math.ceil((budgetOf(k).minSampleMs ?? MIN_SAMPLE_MS) / Math.max(ms, 1e-3))));
    }
  }
  const spent = Object.fromEntries(names.map((k) => [k, 0])) as Record<K, number>;
  const done = (k: K) => samples[k].length >= budgetOf(k).maxIterations ||
    (samples[k].length >= budgetOf(k).minIterations && spent[k] >= budgetOf(k).budgetMs);
  // each stops on its own budget, so a fast contender is not held to a slow one's few samples
  while (names.some((k) => !done(k))) {
    for (const k of names.filter((name) => !done(name))) {
      const { ms, recordMs } = await sample(contenders[k], runs[k]);
      samples[k].push(ms);
      recordings[k].push(recordMs);
      spent[k] += ms * runs[k];
    }
  }
  return Object.fromEntries(names.map((k) => [k, {
    medianMs: median(samples[k]), minMs: Math.min(...samples[k]), recordMs: median(recordings[k]), iterations: samples[k].length * runs[k],
    runsPerSample: runs[k],
  }])) as Record<K, Timing>;
}
