import * as tf from '@tensorflow/tfjs';
import {
  checkBoolean, checkOptionNames, checkShape, checkTensor, differentiableZeros, optionNames, useKernel, type Implementation,
} from '../../validate.js';
import { selectiveScanReference, selectiveScanStepReference, type ScanArgs } from './reference.js';
import { SELECTIVE_SCAN, SELECTIVE_SCAN_STEP, type ScanAttrs } from './kernel.js';
import { selectiveScanFast } from './fast.js';

/** Options of `ops.selectiveScan` and `ops.selectiveScanWithState`. */
export interface SelectiveScanOptions {
  /** `[E]`: the skip connection, `y += D ⊙ u`. Default none. */
  D?: tf.Tensor1D;
  /** `[B, T, E]`: the gate, `out = y ⊙ silu(z)`. Default none. */
  z?: tf.Tensor3D;
  /** `[E]`: added to delta before the softplus. Default none. */
  deltaBias?: tf.Tensor1D;
  /** Whether Δ = softplus(delta + deltaBias); `false` takes delta + deltaBias as Δ. Default `true`. */
  deltaSoftplus?: boolean;
  /** `[B, E, N]`: the state before the first step, for continuing a sequence. Default zeros. */
  initialState?: tf.Tensor3D;
  /**
   * Which implementation runs. Default `'auto'`: the WGSL kernels on webgpu, plain-JS kernels on
   * cpu and wasm, a chunked scan in tfjs ops on webgl, the per-step tfjs-ops reference elsewhere;
   * `'reference'` always runs that reference.
   */
  implementation?: Implementation;
}

const OPTIONS = optionNames<SelectiveScanOptions>({
  D: true, z: true, deltaBias: true, deltaSoftplus: true, initialState: true, implementation: true,
});

