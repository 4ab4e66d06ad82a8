import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import {
  ATTENTION_DKV_FLAG, ATTENTION_DKV_KEYS_FLAG, ATTENTION_DQ_FLAG, ATTENTION_FORWARD_FLAG, ATTENTION_ROW_LANES_FLAG,
  ATTENTION_ROWS_FLAG, BLOCKS_FLAG_VALUES,
} from './attention/kernel-source.js';
import { ATTENTION_SPLIT_PASS_FLAG } from './attention/split-pass.js';
import { SCAN_FLAG as AVERAGE_SCAN_FLAG } from './mixers/average-context/kernel.js';
import { averageContext } from './mixers/average-context/op.js';
import { flashAttention } from './mixers/flash-style-tiled-attention/op.js';
import { selectiveScan } from './mixers/selective-ssm/op.js';
import { argumentError, checkOptionNames, checkPositiveInteger, describe, optionNames } from './validate.js';
import { backendInternals } from './webgpu/internals.js';
import { launchTrace, sameLaunches } from './webgpu/runtime.js';
import { fence, timeRuns, type Contender } from './webgpu/timing.js';
import { SCAN_FLAG } from './webgpu/scan.js';
import { subgroupLanes } from './webgpu/subgroups.js';

/** A value of one of the kernel choices' tfjs flags. */
export type KernelFlagValue = string | number;

/** The attention shapes {@link tuneKernels} times: q, k, v `[batch, length, heads, headSize]`, a decode step over `cacheLength` keys. */
export interface AttentionTuningShape {
  /** B (default 1). */
  batch?: number;
  /** T of the causal forward and of the forward+backward (default 1024). */
  length?: number;
  /** H (default 4). */
  heads?: number;
  /** K (default 64). */
  headSize?: number;
  /** Tk of the split-K decode step (default 4096). */
  cacheLength?: number;
}

/** The AverageContext shape {@link tuneKernels} times: x `[batch, length, width]`. */
export interface AverageContextTuningShape {
  /** B (default 1). */
  batch?: number;
  /** T (default 4096). */
  length?: number;
  /** D (default 256). */
  width?: number;
}

/** The selective scan's shape {@link tuneKernels} times: u, delta `[batch, length, channels]`, B, C `[batch, length, stateSize]`. */
export interface SelectiveScanTuningShape {
  /** B (default 1). */
  batch?: number;
  /** T (default 4096). */
  length?: number;
  /** E (default 512). */
  channels?: number;
  /** N (default 16). */
  stateSize?: number;
}

/** Options of {@link tuneKernels}. */
export interface TuneKernelsOptions {
  /** The attention kernels' shapes, or `false` to leave their choices as they are. */
  attention?: AttentionTuningShape | false;
  /** AverageContext's shape, or `false` to leave its scan as it is. */
  averageContext?: AverageContextTuningShape | false;
  /**
   * The selective scan's shape, for the scan family's forward where no gradient is recorded
   * (SelectiveSSM's, GatedLinearAttention's and Aaren's), or `false` to leave it as it is.
   */
  selectiveScan?: SelectiveScanTuningShape | false;
  /** Timed samples of each value, interleaved (default 5). */
  rounds?: number;
  /**
   * How much faster than the flag's value before tuning (normally 'auto') another value must run
   * to be chosen, as a fraction of its time (default 0.05): within that, timing noise decides.
   */
  margin?: number;
  /** Whether to leave the chosen values set (default true); false restores every flag as it was. */
  apply?: boolean;
}

/** One value of a flag as {@link tuneKernels} timed it. */
export interface KernelTiming {
  /** The tfjs flag. */
  flag: string;
  /** Its value while timed. */
  value: KernelFlagValue;
  /** The median fenced wall time of the flag's workload, ms; null for a value that was refused. */
  ms: number | null;
  /** Why a value was refused: its outputs differed from those of the value before tuning, or it failed. */
  refused?: string;
  /** The value timed before it that launches the same kernels (as 'auto' does the value it resolves to): timed once, as that one. */
  sameAs?: KernelFlagValue;
}

