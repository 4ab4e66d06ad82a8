import onlineSoftmax from '../../../kernels/common/online-softmax.wgsl';
import weights from '../../../kernels/flash-style-tiled-attention/weights.wgsl';
import { registerAttentionFamily } from '../../attention/skeleton.js';

/**
 * tfjs kernel names. The forward has two outputs, o and the per-row log-sum-exp, and a third
 * when it is given int inputs (`visibilityInputs`): their packed buffer, which its gradient reads.
 */
export const FLASH_ATTENTION = 'MixersFlashAttention';
export const FLASH_ATTENTION_DQ = 'MixersFlashAttentionGradQ';
/** Two outputs: dk and dv. */
export const FLASH_ATTENTION_DKV = 'MixersFlashAttentionGradKV';

registerAttentionFamily({
  forward: FLASH_ATTENTION, dq: FLASH_ATTENTION_DQ, dkv: FLASH_ATTENTION_DKV, label: 'FlashAttention',
  rowHooks: onlineSoftmax, weights,
});