/** Options of `ops.selectiveScanStep`: as {@link SelectiveScanOptions}, with a `[B, E]` gate. */
export interface SelectiveScanStepOptions {
  /** `[E]`: the skip connection. Default none. */
  D?: tf.Tensor1D;
  /** `[B, E]`: the gate. Default none. */
  z?: tf.Tensor2D;
  /** `[E]`: added to delta before the softplus. Default none. */
  deltaBias?: tf.Tensor1D;
  /** Whether Δ = softplus(delta + deltaBias). Default `true`. */
  deltaSoftplus?: boolean;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const STEP_OPTIONS = optionNames<SelectiveScanStepOptions>({ D: true, z: true, deltaBias: true, deltaSoftplus: true, implementation: true });

/** A scan's output and its final state. */
export interface SelectiveScanResult<R extends tf.Rank = tf.Rank.R3> {
  /** `[B, T, E]` (`[B, E]` for a step). */
  output: tf.Tensor<R>;
  /** `[B, E, N]`: the state after the last step. */
  state: tf.Tensor3D;
}

/** Checks every input against u's `[B, T, E]` (or `[B, E]` for a step) and A's `[E, N]`. */
function checkScan(
  op: string, stepShape: boolean, u: unknown, delta: unknown, A: unknown, B: unknown, C: unknown,
  options: SelectiveScanOptions | SelectiveScanStepOptions,
): Omit<ScanArgs, 'u' | 'delta' | 'B' | 'C' | 'z'> & { u: tf.Tensor; delta: tf.Tensor; B: tf.Tensor; C: tf.Tensor; z?: tf.Tensor } {
  const seq = stepShape ? ['B', 'E'] : ['B', 'T', 'E'];
  const $u = checkTensor(op, 'u', u, seq);
  const $A = checkTensor<tf.Rank.R2>(op, 'A', A, ['E', 'N']);
  const E = $u.shape[$u.rank - 1]!;
  const N = $A.shape[1];
  const lead = $u.shape.slice(0, -1);
  const stateLayout = stepShape ? ['B', 'N'] : ['B', 'T', 'N'];
  const check = (name: string, x: unknown, layout: string[], shape: number[]) => {
    const t = checkTensor(op, name, x, layout);
    checkShape(op, name, t, shape, layout);
    return t;
  };
  check('delta', delta, seq, $u.shape);
  checkShape(op, 'A', $A, [E, N], ['E', 'N']);
  check('B', B, stateLayout, [...lead, N]);
  check('C', C, stateLayout, [...lead, N]);
  const o = options as SelectiveScanOptions;
  if (o.D !== undefined) check('D', o.D, ['E'], [E]);
  if (o.z !== undefined) check('z', o.z, seq, $u.shape);
  if (o.deltaBias !== undefined) check('deltaBias', o.deltaBias, ['E'], [E]);
  if (o.initialState !== undefined) check('initialState', o.initialState, ['B', 'E', 'N'], [$u.shape[0]!, E, N]);
  return {
    u: $u, delta: delta as tf.Tensor, A: $A, B: B as tf.Tensor, C: C as tf.Tensor,
    D: o.D, z: o.z, deltaBias: o.deltaBias, initialState: o.initialState,
    deltaSoftplus: checkBoolean(op, 'deltaSoftplus', o.deltaSoftplus, true),
  };
}

/**
 * The kernels' per-channel table chan = A | D | deltaBias `[E, N+2]`, an absent D or bias being
 * 0; beside it they read bc = B | C `[.., 2N]` (WebGPU guarantees a kernel only eight storage buffers).
 *
 * @example
 * ```ts
 * channelTable(tf.neg(tf.ones([3, 2])), tf.ones([3])).shape;  // [3, 4]: A, D, then a zero bias
 * ```
 */
export function channelTable(A: tf.Tensor2D, D?: tf.Tensor1D, deltaBias?: tf.Tensor1D): tf.Tensor2D {
  const E = A.shape[0];
  const column = (x?: tf.Tensor1D) => (x ? x.reshape([E, 1]) : tf.zeros([E, 1]));
  return tf.concat([A, column(D), column(deltaBias)], 1) as tf.Tensor2D;
}

/** Runs the kernel or the reference; both return the output and the final state. */
function scan(op: string, u: tf.Tensor3D, delta: tf.Tensor3D, A: tf.Tensor2D, B: tf.Tensor3D, C: tf.Tensor3D,
  options: SelectiveScanOptions): SelectiveScanResult {
  checkOptionNames(op, options, OPTIONS);
  const args = checkScan(op, false, u, delta, A, B, C, options) as ScanArgs;
  const kernel = useKernel(op, options.implementation);
  if (args.u.size === 0) {
    // an empty batch or sequence: no step is taken, so the state is the initial one
    const inputs = [u, delta, A, B, C, args.D, args.z, args.deltaBias, args.initialState].filter((t) => t !== undefined);
    const [Bsz, , E] = args.u.shape;
    const state = tf.tidy(() => {
      const zeros = differentiableZeros<tf.Rank.R3>([Bsz!, E!, A.shape[1]], inputs);
      return args.initialState ? tf.add(args.initialState, zeros) as tf.Tensor3D : zeros;
    });
    return { output: differentiableZeros(args.u.shape, inputs), state };
  }
  if (!kernel) {
    // 'auto' off webgpu takes the fast path (plain-JS kernels on cpu and wasm, chunked on webgl); 'reference' the per-step ground truth
    return options.implementation === 'reference' ? selectiveScanReference(args) : selectiveScanFast(args);
  }
  const [chan, bc] = tf.tidy(() => [channelTable(A, args.D, args.deltaBias), tf.concat([B, C], 2)]) as [tf.Tensor2D, tf.Tensor3D];
  try {
    return scanKernel(u, delta, chan, bc, args);
  } finally {
    tf.dispose([chan, bc]);
  }
}

/**
 * How the scan kernels read their inputs ({@link scanKernel}, {@link stepKernel}): `z` `[B, (T,) E]`,
 * or with `zInProjection` the in projection's `[B, (T,) 2E]`, read in its second half where it
 * lies; with `lowRank` (a step's), delta is dtProj `[R, E]` and bc the x projection's output
 * `[B, R + 2N]` = low | B | C, and the kernel forms delta = low·dtProj itself.
 */
export interface KernelScanOptions {
  z?: tf.Tensor;
  deltaSoftplus: boolean;
  zInProjection?: boolean;
  lowRank?: boolean;
}

function attrsOf(options: KernelScanOptions, hasInitialState: boolean): tf.NamedAttrMap {
  const attrs: ScanAttrs = {
    deltaSoftplus: options.deltaSoftplus, hasZ: !!options.z, hasInitialState,
    zInProjection: options.zInProjection ?? false, lowRank: options.lowRank ?? false,
  };
  return attrs as unknown as tf.NamedAttrMap;
}

/**
 * The scan kernels' launches with the per-channel table `chan [E, N+2]` ({@link channelTable})
 * and B and C side by side, `bc [B, T, 2N]`: the public op packs both. SelectiveSSM's forward,
 * where no gradient is recorded, keeps the table, forms B|C in its x projection's launch, and
 * passes its in projection `[B, T, 2E]` as `z` with `zInProjection` (z its second half), where
 * slicing, packing and forming them took eight launches. Differentiable (the op's gradient) for
 * any but `zInProjection`.
 *
 * @example
 * ```ts
 * const [b, t, e, n] = [1, 32, 8, 4];
 * const chan = channelTable(tf.neg(tf.ones([e, n])) as tf.Tensor2D, tf.ones([e]) as tf.Tensor1D);   // A, D
 * const bc = tf.randomNormal([b, t, 2 * n]) as tf.Tensor3D;            // B | C
 * const u = tf.randomNormal([b, t, e]) as tf.Tensor3D;
 * const { output } = scanKernel(u, tf.randomNormal([b, t, e]), chan, bc, { deltaSoftplus: true });  // webgpu only
 * output.shape;                                                         // [1, 32, 8]
 * ```
 */
export function scanKernel(
  u: tf.Tensor3D, delta: tf.Tensor, chan: tf.Tensor2D, bc: tf.Tensor3D,
  options: Omit<KernelScanOptions, 'lowRank'> & { initialState?: tf.Tensor3D },
): SelectiveScanResult {
  const [output, state] = tf.tidy(() => {
    // an absent z or initialState is a stand-in off the gradient's path, never read
    const inputs: tf.NamedTensorMap = {
      u, delta, chan, bc, z: options.z ?? tf.zeros([1]), initialState: options.initialState ?? tf.zeros([1]),
    };
    // the last two outputs are saved for the backward; the gradient tape keeps its own references
    return (tf.engine().runKernel(SELECTIVE_SCAN, inputs, attrsOf(options, !!options.initialState)) as tf.Tensor[]).slice(0, 2);
  });
  return { output: output as tf.Tensor3D, state: state as tf.Tensor3D };
}

/**
 * The selective scan of Mamba (S6; Gu & Dao 2023), channels-last. With Δ = softplus(delta +
 * deltaBias), for every channel e and state n:
 * ```
 * h[t] = exp(Δ[t]·A) ⊙ h[t−1] + (Δ[t]·u[t]) ⊗ B[t]      h[−1] = initialState or 0
 * y[t] = h[t]·C[t] + D ⊙ u[t]                           out = y ⊙ silu(z)
 * ```
 * O(T·E·N) time, a linear recurrence run as a chunked scan over T by the WGSL kernels on webgpu,
 * and by one plain-JS pass each way on cpu and wasm (docs/selective-ssm.md).
 * Differentiable in every tensor input (the backward is the same recurrence in reverse).
 *
 * @param u `[B, T, E]` float32, the input; B or T may be 0 (the output is then empty, and the final
 *   state is `initialState`, or zeros).
 * @param delta `[B, T, E]` float32, the step size before bias and softplus.
 * @param A `[E, N]` float32, the state matrix (negative for a decaying state).
 * @param B `[B, T, N]` float32, the input projection of each step.
 * @param C `[B, T, N]` float32, the output projection of each step.
 * @returns `[B, T, E]`.
 *
 * @example
 * ```ts
 * const [b, t, e, n] = [1, 64, 32, 16];
 * const A = tf.neg(tf.tile(tf.range(1, n + 1).reshape([1, n]), [e, 1])) as tf.Tensor2D;
 * const y = ops.selectiveScan(tf.randomNormal([b, t, e]), tf.randomNormal([b, t, e]), A,
 *   tf.randomNormal([b, t, n]), tf.randomNormal([b, t, n]), { D: tf.ones([e]) });   // [1, 64, 32]
 * ```
 */
export function selectiveScan(
  u: tf.Tensor3D, delta: tf.Tensor3D, A: tf.Tensor2D, B: tf.Tensor3D, C: tf.Tensor3D, options: SelectiveScanOptions = {},
): tf.Tensor3D {
  const { output, state } = scan('selectiveScan', u, delta, A, B, C, options);
  state.dispose();
  return output;
}

/**
 * {@link selectiveScan}, also returning the state after the last step, `[B, E, N]`: pass it
 * as the next call's `initialState` to continue the sequence. Differentiable in both outputs.
 *
 * @returns `{ output: [B, T, E], state: [B, E, N] }`.
 *
 * @example
 * ```ts
 * const [e, n] = [8, 4];
 * const A = tf.neg(tf.ones([e, n])) as tf.Tensor2D;
 * // u, delta, B and C of t steps: [1, t, e], [1, t, e], [1, t, n], [1, t, n]
 * const steps = (t: number) => [e, e, n, n].map((c) => tf.randomNormal([1, t, c])) as tf.Tensor3D[];
 * const [u1, delta1, B1, C1] = steps(32);
 * const [u2, delta2, B2, C2] = steps(16);                  // the 16 steps after them
 * const first = ops.selectiveScanWithState(u1, delta1, A, B1, C1);
 * first.state.shape;                                       // [1, 8, 4]
 * const next = ops.selectiveScanWithState(u2, delta2, A, B2, C2, { initialState: first.state });
 * ```
 */
export function selectiveScanWithState(
  u: tf.Tensor3D, delta: tf.Tensor3D, A: tf.Tensor2D, B: tf.Tensor3D, C: tf.Tensor3D, options: SelectiveScanOptions = {},
): SelectiveScanResult {
  return scan('selectiveScanWithState', u, delta, A, B, C, options);
}

/**
 * One decode step of {@link selectiveScan} for a single token per sequence: from the state
 * after the previous token to the output and state after this one. Used by the SelectiveSSM
 * layer's `step`. Its WGSL kernel is for decoding and has no gradient; the reference
 * (`implementation: 'reference'`) is differentiable.
 *
 * @param u `[B, E]` float32.
 * @param delta `[B, E]` float32.
 * @param A `[E, N]` float32.
 * @param B `[B, N]` float32.
 * @param C `[B, N]` float32.
 * @param state `[B, E, N]` float32, the state before this token.
 * @returns `{ output: [B, E], state: [B, E, N] }`.
 *
 * @example
 * ```ts
 * const [e, n] = [8, 4];
 * const A = tf.neg(tf.ones([e, n])) as tf.Tensor2D;
 * let state = tf.zeros([1, e, n]) as tf.Tensor3D;
 * const [u, delta] = [tf.randomNormal([1, e]), tf.randomNormal([1, e])] as tf.Tensor2D[];
 * const [B, C] = [tf.randomNormal([1, n]), tf.randomNormal([1, n])] as tf.Tensor2D[];
 * const r = ops.selectiveScanStep(u, delta, A, B, C, state);
 * r.output.shape;                                          // [1, 8]
 * state = r.state;
 * ```
 */
export function selectiveScanStep(
  u: tf.Tensor2D, delta: tf.Tensor2D, A: tf.Tensor2D, B: tf.Tensor2D, C: tf.Tensor2D, state: tf.Tensor3D,
  options: SelectiveScanStepOptions = {},
): SelectiveScanResult<tf.Rank.R2> {
  const op = 'selectiveScanStep';
  checkOptionNames(op, options, STEP_OPTIONS);
  const args = checkScan(op, true, u, delta, A, B, C, options);
  const $state = checkTensor<tf.Rank.R3>(op, 'state', state, ['B', 'E', 'N']);
  checkShape(op, 'state', $state, [u.shape[0], ...args.A.shape], ['B', 'E', 'N']);
  const stepArgs = { ...args, state: $state } as Parameters<typeof selectiveScanStepReference>[0];
  const kernel = useKernel(op, options.implementation);
  if (args.u.size === 0) {
    const inputs = [u, delta, A, B, C, $state, args.D, args.z, args.deltaBias].filter((t) => t !== undefined);
    return { output: differentiableZeros(args.u.shape, inputs), state: differentiableZeros($state.shape, inputs) };
  }
  if (!kernel) return selectiveScanStepReference(stepArgs);
  const [chan, bc] = tf.tidy(() => [channelTable(args.A, args.D, args.deltaBias), tf.concat([B, C], 1)]) as tf.Tensor2D[];
  try {
    return stepKernel(u, delta, chan!, bc!, $state, args);
  } finally {
    tf.dispose([chan, bc]);
  }
}

/**
 * The step kernel's launch with its per-channel table, `chan [E, N+2]` ({@link channelTable}),
 * and B and C side by side, `bc [B, 2N]`: the public op packs both. SelectiveSSM's step keeps
 * the table while its weights stay the same and reads its in and x projections where they lie
 * ({@link KernelScanOptions}), where the block's ops slice and form them in launches of their own.
 *
 * @example
 * ```ts
 * const [e, n] = [8, 4];
 * const chan = channelTable(tf.neg(tf.ones([e, n])) as tf.Tensor2D);   // A, no D
 * const bc = tf.randomNormal([1, 2 * n]) as tf.Tensor2D;                 // B | C
 * const [u, delta] = [tf.randomNormal([1, e]), tf.randomNormal([1, e])] as tf.Tensor2D[];
 * const state = tf.zeros([1, e, n]) as tf.Tensor3D;
 * const { output, state: next } = stepKernel(u, delta, chan, bc, state, { deltaSoftplus: true });  // webgpu only
 * next.shape;                                                            // [1, 8, 4]
 * ```
 */
export function stepKernel(
  u: tf.Tensor2D, delta: tf.Tensor2D, chan: tf.Tensor2D, bc: tf.Tensor2D, state: tf.Tensor3D, options: KernelScanOptions,
): SelectiveScanResult<tf.Rank.R2> {
  const [output, next] = tf.tidy(() => {
    const inputs: tf.NamedTensorMap = { u, delta, chan, bc, z: options.z ?? tf.zeros([1]), state };
    return tf.engine().runKernel(SELECTIVE_SCAN_STEP, inputs, attrsOf(options, false)) as tf.Tensor[];
  });
  return { output: output as tf.Tensor2D, state: next as tf.Tensor3D };
}
