import type * as tf from '@tensorflow/tfjs';
import { maskedSoftmaxAttention, visibility } from '../../attention/reference.js';
import type { AttentionSizes } from '../../attention/validate.js';
import { tokenVisible, type BlockSparseLayout } from './layout.js';

/**
 * Block-sparse attention in tfjs ops: dense softmax attention under the layout's token mask
 * (causal, and the blocks active), differentiable by tfjs; the ground truth of BlockSparse.
 * Its time and memory are O(B·H·T²), whatever the layout.
 */
export function blockSparseAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, layout: BlockSparseLayout, scale: number,
): tf.Tensor4D {
  return maskedSoftmaxAttention(q, k, v, s, scale, visibility(s, true, (i, j) => tokenVisible(i, j, layout)));
}