/** What {@link tuneKernels} chose, and the timings it chose from. */
export interface KernelTuning {
  /** The adapter, as its vendor and architecture name it: a tuning holds for that adapter only. */
  adapter: string;
  /** Each tuned flag's chosen value, for {@link applyKernelTuning}. */
  flags: Record<string, KernelFlagValue>;
  /** Every value's timing, in the order timed. */
  timings: KernelTiming[];
}

/**
 * Which runs time a flag: the attention forward, its forward+backward, the decode step,
 * AverageContext's forward+backward, or the selective scan's forward without a tape.
 */
type Workload = 'forward' | 'training' | 'decode' | 'averageContext' | 'selectiveScan';

/** A kernel choice {@link tuneKernels} times: its flag, its values, and the runs that show it. */
interface Tunable {
  flag: string;
  values(backend: WebGPUBackend): KernelFlagValue[];
  workload: Workload;
}

// the structural choices whose 'auto' is a guess about the adapter; chunk counts, which 'auto'
// sets from each call's shape, are left to it
const TUNABLES: readonly Tunable[] = [
  { flag: ATTENTION_FORWARD_FLAG, values: () => [...BLOCKS_FLAG_VALUES.forward], workload: 'forward' },
  // every subset of the tiled passes in quarters: 1 none, 4 all, or those named
  { flag: ATTENTION_ROW_LANES_FLAG, values: () => ['auto', 1, 4, 'forward', 'dq', 'dkv', 'forward,dq', 'forward,dkv', 'dq,dkv'], workload: 'training' },
  { flag: ATTENTION_ROWS_FLAG, values: () => ['auto', 1, 2, 4], workload: 'training' },
  { flag: ATTENTION_DKV_KEYS_FLAG, values: () => ['auto', 'registers', 'memory'], workload: 'training' },
  // after the rows' choices, so that the backward's passes by blocks race the best by rows
  { flag: ATTENTION_DQ_FLAG, values: () => [...BLOCKS_FLAG_VALUES.dq], workload: 'training' },
  { flag: ATTENTION_DKV_FLAG, values: () => [...BLOCKS_FLAG_VALUES.dkv], workload: 'training' },
  {
    flag: ATTENTION_SPLIT_PASS_FLAG,
    values: (backend) => ['auto', 'invocation', 'workgroup', ...(subgroupLanes(backend) !== null ? ['subgroup'] : [])],
    workload: 'decode',
  },
  { flag: AVERAGE_SCAN_FLAG, values: () => ['auto', 'levels', 'walk', 'lookback'], workload: 'averageContext' },
  { flag: SCAN_FLAG, values: () => ['auto', 'chunks', 'walk'], workload: 'selectiveScan' },
];

const TUNED_FLAGS: readonly string[] = TUNABLES.map((t) => t.flag);

const OP = 'tuneKernels';
const OPTIONS = optionNames<TuneKernelsOptions>({
  attention: true, averageContext: true, selectiveScan: true, rounds: true, margin: true, apply: true,
});
// the shapes' defaults, whose keys are also the shapes' option names
const ATTENTION_SHAPE: Required<AttentionTuningShape> = { batch: 1, length: 1024, heads: 4, headSize: 64, cacheLength: 4096 };
const AVERAGE_SHAPE: Required<AverageContextTuningShape> = { batch: 1, length: 4096, width: 256 };
const SCAN_SHAPE: Required<SelectiveScanTuningShape> = { batch: 1, length: 4096, channels: 512, stateSize: 16 };

/**
 * A value's outputs must agree with those of the value before tuning to within this fraction of
 * their largest magnitude. The values differ in the order they add in float32: over the ≤ 10⁵
 * terms of a row's sums that moves a result by about √T·2⁻²⁴ ≈ 2·10⁻⁵ of its scale, while a
 * kernel that drops a tile or reads past one (a driver's miscompile) is off by the tile's share.
 */
