import * as tf from '@tensorflow/tfjs';
import { maskedSoftmaxAttention, visibilityTensor } from '../../attention/reference.js';
import type { AttentionSizes } from '../../attention/validate.js';
import type { Visibility } from '../../attention/visibility.js';
import type { Dropout } from '../../attention/dropout.js';
import { tokenVisible, type BlockSparseLayout } from './layout.js';

/**
 * Block-sparse attention in tfjs ops: dense softmax attention under the layout's token mask
 * (causal, and the blocks active) and-ed with the visibility `vis` (kvLengths, segments, mask;
 * see `VisibilityOptions`), with attention dropout when `dropout` is given (see `DropoutOptions`),
 * differentiable by tfjs; the ground truth of BlockSparse. Its time and memory are O(B·H·T²),
 * whatever the layout.
 */
export function blockSparseAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, layout: BlockSparseLayout, vis: Visibility, scale: number,
  dropout: Dropout | null = null,
): tf.Tensor4D {
  const tokens = new Uint8Array(s.Tq * s.Tk);
  for (let i = 0; i < s.Tq; i++) for (let j = 0; j < s.Tk; j++) tokens[i * s.Tk + j] = tokenVisible(i, j, layout) ? 1 : 0;
  return tf.tidy(() => {
    const active = tf.tensor2d(tokens, [s.Tq, s.Tk], 'bool');
    return maskedSoftmaxAttention(q, k, v, s, scale, visibilityTensor(s, vis, active), dropout);
  });
}
