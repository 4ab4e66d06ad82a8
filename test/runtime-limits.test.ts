import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { expect, it } from 'vitest';
import { ops } from '../src/index.js';
import { registerKernelOnce, runKernel, type KernelSource } from '../src/webgpu/runtime.js';
import { softmaxAttentionOracle } from './oracle/attention.js';
import { describeOn, expectWithinDerivedTolerance, launchedPipelines, maxAbsDiff, seededUniform, values } from './helpers.js';

/** out[i] = in[i], one invocation per element, in one workgroup dimension. */
const COPY: KernelSource = {
  name: 'CopyForTest',
  code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x < arrayLength(&x)) { y[gid.x] = x[gid.x]; }
}`,
};

/** The real backend, seen with a device whose limits are `limits` (read before anything else is). */
function withLimits(backend: WebGPUBackend, limits: Partial<GPUSupportedLimits>): WebGPUBackend {
  const device = (backend as unknown as { device: GPUDevice }).device;
  const fake = {
    limits: {
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      ...limits,
    },
  };
  return new Proxy(backend, { get: (target, key) => (key === 'device' ? fake : Reflect.get(target, key)) });
}

/**
 * Memory counts that a launch which throws must leave as they were: tensors, and the backend's
 * data (a kernel function's outputs are backend data before tfjs makes tensors of them; the
 * webgpu backend does not count data freed while its batch is pending).
 */
function counts() {
  return { tensors: tf.memory().numTensors, data: tf.backend().numDataIds() };
}

describeOn('webgpu', 'kernel runtime limits', () => {
  it('flashAttention split-K with H·Tq > 65535 folds its grid and matches the oracle', async () => {
    // H·Tq = 65538 query rows: the first pass's grid used to put them all in dimension y
    const s = { B: 1, Tq: 32769, Tk: 3, H: 2, Hkv: 1, K: 4 };
    const scale = 0.5;
    const qs = seededUniform(1, s.B * s.Tq * s.H * s.K);
    const ks = seededUniform(2, s.B * s.Tk * s.Hkv * s.K);
    const vs = seededUniform(3, s.B * s.Tk * s.Hkv * s.K);
    const q = tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]);
    const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
    const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
    // read before the kernel runs: a launch WebGPU rejects invalidates the whole batch it is in
    const reference = ops.flashAttention(q, k, v, { causal: false, scale, implementation: 'reference' });
    const referenceValues = await values(reference);
    const kernel = ops.flashAttention(q, k, v, { causal: false, scale, split: 'always', implementation: 'webgpu' });
    const queuedAfter = tf.mul(reference, 2);
    const oracle = softmaxAttentionOracle(qs, ks, vs, s, { causal: false, scale }).o;
    expectWithinDerivedTolerance(await values(kernel), referenceValues, oracle, 'o');
    expect(maxAbsDiff(await values(queuedAfter), referenceValues.map((r) => 2 * r))).toBe(0);
    tf.dispose([q, k, v, kernel, reference, queuedAfter]);
  });

  it('a launch past maxComputeWorkgroupsPerDimension throws naming the kernel, limit and shape, and tfjs work around it stays right', async () => {
    // B = 65536 batches: the tiled forward launches a workgroup per batch in dimension z
    const q = tf.ones([65536, 1, 1, 1]) as tf.Tensor4D;
    const x = tf.tensor1d([1, 2, 3]);
    const before = counts();
    const queuedBefore = tf.add(x, 1);
    expect(() => ops.flashAttention(q, q, q, { split: 'never', implementation: 'webgpu' })).toThrow(
      /^flashAttention: kernel FlashAttentionForwardK1R4 cannot run on this device: 65536 workgroups in dimension z exceed maxComputeWorkgroupsPerDimension = 65535\. Its launch: inputs \[65536, 1, 1, 1\]/,
    );
    const queuedAfter = tf.mul(x, 2);
    expect(Array.from(await queuedBefore.data())).toEqual([2, 3, 4]);
    expect(Array.from(await queuedAfter.data())).toEqual([2, 4, 6]);
    tf.dispose([queuedBefore, queuedAfter]);
    expect(counts()).toEqual(before);
    tf.dispose([q, x]);
  });

  it('split-K and its merge fold 65536 heads into flat grids', async () => {
    // the merge once put the heads in dimension y, past the limit: now an invocation per
    // (head, query row, channel group) folds them with the rows. Every output is near 1: a mean
    // of ones (flash), 129/(ε + 129) (expressive, ε its default)
    const q = tf.ones([1, 1, 65536, 1]) as tf.Tensor4D;
    const k = tf.ones([1, 129, 1, 1]) as tf.Tensor4D;
    const before = counts();
    const ran = await launchedPipelines(async () => {
      for (const op of [ops.flashAttention, ops.expressiveAttention]) {
        const o = op(q, k, k, { split: 'always', implementation: 'webgpu' });
        expect((await values(o)).every((x) => Math.abs(x - 1) <= 1e-3)).toBe(true);
        o.dispose();
      }
    });
    // 129 keys make two chunks of 128, so each merge ran
    expect(ran).toEqual(['FlashAttentionSplitK1', 'FlashAttentionMergeK1', 'ExpressiveAttentionSplitK1', 'ExpressiveAttentionMergeK1']);
    expect(counts()).toEqual(before);
    tf.dispose([q, k]);
  });

  it('a later launch past a limit frees what the earlier launches of the op made', async () => {
    // any registered kernel function: the outputs of its launches before the one that throws are freed
    const x = tf.tensor1d([1, 2, 3]);
    registerKernelOnce({
      kernelName: 'MixersTwoLaunchesForTest',
      backendName: 'webgpu',
      kernelFunc: ({ inputs, backend }) => {
        const [first] = runKernel(backend as WebGPUBackend, COPY, { inputs: [inputs.x!], outputs: [[3]], workgroups: [1, 1, 1] });
        return runKernel(backend as WebGPUBackend, COPY, { inputs: [first!], outputs: [[3]], workgroups: [1, 1, 65536] });
      },
    });
    const queuedBefore = tf.add(x, 1);
    const held = counts();
    expect(() => tf.engine().runKernel('MixersTwoLaunchesForTest', { x })).toThrow(/^twoLaunchesForTest: kernel CopyForTest cannot run on this device/);
    expect(counts()).toEqual(held);
    const queuedAfter = tf.mul(x, 2);
    expect(Array.from(await queuedBefore.data())).toEqual([2, 3, 4]);
    expect(Array.from(await queuedAfter.data())).toEqual([2, 4, 6]);
    tf.dispose([x, queuedBefore, queuedAfter]);
  });

  it('a binding past maxStorageBufferBindingSize or maxBufferSize throws before allocating', () => {
    const backend = tf.backend() as WebGPUBackend;
    const x = tf.ones([300]);
    const launch = { inputs: [x], outputs: [[300]], workgroups: [5, 1, 1] as [number, number, number] };
    const before = counts();
    expect(() => runKernel(withLimits(backend, { maxStorageBufferBindingSize: 1024 }), COPY, launch)).toThrow(
      /kernel CopyForTest cannot run on this device: a binding of shape \[300\] takes 1200 bytes, over maxStorageBufferBindingSize = 1024/,
    );
    expect(() => runKernel(withLimits(backend, { maxBufferSize: 1024 }), COPY, launch)).toThrow(
      /kernel CopyForTest cannot run on this device: a buffer of shape \[300\] takes 1200 bytes, over maxBufferSize = 1024/,
    );
    expect(counts()).toEqual(before);
    x.dispose();
  });
});