const AGREEMENT = 1e-3;

/**
 * Times the kernels' alternatives on this adapter and sets the fastest: which way the tiled
 * attention forward cuts its tiles (`MIXERS_ATTENTION_FORWARD`), lanes per row and rows per
 * invocation of the tiled passes (`MIXERS_ATTENTION_ROW_LANES`, `MIXERS_ATTENTION_ROWS`), where
 * dK/dV keeps its keys (`MIXERS_ATTENTION_DKV_KEYS`), how dQ and dK/dV cut their tiles
 * (`MIXERS_ATTENTION_DQ`, `MIXERS_ATTENTION_DKV`), who
 * folds a chunk of the split-K decode (`MIXERS_ATTENTION_SPLIT_PASS`), AverageContext's scan
 * (`MIXERS_AVERAGE_CONTEXT_SCAN`) and how the scan family runs a forward without a gradient tape
 * (`MIXERS_SCAN`). Each is a tfjs flag whose default, 'auto', is the library's
 * guess for the adapter; this measures instead, as cuDNN's benchmark mode does. Each flag in turn
 * (those before it as chosen) runs its workload at the given shapes under every value, samples
 * interleaved, fenced wall times: the causal flashAttention forward, its forward and backward,
 * a split-K decode step, AverageContext's causal forward and backward, the selective scan's
 * forward (the attention flags hold for every attention mixer, and `MIXERS_SCAN` for SelectiveSSM,
 * GatedLinearAttention and Aaren). A value is chosen only if
 * its median is faster than the flag's value before tuning by `margin`, and only if its outputs
 * agree with that value's (a value that fails, or whose outputs differ, is refused: a driver's
 * miscompile costs nothing). The results are the same whatever is chosen, up to float32 rounding.
 *
 * Call it once after `tf.setBackend('webgpu')` (and {@link registerSubgroupBackend}, whose paths
 * it then tunes), before building models, at shapes like the model's; keep `flags` (e.g. in
 * `localStorage`, keyed by `adapter`) and later restore them with {@link applyKernelTuning}.
 * Each value runs its workload twice, then `rounds` samples of at least 5 ms; pipelines are
 * compiled on first use. On SwiftShader, which runs the kernels on the CPU, the small shapes of
 * `npm run bench:tune -- --small` take about 40 s on two cores; give it small shapes there. On
 * any other backend there is nothing to tune: it resolves with no flags.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import '@tensorflow/tfjs-backend-webgpu';
 * import { applyKernelTuning, tuneKernels } from 'tfjs-mixers';
 *
 * await tf.setBackend('webgpu');
 * const kept = localStorage.getItem('tfjs-mixers-tuning');
 * if (kept) {
 *   applyKernelTuning(JSON.parse(kept));
 * } else {
 *   const tuning = await tuneKernels({
 *     attention: { length: 512, heads: 8, headSize: 64 },   // shapes like the model's
 *     averageContext: false, selectiveScan: false,          // kernels it does not use
 *   });
 *   localStorage.setItem('tfjs-mixers-tuning', JSON.stringify(tuning.flags));
 * }
 * ```
 */
