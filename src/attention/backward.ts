import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import denseLayout from '../../kernels/common/dense-layout.wgsl';
import { namedInputs, registerGradientOnce, registerKernelOnce, runKernel } from '../webgpu/runtime.js';
import {
  BR, PACKED_INPUT, attentionParams, bindVisibility, hasDropout, sizesOf, skeletonKernel, type AttentionAttrs,
} from './kernel-source.js';

/** Which pass's tiles a layout gives: the forward's and dQ's query tiles, or dK/dV's key tiles. */
export type TilePass = 'forward' | 'transposed';

/** A tiled attention family's part in the shared backward: its kernel names, weights and layout. */
export interface AttentionBackward {
  /**
   * The forward's tfjs kernel: inputs q, k, v and the int inputs of `visibilityInputs`; outputs
   * o, a per-row statistic `[B, H, Tq]` and, when it has int inputs, their packed buffer.
   */
  forward: string;
  /** The tfjs kernel names of dQ, and of dK with dV (two outputs). */
  dq: string;
  dkv: string;
  /** Pipeline label prefix, e.g. `'FlashAttention'`. */
  label: string;
  /** The mixer's `weights.wgsl`: `rowFactor` and `pairGrads` from the forward's statistic. */
  weights: string;
  /**
   * The family's layout hooks and tile plan (BlockSparse); by default dense attention
   * (`common/dense-layout.wgsl`, tiles of BR rows).
   */
  layout?: AttentionLayout;
}

/** How a family's kernels find their tiles: `kernels/common/dense-layout.wgsl` or its own. */
export interface AttentionLayout {
  /** The WGSL layout hooks: loadLayout, tileRows, tileRuns, tileRun, keySeen. */
  wgsl: string;
  /**
   * For one launch: the tile count and, if the hooks read one, the tile plan as an int32
   * tensor the caller frees once the launch is recorded.
   */
  tiles(backend: WebGPUBackend, T: number, attrs: object, pass: TilePass): { numTiles: number; plan?: tf.TensorInfo };
  /** Causal by definition, without a window, whatever the attrs say (BlockSparse). */
  causal?: true;
}

/** Dense attention: tiles of BR rows, no plan. */
export const DENSE_LAYOUT: AttentionLayout = {
  wgsl: denseLayout,
  tiles: (_backend, T) => ({ numTiles: Math.ceil(T / BR) }),
};

/**
 * Launches one pass of the attention skeleton over `q`, `k`, `v` and `more`: binds the call's int
 * inputs (and the layout's plan) as `vis`, then frees what it made for this launch. Returns the
 * outputs, then the forward's packed int inputs when it made them.
 */
export function runSkeleton(
  backend: WebGPUBackend, layout: AttentionLayout, kernelName: string, pass: 'forward' | 'dq' | 'dkv', hooks: string,
  inputs: tf.NamedTensorInfoMap, more: tf.TensorInfo[], outputs: number[][], attrs: AttentionAttrs,
  constants: Record<string, number> = {},
): tf.TensorInfo[] {
  const { q, k, v } = namedInputs(inputs, 'q', 'k', 'v');
  const s = sizesOf(q, k);
  const tilePass: TilePass = pass === 'dkv' ? 'transposed' : 'forward';
  const a = layout.causal ? { ...attrs, causal: true, window: 0 } : attrs;
  const { numTiles, plan } = layout.tiles(backend, pass === 'dkv' ? s.Tk : s.Tq, attrs, tilePass);
  try {
    const bound = bindVisibility(backend, inputs, q, plan);
    try {
      const out = runKernel(backend, skeletonKernel(kernelName, pass, layout.wgsl, hooks, s.K), {
        inputs: [q, k, v, ...more, bound.vis],
        outputs,
        params: attentionParams(s, a, bound.planAt),
        constants: { ...constants, ...bound.constants, ...(hasDropout(attrs) ? { DROPOUT: 1 } : {}) },
        // a workgroup per tile of query rows and head; dK/dV: per tile of key rows and kv head
        workgroups: [numTiles, pass === 'dkv' ? s.Hkv : s.H, s.B],
      });
      return bound.packed ? [...out, bound.packed] : out;
    } finally {
      // bound to the pending command buffer, so tfjs frees it only after that is submitted
      bound.release();
    }
  } finally {
    if (plan) backend.disposeData(plan.dataId);
  }
}

/**
 * Registers, for the webgpu backend, a tiled attention family's dQ and dK/dV kernels (the
 * skeleton's `kernels/common/attention-backward-*.wgsl` with the family's weights and layout)
 * and its forward's gradient: delta = rowsum(dO∘o) in tfjs ops, beside the forward's statistic
 * in one `[B, H, Tq, 2]` buffer, then the two kernels, which read the forward's packed int
 * inputs. The int inputs get no gradient. The forward's attrs reach both kernels, its dropout
 * among them, so they drop the weights the forward dropped; o, and so delta, is the dropped output.
 */
export function registerAttentionBackward(m: AttentionBackward): void {
  const layout = m.layout ?? DENSE_LAYOUT;
  const launch = (pass: 'dq' | 'dkv') => ({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]) => {
    const g = namedInputs(inputs, 'q', 'k', 'dO', 'stats');
    return runSkeleton(backend as WebGPUBackend, layout, `${m.label}Backward${pass === 'dq' ? 'Dq' : 'Dkv'}`, pass, m.weights,
      inputs, [g.dO, g.stats], pass === 'dq' ? [g.q.shape] : [g.k.shape, g.k.shape], attrs as unknown as AttentionAttrs);
  };
  registerKernelOnce({ kernelName: m.dq, backendName: 'webgpu', kernelFunc: (args) => launch('dq')(args)[0]! });
  registerKernelOnce({ kernelName: m.dkv, backendName: 'webgpu', kernelFunc: launch('dkv') });
  registerGradientOnce({
    kernelName: m.forward,
    inputsToSave: ['q', 'k', 'v'],
    outputsToSave: [true, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v, o, statistic, packed] = saved as tf.Tensor[];
      const dO = Array.isArray(dy) ? dy[0]! : dy;
      // delta_i = rowsum(dO_i ∘ o_i), [B, H, Tq], beside the statistic in one buffer: the dK/dV
      // kernel binds 8 storage buffers with it, the most a shader may count on
      const delta = tf.sum(tf.mul(dO, o!), -1).transpose([0, 2, 1]);
      const inputs: tf.NamedTensorMap = { q: q!, k: k!, v: v!, dO, stats: tf.stack([statistic!, delta], -1) };
      if (packed) inputs[PACKED_INPUT] = packed;
      const dq = tf.engine().runKernel(m.dq, inputs, attrs) as tf.Tensor;
      const [dk, dv] = tf.engine().runKernel(m.dkv, inputs, attrs) as tf.Tensor[];
      return { q: () => dq, k: () => dk!, v: () => dv! };
    },
  });
}
