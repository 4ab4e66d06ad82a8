import * as tf from '@tensorflow/tfjs';
import {
  argumentError, checkBoolean, checkOptionNames, checkTensor, describe, differentiableZeros, formatShape, optionNames,
  useKernel, type Implementation,
} from '../validate.js';
import { rotaryFrequencies, rotaryReference, type RotaryPositions } from './reference.js';
import { ROTARY, ROTARY_FROM, type RotaryAttrs } from './kernel.js';

/**
 * The rotary embedding's configuration, as an attention layer takes it (`rotary: {...}`); every
 * field is optional and serialisable.
 */
export interface RotaryConfig {
  /** θ_m = base^(−2m/R). Default 10000. */
  base?: number;
  /** R, the channels rotated: even, 0 < R ≤ K; channels R..K−1 are copied. Default K. */
  rotaryDim?: number;
  /**
   * Which channels form a pair: `false` (default) pairs m with m + R/2, the GPT-NeoX / Llama
   * layout (Hugging Face's `rotate_half`); `true` pairs 2m with 2m + 1 (GPT-J, RoFormer).
   */
  interleaved?: boolean;
}

/** Options of `ops.rotary`: the {@link RotaryConfig} and where each token sits. */
export interface RotaryOptions extends RotaryConfig {
  /**
   * `[B, T]` int32: the position of every token. Give this or `offset`, not both. Positions
   * beyond ±2^24 are not exact in float32.
   */
  positions?: tf.Tensor2D;
  /**
   * Token t of row b sits at `offset + t`: an integer, or a `[B]` int32 tensor, one offset per
   * row (rows of different lengths decoding in one batch). Default 0.
   */
  offset?: number | tf.Tensor1D;
  /** Which implementation runs. Default `'auto'`. */
  implementation?: Implementation;
}

const CONFIG_OPTIONS = optionNames<RotaryConfig>({ base: true, rotaryDim: true, interleaved: true });
const OPTIONS = optionNames<RotaryOptions>({
  base: true, rotaryDim: true, interleaved: true, positions: true, offset: true, implementation: true,
});
/** float32 holds every integer up to 2^24, so positions up to there reach the angle exactly. */
const MAX_POSITION = 2 ** 24;

/**
 * Checks a {@link RotaryConfig} and fills in its defaults: `base` 10000, `interleaved` false,
 * `rotaryDim` K when `K` is given (else left undefined, for a layer to check again once built).
 * Errors start with `where`: an op's name, or a layer's and its argument's.
 *
 * @example
 * ```ts
 * resolveRotaryConfig('FlashStyleTiledAttention: rotary', { rotaryDim: 32 });   // { base: 10000, rotaryDim: 32, interleaved: false }
 * resolveRotaryConfig('FlashStyleTiledAttention: rotary', { rotaryDim: 32 }, 16); // throws: rotaryDim at most K = 16
 * ```
 */
export function resolveRotaryConfig(where: string, config: unknown, K?: number): RotaryConfig & { base: number; interleaved: boolean } {
  if (config !== undefined && (config === null || typeof config !== 'object' || Array.isArray(config) || config instanceof tf.Tensor)) {
    throw argumentError(where, `the rotary configuration must be an object with some of the options ` +
      `${CONFIG_OPTIONS.map((o) => `'${o}'`).join(', ')}; received ${describe(config)}.`);
  }
  checkOptionNames(where, config, CONFIG_OPTIONS);
  const c = (config ?? {}) as RotaryConfig;
  const base = c.base ?? 10000;
  if (typeof base !== 'number' || !Number.isFinite(base) || base <= 0) {
    throw argumentError(where, `option 'base' must be a positive finite number; received ${describe(base)}.`);
  }
  const interleaved = checkBoolean(where, 'interleaved', c.interleaved, false);
  const R = c.rotaryDim;
  if (R === undefined) {
    if (K !== undefined && K % 2 !== 0) {
      throw argumentError(where, `option 'rotaryDim' defaults to the head dimension K = ${K}, which is odd; give an even rotaryDim < K.`);
    }
    return { base, rotaryDim: K, interleaved };
  }
  if (typeof R !== 'number' || !Number.isInteger(R) || R < 2 || R % 2 !== 0 || (K !== undefined && R > K)) {
    const bound = K === undefined ? '' : ` and at most the head dimension K = ${K}`;
    throw argumentError(where, `option 'rotaryDim' must be an even integer ≥ 2${bound}; received ${describe(R)}.`);
  }
  return { base, rotaryDim: R, interleaved };
}

