import type { MixerDescriptor } from '../descriptor.js';
import { sequenceCase } from '../cases.js';
import { averageContext as op } from './op.js';
import { averageContext, AverageContext, type AverageContextArgs } from './layer.js';

/** AverageContext's {@link MixerDescriptor}. */
export const AVERAGE_CONTEXT: MixerDescriptor = {
  name: 'averageContext',
  className: AverageContext.className,
  guide: 'average-context',
  ops: ['averageContext', 'averageContextPrefill', 'averageContextStep', 'causalMean'],
  layer: (args) => averageContext(args as AverageContextArgs),
  blockArgs: () => ({ combine: 'max' }),
  decode: 'state',
  segments: false,
  kernels: { tolerance: 1e-4 },
  benchCase: (T, seed) => sequenceCase('averageContext', "combine 'max', causal", T, seed,
    (x, implementation) => op(x, { combine: 'max', causal: true, implementation })),
};
