import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';

import { MAX_RUNS_PER_SAMPLE, MIN_SAMPLE_MS, fence, median } from '../src/webgpu/timing.js';

export { MIN_SAMPLE_MS, fence, median };

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

/**
 * A tfjs {@link Contender} on the webgpu backend: each output is disposed as soon as it is
 * recorded, and a run that leaves tensors or GPU data behind fails the measurement.
 */
export function tfjsContender(backend: WebGPUBackend, f: () => tf.TensorContainer): Contender {
  return {
    run: () => {
      const before = tf.memory();
      tf.dispose(f());
      const after = tf.memory();
      if (after.numTensors !== before.numTensors || after.numDataBuffers !== before.numDataBuffers) {
        throw new Error(`bench: a run leaked ${after.numTensors - before.numTensors} tensor(s), ` +
          `${after.numDataBuffers - before.numDataBuffers} data buffer(s).`);
      }
    },
    fence: () => fence(backend),
  };
}

/** {@link timeRuns} for tfjs contenders on the webgpu backend ({@link tfjsContender}). */
export function timeInterleaved<K extends string>(
  backend: WebGPUBackend, contenders: Record<K, () => tf.TensorContainer>, budget: Budget, own: Partial<Record<K, Budget>> = {},
): Promise<Record<K, Timing>> {
  const names = Object.keys(contenders) as K[];
  return timeRuns(Object.fromEntries(names.map((k) => [k, tfjsContender(backend, contenders[k])])) as Record<K, Contender>, budget, own);
}
