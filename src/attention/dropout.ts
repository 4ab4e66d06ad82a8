import { argumentError, describe, optionNames } from '../validate.js';
import type { AttentionSizes } from './validate.js';

/**
 * Attention dropout (training), shared by the attention ops (`flashAttention`,
 * `expressiveAttention`, `blockSparseAttention`): each normalised weight a_ij of query head h,
 * batch row b, is kept with probability 1 − p and then scaled by 1/(1 − p), after the
 * normaliser (the softmax's l or ExpressiveAttention's z is summed over every visible weight,
 * dropped or not), as Keras and FlashAttention do. The keep decision is a pure function of
 * (seed, b, h, i, j) (a 32-bit integer hash), so the backward, the reference and a re-run with
 * the same seed drop the same weights. It sits beside the visibility options: a dropped weight
 * still counts in its row's normaliser, an invisible one never does.
 */
export interface DropoutOptions {
  /** The rate p of dropped weights, a number in [0, 1). Default 0: no dropout, the plain attention. */
  dropout?: number;
  /**
   * Which weights drop: an integer in 0..2³² − 1, required when `dropout` > 0. The same seed
   * drops the same (b, h, i, j) pairs on every backend; a fresh seed per training step draws a
   * fresh mask.
   */
  seed?: number;
}

/** The names of {@link DropoutOptions}, for option-name checks. */
export const DROPOUT_OPTIONS = optionNames<DropoutOptions>({ dropout: true, seed: true });

/** {@link DropoutOptions} checked: a rate in (0, 1) and its seed. */
export interface Dropout {
  rate: number;
  seed: number;
}

/** The largest seed: seeds are u32. */
const MAX_SEED = 2 ** 32 - 1;

/**
 * A dropout rate, `undefined` read as 0, checked to be a number in [0, 1), or an error naming `op` and `dropout`.
 *
 * @example
 * ```ts
 * checkDropoutRate('MyLayer', undefined, 'argument');  // 0
 * checkDropoutRate('MyLayer', 1, 'argument');          // throws: argument 'dropout' must be a number in [0, 1)
 * ```
 */
export function checkDropoutRate(op: string, value: unknown, kind: 'argument' | 'option'): number {
  const rate = value ?? 0;
  if (typeof rate !== 'number' || !(rate >= 0 && rate < 1)) {
    throw argumentError(op, `${kind} 'dropout' must be a number in [0, 1); received ${describe(rate)}.`);
  }
  return rate;
}

/**
 * A seed for one training call of a layer with dropout, drawn from `Math.random` (an integer
 * in 0..2³² − 1), so that each call drops its own weights.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([1, 16, 4, 8]) as tf.Tensor4D;
 * const o = ops.flashAttention(q, q, q, { dropout: 0.1, seed: freshSeed() });   // its own dropped weights
 * ```
 */
export function freshSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

/**
 * Checks the dropout options of one attention call: `null` when the rate is 0 (or omitted), so
 * the call takes exactly the path it takes without dropout; errors name `op` and the option.
 *
 * @example
 * ```ts
 * resolveDropout('flashAttention', {});                          // null
 * resolveDropout('flashAttention', { dropout: 0.1, seed: 3 });  // { rate: 0.1, seed: 3 }
 * resolveDropout('flashAttention', { dropout: 0.1 });           // throws: option 'seed' … is required
 * ```
 */
export function resolveDropout(op: string, options: DropoutOptions): Dropout | null {
  const rate = checkDropoutRate(op, options.dropout, 'option');
  const seed = options.seed;
  if (seed !== undefined && (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > MAX_SEED)) {
    throw argumentError(op, `option 'seed' must be an integer in 0..${MAX_SEED}; received ${describe(seed)}.`);
  }
  if (rate === 0) return null;
  if (seed === undefined) {
    throw argumentError(op, `option 'seed' (an integer in 0..${MAX_SEED}) is required when 'dropout' > 0, so that ` +
      `the gradient and a re-run drop the same weights; received none with dropout = ${rate}.`);
  }
  return { rate, seed };
}

