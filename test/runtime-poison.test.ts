import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { expect, it } from 'vitest';
import { POISON_OUTPUTS_FLAG, runKernel, type KernelSource } from '../src/webgpu/runtime.js';
import { describeOn } from './helpers.js';

/** y[i] = x[i] for every i but the last, which it skips: the bug the poison exists to catch. */
const SKIPS_LAST: KernelSource = {
  name: 'SkipsLastForTest',
  code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x + 1u < arrayLength(&x)) { y[gid.x] = x[gid.x]; }
}`,
};

/** y[0] = 1, in place: the rest of y must keep what it held. */
const SETS_FIRST: KernelSource = {
  name: 'SetsFirstForTest',
  code: `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(1) fn main() { y[0] = 1.0; }`,
};

describeOn('webgpu', 'kernel output poisoning (test setup)', () => {
  it('is on in the tests', () => {
    expect(tf.env().getBool(POISON_OUTPUTS_FLAG)).toBe(true);
  });

  it('an element a kernel skips reads back NaN, ordered between the tfjs ops before and after it', async () => {
    const backend = tf.backend() as WebGPUBackend;
    const x = tf.tensor1d([1, 2, 3, 4, 5]);
    const before = tf.add(x, 10);
    const info = runKernel(backend, SKIPS_LAST, { inputs: [before], outputs: [[5]], workgroups: [1, 1, 1] })[0]!;
    const y = tf.engine().makeTensorFromTensorInfo(info);
    const after = tf.mul(y, 2);
    expect(Array.from(await y.data())).toEqual([11, 12, 13, 14, NaN]);
    expect(Array.from(await after.data())).toEqual([22, 24, 26, 28, NaN]);
    tf.dispose([x, before, y, after]);
  });

  it('leaves outputs written in place (updates) unpoisoned', async () => {
    const backend = tf.backend() as WebGPUBackend;
    const y = tf.fill([4], 7);
    runKernel(backend, SETS_FIRST, { inputs: [], outputs: [], updates: [y], workgroups: [1, 1, 1] });
    expect(Array.from(await y.data())).toEqual([1, 7, 7, 7]);
    y.dispose();
  });
});
