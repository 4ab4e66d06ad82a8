import type { MixerDescriptor } from '../descriptor.js';
import { attentionCase } from '../cases.js';
import { flashAttention } from './op.js';
import { flashStyleTiledAttention, FlashStyleTiledAttention, type FlashStyleTiledAttentionArgs } from './layer.js';

/** FlashStyleTiledAttention's {@link MixerDescriptor}. */
export const FLASH_STYLE_TILED_ATTENTION: MixerDescriptor = {
  name: 'flashStyleTiledAttention',
  className: FlashStyleTiledAttention.className,
  guide: 'flash-style-tiled-attention',
  ops: ['flashAttention'],
  layer: (args) => flashStyleTiledAttention(args as FlashStyleTiledAttentionArgs),
  blockArgs: ({ numHeads }) => ({ numHeads }),
  decode: 'cache',
  segments: true,
  kernels: { tolerance: 1e-4 },
  benchCase: (T, seed) => attentionCase('flashAttention', 'causal', T, seed,
    ([q, k, v], implementation) => flashAttention(q!, k!, v!, { causal: true, implementation })),
};
