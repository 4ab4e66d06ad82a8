import type { MixerDescriptor } from '../descriptor.js';
import { attentionCase } from '../cases.js';
import { expressiveAttention as op } from './op.js';
import { expressiveAttention, ExpressiveAttention, type ExpressiveAttentionArgs } from './layer.js';

/** ExpressiveAttention's {@link MixerDescriptor}. */
export const EXPRESSIVE_ATTENTION: MixerDescriptor = {
  name: 'expressiveAttention',
  className: ExpressiveAttention.className,
  guide: 'expressive-attention',
  ops: ['expressiveAttention', 'expressiveAttentionRecurrentStep'],
  layer: (args) => expressiveAttention(args as ExpressiveAttentionArgs),
  blockArgs: ({ numHeads }) => ({ numHeads }),
  decode: 'cache',
  segments: true,
  kernels: { tolerance: 1e-4 },
  benchCase: (T, seed) => attentionCase('expressiveAttention', 'causal', T, seed,
    ([q, k, v], implementation) => op(q!, k!, v!, { causal: true, implementation })),
};
