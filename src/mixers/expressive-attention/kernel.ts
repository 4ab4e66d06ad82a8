import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import rowHooks from '../../../kernels/expressive-attention/forward.wgsl';
import weights from '../../../kernels/expressive-attention/weights.wgsl';
import recurrentStepBody from '../../../kernels/expressive-attention/recurrent-step.wgsl';
import recurrentSumsBody from '../../../kernels/expressive-attention/recurrent-sums.wgsl';
import promptReadoutBody from '../../../kernels/expressive-attention/recurrent-prompt-readout.wgsl';
import features from '../../../kernels/expressive-attention/features.wgsl';
import recurrentReadoutBody from '../../../kernels/expressive-attention/recurrent-readout.wgsl';
import grid from '../../../kernels/common/grid.wgsl';
import lanes1 from '../../../kernels/common/lanes-1.wgsl';
import lanes4 from '../../../kernels/common/lanes-4.wgsl';
import { grid1d, lanesFor, namedInputs, registerKernelOnce, runKernel, type KernelSource } from '../../webgpu/runtime.js';
import { registerAttentionFamily } from '../../attention/skeleton.js';

/**
 * tfjs kernel names. The forward has two outputs, o and the per-row denominator
 * z = ε + Σ_j s_ij² `[B, H, Tq]`, which the backward reads, and a third when it is given int
 * inputs (`visibilityInputs`): their packed buffer, which its gradient reads.
 */
export const EXPRESSIVE_ATTENTION = 'MixersExpressiveAttention';
export const EXPRESSIVE_ATTENTION_DQ = 'MixersExpressiveAttentionGradQ';
/** Two outputs: dk and dv. */
export const EXPRESSIVE_ATTENTION_DKV = 'MixersExpressiveAttentionGradKV';
/** One recurrent decode step; three outputs: o `[B, H, K]`, M' `[B, Hkv, P, K]`, z' `[B, Hkv, P]`. */
export const EXPRESSIVE_ATTENTION_RECURRENT_STEP = 'MixersExpressiveAttentionRecurrentStep';
/**
 * A recurrent prefill's states, no gradient: inputs k, v `[B, T, Hkv, K]`, lengths int32 `[B]`,
 * M `[B, Hkv, P, K]` and z `[B, Hkv, P]`, attr `chunk`; outputs Ms `[B·Hkv, E, P, K]` and
 * zs `[B·Hkv, E, P]`, the sums after some of each row's real tokens
 * (`kernels/expressive-attention/recurrent-sums.wgsl`): with `chunk` C ≥ 1, E = ⌈T/C⌉ + 1, entry j
 * after min(j·C, lengths[b]) tokens (the state entering each chunk of C, then after the prompt);
 * with `chunk` 0, E = 1, after all of them.
 */
export const EXPRESSIVE_ATTENTION_RECURRENT_SUMS = 'MixersExpressiveAttentionRecurrentSums';
/**
 * A recurrent prefill's outputs from the states its queries continue, no gradient: inputs q
 * `[B, T, H, K]` (unscaled), M `[B·Hkv, E, P, K]`, z `[B·Hkv, E, P]`, and the chunks' own
 * attention o `[B, T, H, K]` with its denominators `[B, H, T]`; attrs `scale`, `chunk` C
 * (E ≥ ⌈T/C⌉; C a multiple of 4 or at least T: four tokens share each load) and `floor`; output,
 * for query t and its kv head's entry ⌊t/C⌋, o + (N₀ − S₀·o)/max(S₀ + d, floor) with
 * N₀ = φ(scale·q)·M and S₀ = max(φ(scale·q)·z, 0), compensated over the P rows
 * (`kernels/expressive-attention/recurrent-prompt-readout.wgsl`).
 */
export const EXPRESSIVE_ATTENTION_RECURRENT_PROMPT_READOUT = 'MixersExpressiveAttentionRecurrentPromptReadout';

