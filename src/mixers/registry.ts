import type { MixerDescriptor } from './descriptor.js';
import { CAUSAL_GENERATION } from './causal-generation/descriptor.js';
import { AVERAGE_CONTEXT } from './average-context/descriptor.js';
import { EXPRESSIVE_ATTENTION } from './expressive-attention/descriptor.js';
import { BLOCK_SPARSE } from './block-sparse/descriptor.js';
import { SELECTIVE_SSM } from './selective-ssm/descriptor.js';
import { AAREN } from './aaren/descriptor.js';
import { GATED_LINEAR_ATTENTION } from './gated-linear-attention/descriptor.js';
import { FLASH_STYLE_TILED_ATTENTION } from './flash-style-tiled-attention/descriptor.js';

/**
 * The library's mixers, one {@link MixerDescriptor} each, in the order reports list them. A new
 * mixer adds its folder's descriptor here; everything that runs "every mixer" reads this list.
 *
 * @example
 * ```ts
 * import { mixers } from 'tfjs-mixers';
 *
 * console.log(mixers.map((m) => m.name).join(', '));
 * const m = mixers.find((d) => d.name === 'selectiveSSM')!;
 * const layer = m.layer(m.blockArgs({ numHeads: 4, context: 256 }));
 * ```
 */
export const mixers: readonly MixerDescriptor[] = [
  CAUSAL_GENERATION, AVERAGE_CONTEXT, EXPRESSIVE_ATTENTION, BLOCK_SPARSE, SELECTIVE_SSM, AAREN, GATED_LINEAR_ATTENTION,
  FLASH_STYLE_TILED_ATTENTION,
];

/**
 * The descriptor called `name`; throws, listing the names, if none is. `who` names the caller in
 * that error (a flag or function of the caller's), `mixerNamed` by default.
 *
 * @example
 * ```ts
 * import { mixerNamed } from 'tfjs-mixers';
 *
 * const m = mixerNamed('gatedLinearAttention');
 * console.log(m.guide);          // 'gated-linear-attention'
 * mixerNamed('flash');           // throws: mixerNamed: 'flash' is not a mixer; expected one of causalGeneration, …
 * ```
 */
export function mixerNamed(name: string, who = 'mixerNamed'): MixerDescriptor {
  const m = mixers.find((d) => d.name === name);
  if (!m) throw new Error(`${who}: '${name}' is not a mixer; expected one of ${mixers.map((d) => d.name).join(', ')}.`);
  return m;
}
