import type * as tf from '@tensorflow/tfjs';
import { maskedSoftmaxAttention, visibility } from '../../attention/reference.js';
import type { AttentionSizes } from '../../attention/validate.js';

/**
 * Exact softmax attention in tfjs ops (matMul, mask, softmax, matMul), differentiable: the
 * ground truth of FlashStyleTiledAttention. Its memory is O(B·H·Tq·Tk).
 */
export function flashAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, causal: boolean, scale: number,
): tf.Tensor4D {
  return maskedSoftmaxAttention(q, k, v, s, scale, visibility(s, causal));
}
