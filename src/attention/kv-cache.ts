import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import writeBody from '../../kernels/kv-cache/write.wgsl';
import { argumentError, onHostBackend, optionNames } from '../validate.js';
import { grid1d, laneVariants, lanesFor, ownsData, runKernel } from '../webgpu/runtime.js';
import { clampInts, gatherRows } from '../tensors.js';

/** Options of an attention layer's `initState(batch, options)`. */
export interface KVCacheOptions {
  /**
   * Preallocate the cache for this many tokens a row (a positive integer): keys and values
   * `[B, capacity, Hkv, K]`, which `step` and `prefill` then write in place (one WGSL kernel
   * on webgpu), so that a step costs the same at any length but for the attention's read. A
   * row that would pass `capacity` tokens throws, except with the layer's `window` w ≤
   * `capacity`: the cache is then a ring of the last w tokens, `[B, w, Hkv, K]` (older ones
   * are never read). Default: none, a cache that grows by concatenation.
   */
  capacity?: number;
}

/**
 * Decode state of an attention layer: the key/value cache and each row's position.
 *
 * Two kinds, by `initState`'s `capacity`:
 * - **concatenating** (`capacity` undefined): every `step` and `prefill` returns a new state whose
 *   keys have grown by the call's tokens (on webgl to the next power of two of the tokens, at
 *   least 64, and only when they no longer fit: docs/decoding.md); the input state is left as it
 *   is: dispose each previous state.
 * - **preallocated** (`capacity` a number): `step` and `prefill` write the new keys and values
 *   into this state's own buffers and return the same object, updated in place. Dispose it
 *   once, at the end. Its tensors are the state's alone: do not clone, reshape or keep them
 *   across steps (a tensor sharing their buffer would see the writes, so `step` refuses to
 *   write while one is alive); copy what you want to keep (`tf.add(state.keys, 0)`).
 *
 * Row b's keys are slots `0 .. positions[b] − 1` (a ring: slot `p mod capacity` holds position
 * p); slots past a row's position hold zeros or padding that no query sees.
 */
export type KVCacheState = {
  /** `[B, S, Hkv, K]`: the keys, S slots (the tokens of every call so far, rounded up on webgl; the capacity; or the ring). */
  keys: tf.Tensor4D;
  /** `[B, S, Hkv, K]`: their values. */
  values: tf.Tensor4D;
  /** int32 `[B]`: the tokens row b has consumed; its next token sits at that position. */
  positions: tf.Tensor1D;
  /** The slots preallocated (S), or `undefined` for a concatenating cache. */
  capacity: number | undefined;
  /** Whether the slots are a ring that keeps the last S tokens (a windowed layer). */
  ring: boolean;
  /**
   * The positions as the host knows them without reading `positions` back (which would stall
   * the GPU): exact per row (`rows`) while every `prefill` took its lengths as numbers, else
   * `undefined`; and `max`, an upper bound on every row's, which counts a prefill with tensor
   * lengths as T tokens a row. The full-cache check reads these.
   */
  counted: { rows: number[] | undefined; max: number };
};

/** The names of {@link KVCacheOptions}, for option-name checks. */
export const KV_CACHE_OPTIONS = optionNames<KVCacheOptions>({ capacity: true });

/** An int32 scalar: a plain number would make tfjs's binary ops float32. */
export const int = (n: number): tf.Scalar => tf.scalar(n, 'int32');

const WG = 256;
const WRITE = laneVariants('KVCacheWrite', [grid, writeBody]);

/**
 * An empty cache for `B` rows of `Hkv` heads of width K: `slots` preallocated (a ring when
 * `ring`), or none for a concatenating cache (`slots` undefined). Every position is 0.
 *
 * @example
 * ```ts
 * const state = emptyCache(2, 1, 8, 64, false); // keys and values [2, 64, 1, 8], positions [0, 0]
 * tf.dispose(state);
 * ```
 */
