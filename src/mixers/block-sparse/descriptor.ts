import type { MixerDescriptor } from '../descriptor.js';
import { attentionCase } from '../cases.js';
import { blockSparseAttention } from './op.js';
import { blockSparse, BlockSparse, type BlockSparseArgs } from './layer.js';
import { DEFAULT_LAYOUT, type BlockSparseLayout } from './layout.js';

/**
 * A transformer block's layout for a context: 8 blocks per context, each token seeing its own
 * and the previous block and the first (sink) block.
 */
function contextLayout(context: number): BlockSparseLayout {
  return { blockSize: Math.max(1, Math.floor(context / 8)), localBlocks: 2, globalBlocks: 1, stride: 0 };
}

/** BlockSparse's {@link MixerDescriptor}. */
export const BLOCK_SPARSE: MixerDescriptor = {
  name: 'blockSparse',
  className: BlockSparse.className,
  guide: 'block-sparse',
  ops: ['blockSparseAttention'],
  layer: (args) => blockSparse(args as BlockSparseArgs),
  blockArgs: ({ numHeads, context }) => ({ numHeads, layout: contextLayout(context) }),
  decode: 'cache',
  segments: true,
  kernels: { tolerance: 1e-4 },
  benchCase: (T, seed) => attentionCase('blockSparseAttention',
    `the default layout (blockSize ${DEFAULT_LAYOUT.blockSize}, localBlocks ${DEFAULT_LAYOUT.localBlocks}, ` +
    `globalBlocks ${DEFAULT_LAYOUT.globalBlocks}, stride ${DEFAULT_LAYOUT.stride})`, T, seed,
    ([q, k, v], implementation) => blockSparseAttention(q!, k!, v!, { implementation })),
};
