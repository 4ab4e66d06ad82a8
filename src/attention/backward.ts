import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import kvTileHelpers from '../../kernels/common/kv-tile.wgsl';
import queryTileHelpers from '../../kernels/common/query-tile.wgsl';
import backwardDqBody from '../../kernels/common/attention-backward-dq.wgsl';
import backwardDkvBody from '../../kernels/common/attention-backward-dkv.wgsl';
import { namedInputs, registerGradientOnce, registerKernelOnce, runKernel } from '../webgpu/runtime.js';
import { BR, attentionKernel, attentionParams, sizesOf } from './kernel-source.js';

/** A tiled attention mixer's part in the shared backward: its kernel names and its pair weights. */
export interface AttentionBackward {
  /** The forward's tfjs kernel: inputs q, k, v; outputs o and a per-row statistic `[B, H, Tq]`. */
  forward: string;
  /** The tfjs kernel names of dQ, and of dK with dV (two outputs). */
  dq: string;
  dkv: string;
  /** Pipeline label prefix, e.g. `'FlashAttention'`. */
  label: string;
  /** The mixer's `weights.wgsl`: `rowFactor` and `pairGrads` from the forward's statistic. */
  weights: string;
}

/** The attrs the backward reads; a mixer's attrs may hold more. */
interface Attrs { scale: number; causal: boolean }

/** Launches one of the shared backward kernels on the gradient's named inputs. */
function runBackward(
  backend: WebGPUBackend, name: string, parts: string[], inputs: tf.NamedTensorInfoMap, attrs: Attrs, dkv: boolean,
): tf.TensorInfo[] {
  const g = namedInputs(inputs, 'q', 'k', 'v', 'dO', 'saved', 'delta');
  const s = sizesOf(g.q, g.k);
  return runKernel(backend, attentionKernel(name, parts, s.K), {
    inputs: [g.q, g.k, g.v, g.dO, g.saved, g.delta],
    outputs: dkv ? [g.k.shape, g.k.shape] : [g.q.shape],
    params: attentionParams(s, attrs.scale, attrs.causal),
    // dQ: a workgroup per tile of query rows and head; dK/dV: per tile of key rows and kv head
    workgroups: dkv ? [Math.ceil(s.Tk / BR), s.Hkv, s.B] : [Math.ceil(s.Tq / BR), s.H, s.B],
  });
}

/**
 * Registers, for the webgpu backend, a tiled attention mixer's dQ and dK/dV kernels (the shared
 * `kernels/common/attention-backward-*.wgsl` with the mixer's weights) and its forward's
 * gradient: delta = rowsum(dO∘o) in tfjs ops, then the two kernels.
 */
export function registerAttentionBackward(m: AttentionBackward): void {
  registerKernelOnce({
    kernelName: m.dq,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => runBackward(backend as WebGPUBackend, `${m.label}BackwardDq`,
      [kvTileHelpers, m.weights, backwardDqBody], inputs, attrs as unknown as Attrs, false)[0]!,
  });
  registerKernelOnce({
    kernelName: m.dkv,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => runBackward(backend as WebGPUBackend, `${m.label}BackwardDkv`,
      [queryTileHelpers, m.weights, backwardDkvBody], inputs, attrs as unknown as Attrs, true),
  });
  registerGradientOnce({
    kernelName: m.forward,
    inputsToSave: ['q', 'k', 'v'],
    outputsToSave: [true, true],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v, o, statistic] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const dO = Array.isArray(dy) ? dy[0]! : dy;
      // delta_i = rowsum(dO_i ∘ o_i), [B, H, Tq]: shared by both backward kernels
      const delta = tf.sum(tf.mul(dO, o), -1).transpose([0, 2, 1]);
      const inputs = { q, k, v, dO, saved: statistic, delta };
      const dq = tf.engine().runKernel(m.dq, inputs, attrs) as tf.Tensor;
      const [dk, dv] = tf.engine().runKernel(m.dkv, inputs, attrs) as tf.Tensor[];
      return { q: () => dq, k: () => dk!, v: () => dv! };
    },
  });
}