export function emptyCache(B: number, Hkv: number, K: number, slots: number | undefined, ring: boolean): KVCacheState {
  const shape: [number, number, number, number] = [B, slots ?? 0, Hkv, K];
  return {
    keys: tf.zeros(shape), values: tf.zeros(shape), positions: tf.zeros([B], 'int32'),
    capacity: slots, ring, counted: { rows: new Array<number>(B).fill(0), max: 0 },
  };
}

/**
 * The slots a concatenating cache of `S` slots adds for a call of T tokens after which no row is
 * past position `most` (the host's bound). T, so that S counts every call's tokens, except on
 * tfjs's webgl backend, which compiles a shader per tensor shape: a cache that grew by one slot
 * a token made every op that reads it compile again each token (24 programs a step of
 * FlashStyleTiledAttention, 0.7 s a token on SwiftShader). There the cache grows to the next
 * power of two of at least {@link MIN_GROWN_SLOTS}, and not at all while `most` fits: the slots
 * past a row's position hold zeros that causality hides, so its shapes change log₂(t) times.
 *
 * @example
 * ```ts
 * growthOf(10, 1, 11, 'wasm');   // 1
 * growthOf(10, 1, 11, 'webgl');  // 54: 10 slots become 64
 * ```
 */
export function growthOf(S: number, T: number, most: number, backend = tf.getBackend()): number {
  if (backend !== 'webgl') return T;
  return most <= S ? 0 : Math.max(MIN_GROWN_SLOTS, 2 ** Math.ceil(Math.log2(most))) - S;
}

/** The fewest slots a concatenating cache grows to on webgl ({@link growthOf}). */
export const MIN_GROWN_SLOTS = 64;

/**
 * Throws, naming `method`, when the call's tokens may not fit a preallocated linear cache:
 * row b takes `lengths[b]` more (T each when the lengths are a tensor, which is not read).
 * A ring or a concatenating cache always fits. `hint` ends the message: what to do instead.
 *
 * @example
 * ```ts
 * const state = emptyCache(1, 1, 8, 4, false);               // one row of 4 slots, empty
 * checkFits('FlashStyleTiledAttention.step', state, 1, [1], 'Make a larger cache.');
 * const full = { ...state, counted: countAfter(state.counted, 4, [4]) };   // as after 4 tokens
 * checkFits('FlashStyleTiledAttention.step', full, 1, [1], 'Make a larger cache.');   // throws: …
 * ```
 */
export function checkFits(method: string, state: KVCacheState, T: number, lengths: number[] | null, hint: string): void {
  const C = state.capacity;
  if (C === undefined || state.ring) return;
  const { rows, max } = state.counted;
  const more = (b: number) => lengths ? lengths[b]! : T;
  if (rows) {
    const b = rows.findIndex((p, r) => p + more(r) > C);
    if (b < 0) return;
    throw argumentError(method, `the key/value cache is full: it holds capacity = ${C} tokens a row, and row ${b}, at position ` +
      `${rows[b]}, cannot take ${more(b)} more${lengths ? '' : ' (lengths given as a tensor count as T = ' + T + ')'}. ${hint}`);
  }
  const most = max + (lengths ? Math.max(0, ...lengths) : T);
  if (most > C) {
    throw argumentError(method, `the key/value cache may overflow: it holds capacity = ${C} tokens a row, and a row may reach ` +
      `${most} (an earlier prefill took its lengths as a tensor, counted as T tokens a row, so the positions are only bounded ` +
      `on the host). ${hint}`);
  }
}

/**
 * The host's count after a call of T tokens with these lengths (numbers, or null for a tensor).
 *
 * @example
 * ```ts
 * countAfter({ rows: [3, 0], max: 3 }, 4, [4, 2]); // { rows: [7, 2], max: 7 }
 * countAfter({ rows: [3, 0], max: 3 }, 4, null);   // { rows: undefined, max: 7 }
 * ```
 */
export function countAfter(counted: KVCacheState['counted'], T: number, lengths: number[] | null): KVCacheState['counted'] {
  const rows = counted.rows && lengths ? counted.rows.map((p, b) => p + lengths[b]!) : undefined;
  const max = rows ? Math.max(0, ...rows) : counted.max + (lengths ? Math.max(0, ...lengths) : T);
  return { rows, max };
}