/** The positions of `options` for x with B rows of T tokens, checked. */
function resolvePositions(op: string, options: RotaryOptions, B: number, T: number): RotaryPositions {
  const { positions, offset } = options;
  if (positions !== undefined) {
    if (offset !== undefined) {
      throw argumentError(op, `give option 'positions' or option 'offset', not both; received both.`);
    }
    if (!(positions instanceof tf.Tensor) || positions.dtype !== 'int32' || positions.rank !== 2 ||
      positions.shape[0] !== B || positions.shape[1] !== T) {
      throw argumentError(op, `option 'positions' must be an int32 tensor [B, T] = ${formatShape([B, T])}; received ${describe(positions)}.`);
    }
    return { kind: 'table', positions };
  }
  if (offset instanceof tf.Tensor) {
    if (offset.dtype !== 'int32' || offset.rank !== 1 || offset.shape[0] !== B) {
      throw argumentError(op, `option 'offset' must be an integer or an int32 tensor [B] = [${B}]; received ${describe(offset)}.`);
    }
    return { kind: 'rows', offset };
  }
  const o = offset ?? 0;
  if (typeof o !== 'number' || !Number.isInteger(o) || o < -MAX_POSITION || o + Math.max(T - 1, 0) > MAX_POSITION) {
    throw argumentError(op, `option 'offset' must be an integer or an int32 tensor [B] = [${B}], with positions offset..offset + T − 1 ` +
      `within ±2^24 (T = ${T}); received ${describe(o)}.`);
  }
  return { kind: 'scalar', offset: o };
}

/**
 * Rotary position embedding (RoFormer, Su et al. 2021; MIXERS.md §8). Token t of row b at
 * position p (`positions[b, t]`, else `offset + t`) has each pair of channels (a, b) of each
 * head rotated by the angle p·θ_m, θ_m = base^(−2m/R), m = 0..R/2−1:
 *
 * ```
 * y_a = x_a·cos(p·θ_m) − x_b·sin(p·θ_m)
 * y_b = x_a·sin(p·θ_m) + x_b·cos(p·θ_m)
 * ```
 *
 * with (a, b) = (m, m + R/2) by default (GPT-NeoX, Llama) or (2m, 2m + 1) when `interleaved`
 * (GPT-J, RoFormer); channels R..K−1 are copied. After it, q·k depends on the positions of q
 * and k only through their difference. Differentiable: the gradient is the inverse rotation
 * of dy. The angle is formed as the float32 product p·θ_m, as the reference implementations
 * do; its rounding grows with p ([the rotary guide](../../docs/rotary.md) bounds the error).
 *
 * @param x `[B, T, H, K]` float32; B or T may be 0 (the output is then empty).
 * @returns `[B, T, H, K]`.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([2, 16, 4, 64]) as tf.Tensor4D;
 * const y = ops.rotary(q);                                     // positions 0..15 in both rows
 * const half = ops.rotary(q, { rotaryDim: 32, interleaved: true });
 * // decoding: one token per row, rows at positions 7 and 12
 * const step = ops.rotary(tf.randomNormal([2, 1, 4, 64]) as tf.Tensor4D, { offset: tf.tensor1d([7, 12], 'int32') });
 * ```
 */
export function rotary(x: tf.Tensor4D, options: RotaryOptions = {}): tf.Tensor4D {
  const op = 'rotary';
  checkOptionNames(op, options, OPTIONS);
  return rotaryOf(checkRotary(op, 'x', x, options));
}

interface Checked {
  x: tf.Tensor4D;
  base: number;
  R: number;
  interleaved: boolean;
  pos: RotaryPositions;
  kernel: boolean;
}

/** Checks `x` (named `name` in messages) and the options but their names. */
function checkRotary(op: string, name: string, x: unknown, options: RotaryOptions): Checked {
  const $x = checkTensor<tf.Rank.R4>(op, name, x, ['B', 'T', 'H', 'K']) as tf.Tensor4D;
  const [B, T, , K] = $x.shape;
  const config = resolveRotaryConfig(op, { base: options.base, rotaryDim: options.rotaryDim, interleaved: options.interleaved }, K);
  const pos = resolvePositions(op, options, B, T);
  const kernel = useKernel(op, options.implementation);
  return { x: $x, base: config.base, R: config.rotaryDim!, interleaved: config.interleaved, pos, kernel };
}

