import * as tf from '@tensorflow/tfjs';
import { argumentError, checkTensor, describe, formatShape } from '../validate.js';

/** The sizes of an attention call: q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`. */
export interface AttentionSizes {
  B: number;
  Tq: number;
  Tk: number;
  H: number;
  Hkv: number;
  K: number;
}

/** The largest head dimension the kernels hold per query row. */
export const MAX_HEAD_DIM = 256;

/**
 * Checks q, k, v of an attention op once, naming the argument, the expectation and what was
 * received, and returns their sizes.
 */
export function checkAttention(op: string, q: unknown, k: unknown, v: unknown): AttentionSizes {
  const $q = checkTensor(op, 'q', q, ['B', 'Tq', 'H', 'K']);
  const $k = checkTensor(op, 'k', k, ['B', 'Tk', 'Hkv', 'K']);
  const $v = checkTensor(op, 'v', v, ['B', 'Tk', 'Hkv', 'K']);
  const [B, Tq, H, K] = $q.shape as [number, number, number, number];
  const [Bk, Tk, Hkv, Kk] = $k.shape as [number, number, number, number];
  if (!tf.util.arraysEqual($v.shape, $k.shape)) {
    throw argumentError(op, `argument 'v' must have the shape of 'k' [B, Tk, Hkv, K] = ${formatShape($k.shape)}; received ${formatShape($v.shape)}.`);
  }
  if (Bk !== B) throw argumentError(op, `arguments 'q' and 'k' must have the same batch B; received ${B} and ${Bk}.`);
  if (Kk !== K) throw argumentError(op, `arguments 'q' and 'k' must have the same head dimension K; received ${K} and ${Kk}.`);
  if (H % Hkv !== 0) {
    throw argumentError(op, `the query heads H = ${H} must be a multiple of the key/value heads Hkv = ${Hkv} ` +
      `(q is [B, Tq, H, K], k and v are [B, Tk, Hkv, K]).`);
  }
  if (K > MAX_HEAD_DIM) {
    throw argumentError(op, `the head dimension K of 'q', 'k' and 'v' must be at most ${MAX_HEAD_DIM}; received ${K}.`);
  }
  return { B, Tq, Tk, H, Hkv, K };
}

/** `scale ?? 1/√K`, checked to be a finite number, or an error naming it and what was received. */
export function checkScale(op: string, scale: number | undefined, K: number): number {
  const s = scale ?? 1 / Math.sqrt(K);
  if (typeof s !== 'number' || !Number.isFinite(s)) {
    throw argumentError(op, `option 'scale' must be a finite number; received ${describe(s)}.`);
  }
  return s;
}