// ε is a pipeline constant: a layer uses one ε, so it compiles once
registerAttentionFamily({
  forward: EXPRESSIVE_ATTENTION, dq: EXPRESSIVE_ATTENTION_DQ, dkv: EXPRESSIVE_ATTENTION_DKV, label: 'ExpressiveAttention',
  rowHooks, weights, constants: (attrs) => ({ EPSILON: attrs.epsilon as number }),
});

/**
 * Invocations per workgroup of the recurrent step's two passes: at least K + 1 (a chunk's
 * columns with scalar lanes, K ≤ 255).
 */
const STEP_WG = 256;
/** Query heads whose readout one invocation of the recurrent step sums, at most (registers). */
const MAX_QUERY_BLOCK = 8;
/**
 * State rows per chunk of the recurrent step: one invocation walks them, and each chunk writes
 * a partial sum per query head, so the partials are about G / STEP_ROWS of the state.
 */
const STEP_ROWS = 64;

/** How pass 1 of the recurrent step splits one kv head's state, for head dimension K and G = H / Hkv. */
function recurrentStepLayout(K: number, G: number) {
  const lanes = lanesFor(K);
  const KV = K / lanes;
  // a chunk has KV + 1 columns (M's channel groups, then z); a workgroup holds `slots` chunks
  const slots = Math.floor(STEP_WG / (KV + 1));
  const P = (K * (K + 1)) / 2;
  const chunks = Math.ceil(P / STEP_ROWS);
  const QG = Math.min(G, MAX_QUERY_BLOCK);
  return { lanes, KV, slots, QG, P, chunks, workgroups: Math.ceil(chunks / slots), gBlocks: Math.ceil(G / QG) };
}

const stepSources = new Map<string, KernelSource>();

/**
 * Pass 1 for one head dimension K and query-head block QG: its register array and layout are
 * WGSL constants, so each (K, QG) is its own module and pipeline (compiled once per layer).
 */
function recurrentStepKernel(K: number, G: number): KernelSource {
  const l = recurrentStepLayout(K, G);
  const key = `${K}|${l.QG}`;
  let kernel = stepSources.get(key);
  if (!kernel) {
    const sizes = [`const K: u32 = ${K}u;`, `const KV: u32 = ${l.KV}u;`, `const QG: u32 = ${l.QG}u;`,
      `const WG: u32 = ${STEP_WG}u;`, `const SLOTS: u32 = ${l.slots}u;`, `const ROWS: u32 = ${STEP_ROWS}u;`].join('\n');
    kernel = {
      name: `ExpressiveAttentionRecurrentStepK${K}G${l.QG}`,
      code: [l.lanes === 4 ? lanes4 : lanes1, sizes, features, recurrentStepBody].join('\n'),
    };
    stepSources.set(key, kernel);
  }
  return kernel;
}

const RECURRENT_READOUT: KernelSource = { name: 'ExpressiveAttentionRecurrentReadout', code: [grid, recurrentReadoutBody].join('\n') };

interface StepAttrs { scale: number; epsilon: number }

registerKernelOnce({
  kernelName: EXPRESSIVE_ATTENTION_RECURRENT_STEP,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const { q, k, v, M, z } = namedInputs(inputs, 'q', 'k', 'v', 'M', 'z');
    const [B, H, K] = q.shape as [number, number, number];
    const Hkv = k.shape[1]!;
    const G = H / Hkv;
    const a = attrs as unknown as StepAttrs;
    const l = recurrentStepLayout(K, G);
    const [nextM, nextZ, partial] = runKernel(gpu, recurrentStepKernel(K, G), {
      inputs: [q, k, v, M, z],
      outputs: [M.shape, z.shape, [B, H, l.chunks, K + l.lanes]],
      params: [{ u32: Hkv }, { u32: G }, { u32: l.P }, { u32: l.chunks }, { u32: l.gBlocks }, { f32: a.scale }],
      workgroups: [l.workgroups, Hkv * l.gBlocks, B],
    }) as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
    const total = B * H * K;
    const [o] = runKernel(gpu, RECURRENT_READOUT, {
      inputs: [partial],
      outputs: [q.shape],
      params: [{ u32: total }, { u32: K }, { u32: l.chunks }, { u32: K + l.lanes }, { f32: a.epsilon }],
      constants: { WG: STEP_WG },
      workgroups: grid1d(total, STEP_WG),
    });
    gpu.disposeData(partial.dataId);
    return [o!, nextM, nextZ];
  },
});

