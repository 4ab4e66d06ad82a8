import * as tf from '@tensorflow/tfjs';
import { maskedSoftmaxAttention, visibilityTensor } from '../../attention/reference.js';
import type { AttentionSizes } from '../../attention/validate.js';
import type { Visibility } from '../../attention/visibility.js';
import type { Dropout } from '../../attention/dropout.js';

/**
 * Exact softmax attention in tfjs ops (matMul, mask, softmax, matMul) under the visibility
 * `vis` (see `VisibilityOptions`), with attention dropout when `dropout` is given (see
 * `DropoutOptions`), differentiable: the ground truth of FlashStyleTiledAttention. Its
 * memory is O(B·H·Tq·Tk).
 */
export function flashAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, vis: Visibility, scale: number,
  dropout: Dropout | null = null,
): tf.Tensor4D {
  return tf.tidy(() => maskedSoftmaxAttention(q, k, v, s, scale, visibilityTensor(s, vis), dropout));
}