/** murmur3's 32-bit finaliser: a bijection of u32 whose every output bit depends on every input bit. */
function mix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * The u32 hash of one attention weight: `x = seed`, then for each of b, h, i, j in turn
 * `x = mix((x ^ value) + 0x9e3779b9)` (mod 2³²), mix being murmur3's finaliser. The WGSL twin is
 * `dropHash` in `kernels/common/dropout.wgsl`; the two agree bit for bit.
 *
 * @example
 * ```ts
 * dropoutHash(7, 0, 1, 2, 3) === dropoutHash(7, 0, 1, 2, 3);  // true: a pure function
 * ```
 */
export function dropoutHash(seed: number, b: number, h: number, i: number, j: number): number {
  let x = seed >>> 0;
  for (const value of [b, h, i, j]) x = mix(((x ^ value) + 0x9e3779b9) >>> 0);
  return x;
}

/**
 * The keep threshold of rate p: a weight is kept iff its hash ≥ round(p·2³²), capped at 2³² − 1.
 *
 * @example
 * ```ts
 * dropoutThreshold(0.5);  // 2147483648
 * ```
 */
export function dropoutThreshold(rate: number): number {
  return Math.min(Math.round(rate * 2 ** 32), MAX_SEED);
}

/**
 * Whether weight (b, h, i, j) is kept under `d`: query i, key j, query head h, batch row b.
 *
 * @example
 * ```ts
 * dropoutKeeps({ rate: 0.5, seed: 1 }, 0, 0, 3, 2);  // the same boolean on every call and backend
 * ```
 */
export function dropoutKeeps(d: Dropout, b: number, h: number, i: number, j: number): boolean {
  return dropoutHash(d.seed, b, h, i, j) >= dropoutThreshold(d.rate);
}

/**
 * The attrs an attention kernel call takes for `d`: none without dropout (the kernels then
 * compile it away), else `dropout` (p) and `seed`.
 *
 * @example
 * ```ts
 * dropoutAttrs(null);                        // {}
 * dropoutAttrs({ rate: 0.2, seed: 9 });      // { dropout: 0.2, seed: 9 }
 * ```
 */
export function dropoutAttrs(d: Dropout | null): { dropout?: number; seed?: number } {
  return d ? { dropout: d.rate, seed: d.seed } : {};
}

/**
 * The multipliers of the weights of queries `[i0, i1)` and the given keys, in the grouped row
 * layout of the chunked references: `[B, Hkv, (i1 − i0)·G, n]` float32 values, row
 * `(i − i0)·G + g` being query i of head `c·G + g` (G = H / Hkv, c the kv head), each 1/(1 − p)
 * where {@link dropoutKeeps} and 0 elsewhere. Computed in plain JS from the indices and the seed
 * (tfjs has no bitwise ops), reading no tensor.
 *
 * @example
 * ```ts
 * const keep = dropoutRows({ rate: 0.25, seed: 3 }, { B: 1, Tq: 4, Tk: 4, H: 2, Hkv: 1, K: 8 }, 0, 4, Int32Array.of(0, 1, 2, 3));
 * keep.length;  // 32: 1 · 1 · 8 · 4 values, each 0 or 4/3
 * ```
 */
export function dropoutRows(d: Dropout, s: AttentionSizes, i0: number, i1: number, keys: Int32Array): Float32Array {
  const G = s.H / s.Hkv;
  const scale = 1 / (1 - d.rate);
  const threshold = dropoutThreshold(d.rate);
  const values = new Float32Array(s.B * s.H * (i1 - i0) * keys.length);
  let n = 0;
  for (let b = 0; b < s.B; b++) {
    for (let c = 0; c < s.Hkv; c++) {
      for (let i = i0; i < i1; i++) {
        for (let g = 0; g < G; g++) {
          for (const j of keys) values[n++] = dropoutHash(d.seed, b, c * G + g, i, j) >= threshold ? scale : 0;
        }
      }
    }
  }
  return values;
}