export async function tuneKernels(options: TuneKernelsOptions = {}): Promise<KernelTuning> {
  checkOptionNames(OP, options, OPTIONS);
  const rounds = checkPositiveInteger(OP, 'rounds', options.rounds ?? 5, 'option');
  const margin = options.margin ?? 0.05;
  if (typeof margin !== 'number' || !(margin >= 0 && margin < 1)) {
    throw argumentError(OP, `option 'margin' must be a number in [0, 1); received ${describe(margin)}.`);
  }
  const apply = options.apply ?? true;
  if (typeof apply !== 'boolean') throw argumentError(OP, `option 'apply' must be a boolean; received ${describe(apply)}.`);
  const attention = options.attention === false ? null : shapeOption('attention', options.attention, ATTENTION_SHAPE);
  const average = options.averageContext === false ? null : shapeOption('averageContext', options.averageContext, AVERAGE_SHAPE);
  const scan = options.selectiveScan === false ? null : shapeOption('selectiveScan', options.selectiveScan, SCAN_SHAPE);
  if (tf.getBackend() !== 'webgpu') return { adapter: `no WebGPU: the backend is '${tf.getBackend()}'`, flags: {}, timings: [] };

  const backend = tf.backend() as WebGPUBackend;
  const info = backendInternals(backend, OP).adapterInfo;
  const adapter = [info.vendor, info.architecture].filter(Boolean).join(' ') || 'unnamed adapter';
  const workloads = makeWorkloads(attention, average, scan);
  const before = new Map(TUNED_FLAGS.map((flag) => [flag, tf.env().get(flag) as KernelFlagValue]));
  const flags: Record<string, KernelFlagValue> = {};
  const timings: KernelTiming[] = [];
  let finished = false;
  try {
    for (const tunable of TUNABLES) {
      const run = workloads.runs[tunable.workload];
      if (!run) continue;
      const baseline = before.get(tunable.flag)!;
      const values = [baseline, ...tunable.values(backend).filter((v) => v !== baseline)];
      const timed = await timeValues(backend, tunable.flag, values, run, rounds);
      timings.push(...timed);
      flags[tunable.flag] = fastest(timed, margin);
      tf.env().set(tunable.flag, flags[tunable.flag]);
    }
    finished = true;
  } finally {
    tf.dispose(workloads.inputs);
    // a run cut short by an error leaves no flag at a value it was timing
    if (!apply || !finished) for (const [flag, value] of before) tf.env().set(flag, value);
  }
  return { adapter, flags, timings };
}

/**
 * Sets the kernel flags a {@link tuneKernels} run chose (its `flags`, e.g. kept as JSON), checking
 * each name and value; on the adapter it was tuned on.
 *
 * @throws If a name is not one of the flags {@link tuneKernels} tunes, or a value is not a string or number.
 *
 * @example
 * ```ts
 * applyKernelTuning({ MIXERS_ATTENTION_FORWARD: 'blocks', MIXERS_AVERAGE_CONTEXT_SCAN: 'lookback' });
 * ```
 */
export function applyKernelTuning(flags: Record<string, KernelFlagValue>): void {
  const op = 'applyKernelTuning';
  if (flags === null || typeof flags !== 'object' || Array.isArray(flags)) {
    throw argumentError(op, `argument 'flags' must be an object of flag names and values; received ${describe(flags)}.`);
  }
  for (const [flag, value] of Object.entries(flags)) {
    if (!TUNED_FLAGS.includes(flag)) {
      throw argumentError(op, `unknown flag '${flag}'; the tuned flags are ${TUNED_FLAGS.map((f) => `'${f}'`).join(', ')}.`);
    }
    if (typeof value !== 'string' && typeof value !== 'number') {
      throw argumentError(op, `flag '${flag}' must be a string or a number; received ${describe(value)}.`);
    }
  }
  // every flag's own check runs at the kernels' next launch, naming its allowed values
  for (const [flag, value] of Object.entries(flags)) tf.env().set(flag, value);
}

/**
 * The value to keep: the fastest of those not refused, if it beats the first (the value before
 * tuning) by `margin` of the first's time; else the first.
 */
export function fastest(timed: readonly KernelTiming[], margin: number): KernelFlagValue {
  const [first, ...others] = timed;
  let best = first;
  for (const t of others) {
    if (t.ms !== null && (best.ms === null || t.ms < best.ms)) best = t;
  }
  return best !== first && first.ms !== null && best.ms! > (1 - margin) * first.ms ? first.value : best.value;
}