/**
 * Throws, naming `method`, unless the preallocated state's keys and values own their buffers:
 * an in-place write into a buffer that a clone or reshape of them shares would change that
 * tensor too. (The positions after a call are a new tensor.)
 */
export function checkOwned(method: string, state: KVCacheState): void {
  const backend = tf.backend() as WebGPUBackend;
  for (const name of ['keys', 'values'] as const) {
    if (!ownsData(backend, state[name])) {
      throw argumentError(method, `argument 'state.${name}' shares its buffer with another live tensor (a clone, reshape or ` +
        `other view of it), which an in-place write would change too. A preallocated cache's tensors are the state's alone: ` +
        `dispose that tensor, and copy what you keep (tf.add(state.${name}, 0)).`);
    }
  }
}

/**
 * Row b's `n[b]` real tokens of each `sources[c] [B, T, Hkv, K]` written into `caches[c]
 * [B, S, Hkv, K]` from slot `positions[b]` (in a ring, slot `(positions[b] + i) mod S`, the
 * last S tokens only), as new tensors: the tfjs-ops reference of the kernel, which copies. The
 * keys and the values share one computation of which token each slot takes. It selects, so a
 * non-finite value in the padding never reaches a cache.
 *
 * @example
 * ```ts
 * // one row at position 1 of a 4-slot cache takes 2 tokens: slots 1 and 2
 * const [cache] = writeReference([tf.zeros([1, 4, 1, 1])], [tf.tensor4d([5, 6, 7], [1, 3, 1, 1])],
 *   tf.tensor1d([1], 'int32'), tf.tensor1d([2], 'int32'), false); // [0, 5, 6, 0]
 * ```
 */
export function writeReference(
  caches: readonly tf.Tensor4D[], sources: readonly tf.Tensor4D[], positions: tf.Tensor1D, n: tf.Tensor1D, ring: boolean,
): tf.Tensor4D[] {
  if (onHostBackend() && tf.engine().state.gradientDepth === 0) {
    const [from, counts] = [positions.dataSync(), n.dataSync()];
    return caches.map((cache, c) => writeOnHost(cache, sources[c]!, from, counts, ring));
  }
  return tf.tidy(() => {
    const [B, S, Hkv, K] = caches[0]!.shape;
    const T = sources[0]!.shape[1];
    const s = tf.range(0, S, 1, 'int32').expandDims(0);           // [1, S]
    const p = positions.expandDims(1);                             // [B, 1]
    const len = n.expandDims(1);                                   // [B, 1]
    // the token i each slot receives; a slot receives one where 0 ≤ i < n
    const i = ring
      // the latest i < n with p + i ≡ s (mod S); the + S keeps the dividend non-negative
      ? tf.sub(tf.sub(len, int(1)), tf.mod(tf.add(tf.sub(tf.add(p, len), s), int(S - 1)), int(S)))
      : tf.sub(s, p);
    const taken = tf.logicalAnd(tf.greaterEqual(i, 0), tf.less(i, len));          // [B, S]
    const slots = tf.broadcastTo(taken.reshape([B, S, 1, 1]), [B, S, Hkv, K]);
    const index = clampInts(i, 0, Math.max(T - 1, 0)) as tf.Tensor2D;
    return caches.map((cache, c) => tf.where(slots, gatherRows(sources[c]!, index), cache) as tf.Tensor4D);
  });
}

/**
 * {@link writeReference} on a host backend where no gradient is recorded: the cache copied and
 * its taken slots overwritten in JS, token i of row b to slot positions[b] + i (mod S in a
 * ring, so that the latest token wins), for i < n[b]. tfjs's ops formed, per slot of the whole
 * cache, the token it takes (a gather), its mask broadcast by a tile, and a select: each an
 * indexed pass over B·S·Hkv·K floats on wasm and cpu, where this is one copy.
 */
