import * as tf from '@tensorflow/tfjs';
import type { MixerDescriptor } from '../descriptor.js';
import { CASE_SIZES, attentionCase, normal } from '../cases.js';
import { gatedLinearAttention as op } from './op.js';
import { gatedLinearAttention, GatedLinearAttention, type GatedLinearAttentionArgs } from './layer.js';

/** GatedLinearAttention's {@link MixerDescriptor}. */
export const GATED_LINEAR_ATTENTION: MixerDescriptor = {
  name: 'gatedLinearAttention',
  className: GatedLinearAttention.className,
  guide: 'gated-linear-attention',
  ops: ['gatedLinearAttention', 'gatedLinearAttentionWithState'],
  layer: (args) => gatedLinearAttention(args as GatedLinearAttentionArgs),
  blockArgs: ({ numHeads }) => ({ numHeads }),
  decode: 'state',
  segments: false,
  // the kernels round per step and the reference per chunk: about 600 ε at T = 67 (the bound in
  // test/gated-linear-attention.test.ts) times magnitudes a few times the largest entry
  kernels: { tolerance: 1e-3 },
  benchCase: (T, seed) => {
    const { H, K } = CASE_SIZES;
    // log gates as the layer makes them, logsigmoid(·)/16: decays of about e^(−0.05) a step
    const g = tf.tidy(() => tf.div(tf.neg(tf.softplus(tf.neg(normal([1, T, H, K], seed + 3)))), 16));
    return attentionCase('gatedLinearAttention', 'V = K', T, seed,
      ([q, k, v, gates], implementation) => op(q!, k!, v!, gates!, { implementation }),
      { names: ['g'], about: `, log gates g [1, ${T}, ${H}, ${K}] = logsigmoid(N(0, 1))/16`, inputs: [g] });
  },
};