/** The shape option `name`, each dimension given or its default, checked to be a positive integer. */
function shapeOption<S extends object>(name: string, shape: S | undefined, defaults: Required<S>): Required<S> {
  checkOptionNames(`${OP} (option '${name}')`, shape, Object.keys(defaults));
  const dims = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof S & string)[]) {
    const given = shape?.[key] ?? defaults[key];
    dims[key] = checkPositiveInteger(OP, `${name}.${key}`, given, 'option') as Required<S>[typeof key];
  }
  return dims;
}

/** Runs that return their outputs, on seeded inputs made once (`inputs`, disposed by the caller). */
function makeWorkloads(
  attention: Required<AttentionTuningShape> | null, average: Required<AverageContextTuningShape> | null,
  scan: Required<SelectiveScanTuningShape> | null,
): { runs: Partial<Record<Workload, () => tf.Tensor[]>>; inputs: tf.Tensor[] } {
  const inputs: tf.Tensor[] = [];
  const uniform = <R extends tf.Rank>(shape: number[]) => {
    const t = tf.randomUniform(shape as tf.ShapeMap[R], -1, 1, 'float32', inputs.length + 1) as tf.Tensor<R>;
    inputs.push(t);
    return t;
  };
  const runs: Partial<Record<Workload, () => tf.Tensor[]>> = {};
  if (attention) {
    const { batch: B, length: T, heads: H, headSize: K, cacheLength: Tk } = attention;
    const [q, k, v, dy] = [0, 1, 2, 3].map(() => uniform<tf.Rank.R4>([B, T, H, K]));
    const [qStep, kCache, vCache] = [uniform<tf.Rank.R4>([B, 1, H, K]), uniform<tf.Rank.R4>([B, Tk, H, K]), uniform<tf.Rank.R4>([B, Tk, H, K])];
    const gradients = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      flashAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, { causal: true, implementation: 'webgpu' }));
    runs.forward = () => [flashAttention(q, k, v, { causal: true, implementation: 'webgpu' })];
    runs.training = () => gradients([q, k, v], dy);
    runs.decode = () => [flashAttention(qStep, kCache, vCache, { causal: true, split: 'always', implementation: 'webgpu' })];
  }
  if (average) {
    const { batch: B, length: T, width: D } = average;
    const [x, dy] = [uniform<tf.Rank.R3>([B, T, D]), uniform<tf.Rank.R3>([B, T, D])];
    const gradient = tf.grad((a: tf.Tensor) => averageContext(a as tf.Tensor3D, { causal: true, implementation: 'webgpu' }));
    runs.averageContext = () => [averageContext(x, { causal: true, implementation: 'webgpu' }), gradient(x, dy)];
  }
  if (scan) {
    const { batch: B, length: T, channels: E, stateSize: N } = scan;
    const [u, delta, b, c] = [uniform<tf.Rank.R3>([B, T, E]), uniform<tf.Rank.R3>([B, T, E]), uniform<tf.Rank.R3>([B, T, N]), uniform<tf.Rank.R3>([B, T, N])];
    // Mamba's initialisation, A[e, n] = −(n + 1): states that decay at every rate from fast to slow
    const A = tf.tidy(() => tf.neg(tf.tile(tf.range(1, N + 1).reshape([1, N]), [E, 1]))) as tf.Tensor2D;
    inputs.push(A);
    runs.selectiveScan = () => [selectiveScan(u, delta, A, b, c, { deltaSoftplus: true, implementation: 'webgpu' })];
  }
  return { runs, inputs };
}

/**
 * Each value's median time over `rounds` samples, the values' samples interleaved
 * ({@link timeRuns}), after a first run of each whose outputs are checked against the first
 * value's. A value that launches the same kernels of this library on the same grids as one before
 * it (as 'auto' does the value it resolves to) is timed once, as that one.
 */
