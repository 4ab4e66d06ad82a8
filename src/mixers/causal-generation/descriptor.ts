import type { MixerDescriptor } from '../descriptor.js';
import { sequenceCase } from '../cases.js';
import { causalGeneration as op } from './op.js';
import { causalGeneration, CausalGeneration, type CausalGenerationArgs } from './layer.js';

/** CausalGeneration's {@link MixerDescriptor}. */
export const CAUSAL_GENERATION: MixerDescriptor = {
  name: 'causalGeneration',
  className: CausalGeneration.className,
  guide: 'causal-generation',
  ops: ['causalGeneration', 'causalGenerationStep'],
  layer: (args) => causalGeneration(args as CausalGenerationArgs),
  blockArgs: () => ({ reduce: 'min' }),
  decode: 'state',
  segments: false,
  kernels: { tolerance: 1e-4 },
  benchCase: (T, seed) => sequenceCase('causalGeneration', "reduce 'min'", T, seed,
    (x, implementation) => op(x, { reduce: 'min', implementation })),
};