/** Invocations per workgroup of the recurrent prefill's kernels. */
const PREFILL_WG = 64;
const prefillSources = new Map<string, KernelSource>();

/**
 * One of the recurrent prefill's kernels (`body`, after φ's helpers) at head dimension K: its
 * lanes and φ's rows are WGSL constants.
 */
function prefillKernel(label: string, body: string, K: number): KernelSource {
  const key = `${label}|${K}`;
  let kernel = prefillSources.get(key);
  if (!kernel) {
    const lanes = lanesFor(K);
    const sizes = [`const K: u32 = ${K}u;`, `const KV: u32 = ${K / lanes}u;`].join('\n');
    kernel = { name: `ExpressiveAttention${label}K${K}`, code: [grid, lanes === 4 ? lanes4 : lanes1, sizes, features, body].join('\n') };
    prefillSources.set(key, kernel);
  }
  return kernel;
}

registerKernelOnce({
  kernelName: EXPRESSIVE_ATTENTION_RECURRENT_SUMS,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { k, v, lengths, M, z } = namedInputs(inputs, 'k', 'v', 'lengths', 'M', 'z');
    const [B, T, Hkv, K] = k.shape as [number, number, number, number];
    const P = (K * (K + 1)) / 2;
    const total = B * Hkv * P * (K / lanesFor(K) + 1);
    const chunk = (attrs as { chunk: number }).chunk;
    // chunk 0: one entry, after (0 + 1)·C ≥ T tokens
    const [C, entries, first] = chunk > 0 ? [chunk, Math.ceil(T / chunk) + 1, 0] : [Math.max(T, 1), 1, 1];
    return runKernel(backend as WebGPUBackend, prefillKernel('RecurrentSums', recurrentSumsBody, K), {
      inputs: [k, v, lengths, M, z],
      outputs: [[B * Hkv, entries, P, K], [B * Hkv, entries, P]],
      params: [{ u32: total }, { u32: T }, { u32: Hkv }, { u32: P }, { u32: C }, { u32: entries }, { u32: first }],
      constants: { WG: PREFILL_WG },
      workgroups: grid1d(total, PREFILL_WG),
    });
  },
});

registerKernelOnce({
  kernelName: EXPRESSIVE_ATTENTION_RECURRENT_PROMPT_READOUT,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, M, z, o, denominators } = namedInputs(inputs, 'q', 'M', 'z', 'o', 'denominators');
    const [B, T, H, K] = q.shape as [number, number, number, number];
    const [rows, entries] = M.shape as [number, number];
    const { scale, chunk, floor } = attrs as { scale: number; chunk: number; floor: number };
    const total = B * Math.ceil(T / 4) * H * (K / lanesFor(K));
    return runKernel(backend as WebGPUBackend, prefillKernel('RecurrentPromptReadout', promptReadoutBody, K), {
      inputs: [q, M, z, o, denominators],
      outputs: [q.shape],
      params: [{ u32: total }, { u32: H }, { u32: rows / B }, { u32: T }, { u32: (K * (K + 1)) / 2 }, { u32: chunk },
        { u32: entries }, { f32: scale }, { f32: floor }],
      constants: { WG: PREFILL_WG },
      workgroups: grid1d(total, PREFILL_WG),
    });
  },
});
