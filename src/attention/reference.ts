import * as tf from '@tensorflow/tfjs';
import type { AttentionSizes } from './validate.js';

/**
 * `[B, T, Hkv, K]` → `[B, H, T, K]`: heads first, each key/value head repeated for the
 * H / Hkv query heads that read it (query head h reads kv head ⌊h·Hkv/H⌋).
 */
export function headsFirst(x: tf.Tensor4D, H: number): tf.Tensor4D {
  const Hkv = x.shape[2];
  const t = x.transpose([0, 2, 1, 3]) as tf.Tensor4D;
  if (Hkv === H) return t;
  // a gather, not a rank-5 tile: tfjs-webgpu runs rank-5 tiles on the CPU, which fails in Node
  const heads = tf.tensor1d(Array.from({ length: H }, (_, h) => Math.floor((h * Hkv) / H)), 'int32');
  return tf.gather(t, heads, 1);
}

/**
 * `[Tq, Tk]` visibility of key j to query i: causal bottom-right aligned (j ≤ i + Tk − Tq), or
 * all keys, and further restricted by `mask` when given (a block-sparse layout).
 */
export function visibility(
  s: Pick<AttentionSizes, 'Tq' | 'Tk'>, causal: boolean, mask?: (i: number, j: number) => boolean,
): Uint8Array {
  const out = new Uint8Array(s.Tq * s.Tk);
  for (let i = 0; i < s.Tq; i++) {
    for (let j = 0; j < s.Tk; j++) {
      out[i * s.Tk + j] = (!causal || j <= i + s.Tk - s.Tq) && (!mask || mask(i, j)) ? 1 : 0;
    }
  }
  return out;
}

/**
 * Softmax attention in tfjs ops under a visibility mask, differentiable by tfjs: the ground
 * truth for FlashStyleTiledAttention and BlockSparse. Materialises the `[B, H, Tq, Tk]` scores.
 * Masked scores are set to a large negative number rather than −∞, so that a row with no
 * visible key stays finite; such rows are then multiplied by 0.
 */
export function maskedSoftmaxAttention(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, scale: number, visible: Uint8Array,
): tf.Tensor4D {
  return tf.tidy(() => {
    const scores = tf.mul(tf.matMul(q.transpose([0, 2, 1, 3]), headsFirst(k, s.H), false, true), scale);
    const allVisible = visible.every((x) => x === 1);
    let p: tf.Tensor;
    let rowHasKey: tf.Tensor | null = null;
    if (allVisible) {
      p = tf.softmax(scores);
    } else {
      const mask = tf.tensor2d(visible, [s.Tq, s.Tk], 'bool');
      p = tf.softmax(tf.where(mask, scores, tf.fill(scores.shape, -1e30)));
      const rows = Float32Array.from({ length: s.Tq }, (_, i) => (visible.subarray(i * s.Tk, (i + 1) * s.Tk).some((x) => x === 1) ? 1 : 0));
      if (rows.some((r) => r === 0)) rowHasKey = tf.tensor4d(rows, [1, 1, s.Tq, 1]);
    }
    let o = tf.matMul(p, headsFirst(v, s.H));
    if (rowHasKey) o = tf.mul(o, rowHasKey);
    return o.transpose([0, 2, 1, 3]) as tf.Tensor4D;
  });
}
