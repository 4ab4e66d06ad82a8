import * as tf from '@tensorflow/tfjs';
import { chunkedAttention } from '../../attention/reference.js';
import type { AttentionSizes } from '../../attention/validate.js';
import type { Visibility } from '../../attention/visibility.js';
import type { Dropout } from '../../attention/dropout.js';
import { SOFTMAX_ROWS } from '../flash-style-tiled-attention/reference.js';
import { blockActive, type BlockSparseLayout } from './layout.js';

/**
 * Block-sparse attention in tfjs ops: softmax attention by tiles (see `chunkedAttention`) that
 * visits only the tiles holding active blocks, under the layout's token mask (causal, and the
 * blocks active) and-ed with the visibility `vis` (kvLengths, segments, mask; see
 * `VisibilityOptions`), with attention dropout when `dropout` is given (see `DropoutOptions`),
 * differentiable: what `blockSparseAttention` runs off webgpu, and the ground truth of its
 * kernels beside the float64 oracle. Its time grows with the active blocks, not with T².
 */
export function blockSparseAttentionReference(
  q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, s: AttentionSizes, layout: BlockSparseLayout, vis: Visibility, scale: number,
  dropout: Dropout | null = null,
): tf.Tensor4D {
  return chunkedAttention(SOFTMAX_ROWS, q, k, v, s, vis, scale, dropout, {
    blockSize: layout.blockSize, blockActive: (I, J) => blockActive(I, J, layout),
  });
}