/** Runs the kernel or the reference on checked arguments. */
function rotaryOf(c: Checked): tf.Tensor4D {
  if (c.x.size === 0) return differentiableZeros(c.x.shape, [c.x]);
  const { pos } = c;
  if (c.kernel) {
    const attrs: RotaryAttrs = {
      interleaved: c.interleaved, direction: 1, base: c.base, rotaryDim: c.R, offset: pos.kind === 'scalar' ? pos.offset : 0,
    };
    const named = attrs as unknown as tf.NamedAttrMap;
    // one offset for every row is a param of its own kernel: no int tensor made and uploaded
    if (pos.kind === 'scalar') return tf.engine().runKernel(ROTARY_FROM, { x: c.x }, named) as tf.Tensor4D;
    return tf.engine().runKernel(ROTARY, { x: c.x, positions: pos.kind === 'table' ? pos.positions : pos.offset }, named) as tf.Tensor4D;
  }
  const theta = tf.tensor1d(rotaryFrequencies(c.base, c.R), 'float32');
  try {
    return rotaryReference(c.x, theta, c.pos, c.interleaved);
  } finally {
    // the tape keeps its own copies of what the gradient needs
    theta.dispose();
  }
}

/**
 * The rotary embedding of an attention layer's queries and keys, both at the same positions:
 * one call for a layer with `rotary: {...}`. In decoding, pass the state's per-row positions
 * as `offset` (`[B]` int32, the position of each row's first new token); with packed segments,
 * pass `positions` restarting at 0 in each segment.
 *
 * @param q `[B, T, H, K]` float32.
 * @param k `[B, T, Hkv, K]` float32.
 * @returns `[q', k']`, the shapes of q and k.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([2, 1, 8, 64]) as tf.Tensor4D;   // one new token per row
 * const k = tf.randomNormal([2, 1, 2, 64]) as tf.Tensor4D;
 * const next = tf.tensor1d([17, 40], 'int32');              // each row's position, from the decode state
 * const [q2, k2] = rotaryQK(q, k, { base: 10000, offset: next });
 * ```
 */
export function rotaryQK(q: tf.Tensor4D, k: tf.Tensor4D, options: RotaryOptions = {}): [tf.Tensor4D, tf.Tensor4D] {
  const op = 'rotaryQK';
  checkOptionNames(op, options, OPTIONS);
  const cq = checkRotary(op, 'q', q, options);
  const ck = checkRotary(op, 'k', k, options);
  const [qs, ks] = [cq.x.shape, ck.x.shape];
  if (qs[0] !== ks[0] || qs[1] !== ks[1] || qs[3] !== ks[3]) {
    throw argumentError(op, `arguments 'q' [B, T, H, K] and 'k' [B, T, Hkv, K] must agree in B, T and K; ` +
      `received ${formatShape(qs)} and ${formatShape(ks)}.`);
  }
  const rq = rotaryOf(cq);
  try {
    return [rq, rotaryOf(ck)];
  } catch (error) {
    rq.dispose();
    throw error;
  }
}

/**
 * The position of every token within its segment, a run of equal ids (as packing sequences
 * into one row produces): `t − (the first index of t's run)`, so positions restart at 0 where
 * the id changes. Pass the result as `positions` to {@link rotary} for packed sequences.
 *
 * @param segmentIds `[B, T]` int32; B or T may be 0.
 * @returns `[B, T]` int32.
 *
 * @example
 * ```ts
 * segmentPositions(tf.tensor2d([[0, 0, 0, 1, 1, 2]], [1, 6], 'int32')).print();   // [[0, 1, 2, 0, 1, 0]]
 * ```
 */
export function segmentPositions(segmentIds: tf.Tensor2D): tf.Tensor2D {
  if (!(segmentIds instanceof tf.Tensor) || segmentIds.dtype !== 'int32' || segmentIds.rank !== 2) {
    throw argumentError('segmentPositions', `argument 'segmentIds' must be an int32 tensor [B, T]; received ${describe(segmentIds)}.`);
  }
  const [B, T] = segmentIds.shape;
  if (B * T === 0) return tf.zeros([B, T], 'int32');
  return tf.tidy(() => {
    const previous = tf.concat([segmentIds.slice([0, 0], [B, 1]), segmentIds.slice([0, 0], [B, T - 1])], 1);
    // the run number of each token (nondecreasing, exact in float32), then where its run starts
    const run = tf.cumsum(tf.cast(tf.notEqual(segmentIds, previous), 'float32'), 1);
    const start = tf.searchSorted(run, run, 'left');
    return tf.sub(tf.range(0, T, 1, 'int32').expandDims(0), start);
  });
}
