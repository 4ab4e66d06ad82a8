import type * as tf from '@tensorflow/tfjs';
import type { MixerDescriptor } from '../descriptor.js';
import { CASE_SIZES, normal } from '../cases.js';
import { aaren as op } from './op.js';
import { aaren, Aaren, type AarenLayerArgs } from './layer.js';

/** Aaren's {@link MixerDescriptor}. */
export const AAREN: MixerDescriptor = {
  name: 'aaren',
  className: Aaren.className,
  guide: 'aaren',
  ops: ['aaren', 'aarenWithState'],
  layer: (args) => aaren(args as AarenLayerArgs),
  blockArgs: ({ numHeads }) => ({ numHeads }),
  decode: 'state',
  segments: false,
  // the kernels carry (u, w) step by step where the reference works in chunks of 64: about
  // 6T + K ε at T = 67 (the bound in test/aaren.test.ts) times magnitudes near the largest entry
  kernels: { tolerance: 1e-3 },
  benchCase: (T, seed) => {
    const { H, K } = CASE_SIZES;
    return {
      op: 'aaren',
      about: `learned queries q [${H}, ${K}], k, v [1, ${T}, ${H}, ${K}]`,
      names: ['q', 'k', 'v'],
      inputs: [normal([H, K], seed), normal([1, T, H, K], seed + 1), normal([1, T, H, K], seed + 2)],
      constants: [],
      outputShape: [1, T, H, K],
      run: (implementation, [q, k, v]) => op(q as tf.Tensor2D, k as tf.Tensor4D, v as tf.Tensor4D, { implementation }),
    };
  },
};
