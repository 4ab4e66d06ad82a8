import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import kvTileHelpers from '../../../kernels/common/kv-tile.wgsl';
import forwardBody from '../../../kernels/expressive-attention/forward.wgsl';
import backwardDqBody from '../../../kernels/expressive-attention/backward-dq.wgsl';
import backwardDkvBody from '../../../kernels/expressive-attention/backward-dkv.wgsl';
import { namedInputs, runKernel } from '../../webgpu/runtime.js';
import { BR, attentionKernel, attentionParams, sizesOf } from '../../attention/kernel-source.js';

/**
 * tfjs kernel names. The forward has two outputs: o and the per-row denominator
 * z = ε + Σ_j s_ij² `[B, H, Tq]`, which the backward reads.
 */
export const EXPRESSIVE_ATTENTION = 'MixersExpressiveAttention';
export const EXPRESSIVE_ATTENTION_DQ = 'MixersExpressiveAttentionGradQ';
/** Two outputs: dk and dv. */
export const EXPRESSIVE_ATTENTION_DKV = 'MixersExpressiveAttentionGradKV';

interface Attrs { causal: boolean; scale: number; epsilon: number }

tf.registerKernel({
  kernelName: EXPRESSIVE_ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v } = namedInputs(inputs, 'q', 'k', 'v');
    const s = sizesOf(q, k);
    const a = attrs as unknown as Attrs;
    const kernel = attentionKernel('ExpressiveAttentionForward', [kvTileHelpers, forwardBody], s.K);
    return runKernel(backend as WebGPUBackend, kernel, {
      inputs: [q, k, v],
      outputs: [q.shape, [s.B, s.H, s.Tq]],
      params: attentionParams(s, a.scale, a.causal),
      // ε is a pipeline constant: a layer uses one ε, so it compiles once
      constants: { EPSILON: a.epsilon },
      workgroups: [Math.ceil(s.Tq / BR), s.H, s.B],
    });
  },
});

interface GradInputs { q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo; dO: tf.TensorInfo; z: tf.TensorInfo; delta: tf.TensorInfo }

function gradInputs(inputs: tf.NamedTensorInfoMap): GradInputs {
  return namedInputs(inputs, 'q', 'k', 'v', 'dO', 'z', 'delta');
}

tf.registerKernel({
  kernelName: EXPRESSIVE_ATTENTION_DQ,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const g = gradInputs(inputs);
    const s = sizesOf(g.q, g.k);
    const a = attrs as unknown as Attrs;
    const kernel = attentionKernel('ExpressiveAttentionBackwardDq', [kvTileHelpers, backwardDqBody], s.K);
    return runKernel(backend as WebGPUBackend, kernel, {
      inputs: [g.q, g.k, g.v, g.dO, g.z, g.delta],
      outputs: [g.q.shape],
      params: attentionParams(s, a.scale, a.causal),
      workgroups: [Math.ceil(s.Tq / BR), s.H, s.B],
    })[0]!;
  },
});

tf.registerKernel({
  kernelName: EXPRESSIVE_ATTENTION_DKV,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const g = gradInputs(inputs);
    const s = sizesOf(g.q, g.k);
    const a = attrs as unknown as Attrs;
    const kernel = attentionKernel('ExpressiveAttentionBackwardDkv', [backwardDkvBody], s.K);
    return runKernel(backend as WebGPUBackend, kernel, {
      inputs: [g.q, g.k, g.v, g.dO, g.z, g.delta],
      outputs: [g.k.shape, g.k.shape],
      params: attentionParams(s, a.scale, a.causal),
      workgroups: [Math.ceil(s.Tk / BR), s.Hkv, s.B],
    });
  },
});

tf.registerGradient({
  kernelName: EXPRESSIVE_ATTENTION,
  inputsToSave: ['q', 'k', 'v'],
  outputsToSave: [true, true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, o, z] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const dO = Array.isArray(dy) ? dy[0]! : dy;
    // delta_i = rowsum(dO_i ∘ o_i), [B, H, Tq]: shared by both backward kernels
    const delta = tf.sum(tf.mul(dO, o), -1).transpose([0, 2, 1]);
    const inputs = { q, k, v, dO, z, delta };
    const dq = tf.engine().runKernel(EXPRESSIVE_ATTENTION_DQ, inputs, attrs) as tf.Tensor;
    const [dk, dv] = tf.engine().runKernel(EXPRESSIVE_ATTENTION_DKV, inputs, attrs) as tf.Tensor[];
    return { q: () => dq, k: () => dk!, v: () => dv! };
  },
});