function writeOnHost(cache: tf.Tensor4D, source: tf.Tensor4D, from: ArrayLike<number>, counts: ArrayLike<number>, ring: boolean): tf.Tensor4D {
  const [B, S, Hkv, K] = cache.shape;
  const T = source.shape[1];
  const row = Hkv * K;
  const out = new Float32Array(cache.dataSync() as Float32Array);
  const tokens = source.dataSync() as Float32Array;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Math.min(counts[b]!, T); i++) {
      const slot = ring ? (from[b]! + i) % S : from[b]! + i;
      if (slot < S) out.set(tokens.subarray((b * T + i) * row, (b * T + i + 1) * row), (b * S + slot) * row);
    }
  }
  return tf.tensor4d(out, cache.shape);
}

/**
 * The kernel of {@link writeReference}, on webgpu: writes `keys` and `values [B, T, Hkv, K]`
 * into the state's own buffers, in place (the caller has checked it owns them), and returns the
 * positions after the call, `positions + n` (n clamped to 0..T by the caller; without it every
 * row's T tokens are real, as in a decode step, and no tensor of them is made), as a new tensor:
 * the same launch forms them, and `state.positions`, which the call's attention still reads,
 * is left as it is.
 */
export function writeKernel(state: KVCacheState, keys: tf.Tensor4D, values: tf.Tensor4D, n?: tf.Tensor1D): tf.Tensor1D {
  const [B, T, Hkv, K] = keys.shape;
  const S = state.keys.shape[1];
  const lanes = lanesFor(Hkv * K);
  const total = (B * T * Hkv * K) / lanes;
  if (total === 0 || S === 0) return tf.tidy(() => tf.add(state.positions, n ?? tf.scalar(T, 'int32')));
  const [advanced] = runKernel(tf.backend() as WebGPUBackend, WRITE[lanes], {
    // the positions stand in for absent lengths, which the kernel then does not read
    inputs: [keys, values, state.positions, n ?? state.positions],
    outputs: [{ shape: [B], dtype: 'int32' }],
    updates: [state.keys, state.values],
    params: [{ u32: total }, { u32: T }, { u32: S }, { u32: (Hkv * K) / lanes }, { u32: state.ring ? 1 : 0 }],
    constants: { WG, ALL_REAL: n ? 0 : 1 },
    workgroups: grid1d(total, WG),
  });
  return tf.engine().makeTensorFromTensorInfo(advanced!) as tf.Tensor1D;
}

/**
 * A ring's keys (or values) `[B, S, Hkv, K]` in the order of their positions, followed by the
 * call's own `source [B, T, Hkv, K]`: row b's `held[b] = min(positions[b], S)` cached tokens
 * first (oldest first), then its T new ones, `[B, S + T, Hkv, K]` (the tail past
 * `held[b] + T` repeats the last new token, which no query sees). Query i of row b then sits
 * at `held[b] + i`, so causal and window visibility apply as on a linear cache.
 *
 * @example
 * ```ts
 * // a 3-slot ring at position 4 holds positions 3, 1, 2 in slots 0, 1, 2
 * const ring = tf.tensor4d([3, 1, 2], [1, 3, 1, 1]);
 * unrollRing(ring, tf.tensor4d([8, 9], [1, 2, 1, 1]), tf.tensor1d([4], 'int32')); // [1, 2, 3, 8, 9]
 * ```
 */
export function unrollRing(ring: tf.Tensor4D, source: tf.Tensor4D, positions: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    const S = ring.shape[1];
    const T = source.shape[1];
    const held = tf.minimum(positions, int(S)).expandDims(1);              // [B, 1]
    const j = tf.range(0, S + T, 1, 'int32').expandDims(0);           // [1, S + T]
    // j < held: the slot of position positions − held + j; else new token j − held, at S + (j − held)
    const cached = tf.mod(tf.add(tf.sub(positions.expandDims(1), held), j), int(S));
    const fresh = tf.add(tf.minimum(tf.sub(j, held), int(T - 1)), int(S));
    const index = tf.where(tf.less(j, held), cached, fresh);
    return gatherRows(tf.concat([ring, source], 1) as tf.Tensor4D, index as tf.Tensor2D);
  });
}