export async function timeValues(
  backend: WebGPUBackend, flag: string, values: readonly KernelFlagValue[], run: () => tf.Tensor[], rounds: number,
): Promise<KernelTiming[]> {
  const timings: KernelTiming[] = values.map((value) => ({ flag, value, ms: null }));
  const traces: unknown[][] = [];
  let expected: Float32Array[] | null = null;
  for (const [i, timing] of timings.entries()) {
    tf.env().set(flag, timing.value);
    const outcome = await firstRun(backend, run);
    if (typeof outcome === 'string') {
      if (expected === null) throw new Error(`${OP}: ${flag} = ${JSON.stringify(timing.value)}, its value before tuning, failed: ${outcome}`);
      timing.refused = outcome;
      continue;
    }
    if (expected === null) expected = outcome.outputs;
    else {
      const differs = disagreement(expected, outcome.outputs);
      if (differs) { timing.refused = differs; continue; }
    }
    traces[i] = outcome.trace;
    const twin = outcome.trace.length === 0 ? undefined
      : timings.find((t, j) => j < i && traces[j] !== undefined && t.sameAs === undefined && sameLaunches(traces[j]!, outcome.trace));
    if (twin) timing.sameAs = twin.value;
  }
  const timed = timings.filter((t) => t.refused === undefined && t.sameAs === undefined);
  const contenders: Record<string, Contender> = Object.fromEntries(timed.map((t, i) => [`value ${i}`, {
    run: () => {
      tf.env().set(flag, t.value);
      tf.dispose(tf.tidy(run));
    },
    fence: () => fence(backend, OP),
  }]));
  // a warm-up run each, which sizes its samples; then exactly `rounds` samples each
  const medians = await timeRuns(contenders, { warmup: 1, minIterations: rounds, maxIterations: rounds, budgetMs: 0 });
  timed.forEach((t, i) => { t.ms = medians[`value ${i}`]!.medianMs; });
  for (const t of timings) if (t.sameAs !== undefined) t.ms = timings.find((twin) => twin.value === t.sameAs)!.ms;
  return timings;
}

/**
 * The first run's outputs, read back, and its launches ({@link launchTrace}); or why it failed (a
 * thrown error or a WebGPU validation error).
 */
async function firstRun(backend: WebGPUBackend, run: () => tf.Tensor[]): Promise<{ outputs: Float32Array[]; trace: unknown[] } | string> {
  const device = backendInternals(backend, OP).device;
  device.pushErrorScope('validation');
  let outputs: tf.Tensor[] = [];
  let trace: unknown[] = [];
  let thrown: string | null = null;
  try {
    ({ result: outputs, trace } = launchTrace(() => tf.tidy(run)));
  } catch (e) {
    thrown = e instanceof Error ? e.message : String(e);
  }
  try {
    await fence(backend, OP);
  } finally {
    const error = await device.popErrorScope();
    if (error && thrown === null) thrown = `WebGPU: ${error.message}`;
  }
  try {
    if (thrown !== null) return thrown;
    return { outputs: await Promise.all(outputs.map(async (t) => (await t.data()) as Float32Array)), trace };
  } finally {
    tf.dispose(outputs);
  }
}

/** Why `got` differs from `expected` by more than {@link AGREEMENT} of its scale, or null where it agrees. */
export function disagreement(expected: readonly Float32Array[], got: readonly Float32Array[]): string | null {
  for (let o = 0; o < expected.length; o++) {
    let scale = 0;
    for (const e of expected[o]) scale = Math.max(scale, Math.abs(e));
    for (let i = 0; i < expected[o].length; i++) {
      const e = expected[o][i];
      const gap = Math.abs(got[o][i] - e);
      if (Number.isFinite(e) && !(gap <= AGREEMENT * scale)) {
        return `output ${o} element ${i} is ${got[o][i]} where the value before tuning gives ${e}`;
      }
    }
  }
  return null;
}
