import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { describe, expect, it, vi } from 'vitest';
import { ops, registerSubgroupBackend } from '../src/index.js';
import { KEPT_BIND_GROUPS, KEPT_PARAMS, KEPT_TABLES, keptTable } from '../src/webgpu/bind-groups.js';
import type { BackendInternals } from '../src/webgpu/internals.js';
import { grid1d, runKernel, type Param } from '../src/webgpu/runtime.js';
import { describeOn, maxAbsDiff, takeRefusedCommands, values } from './helpers.js';

describe('grid1d', () => {
  it('covers the count and folds past 65535 workgroups per dimension', () => {
    expect(grid1d(1, 256)).toEqual([1, 1, 1]);
    expect(grid1d(256 * 65535, 256)).toEqual([65535, 1, 1]);
    for (const count of [256 * 65535 + 1, 3e8]) {
      const [x, y, z] = grid1d(count, 256);
      expect(x).toBeLessThanOrEqual(65535);
      expect(y).toBeGreaterThan(1);
      expect(z).toBe(1);
      expect(x * y * 256).toBeGreaterThanOrEqual(count);
    }
  });
});

describe('kernel registration', () => {
  it('loading the library a second time registers each kernel and gradient once, without warnings', async () => {
    await import('../src/index.js');
    const warn = vi.spyOn(console, 'warn');
    // a second copy of every module but tfjs's, as when both the ESM and the CJS build are loaded
    vi.resetModules();
    await import('../src/index.js');
    expect(warn.mock.calls).toEqual([]);
    warn.mockRestore();
    expect(tf.getKernel('MixersAverageContext', 'webgpu')).toBeDefined();
    expect(tf.getGradient('MixersFlashAttention')).toBeDefined();
  });
});

describeOn('webgpu', 'kernel runtime', () => {
  it('registerSubgroupBackend refuses once the webgpu backend is initialised, naming itself and the remedy', async () => {
    await expect(registerSubgroupBackend()).rejects.toThrow(
      /registerSubgroupBackend: expected to run before the webgpu backend is initialised, but it is; call it before tf.setBackend\('webgpu'\)/);
    // and leaves the backend as it was
    expect(tf.getBackend()).toBe('webgpu');
    expect((tf.backend() as WebGPUBackend).device.features.has('subgroups')).toBe(false);
  });

  it('kernels appear in tf.profile under their tfjs kernel names', async () => {
    const x = tf.randomNormal([1, 8, 4]) as tf.Tensor3D;
    const info = await tf.profile(() => tf.grad((v: tf.Tensor) => ops.averageContext(v as tf.Tensor3D))(x));
    expect(info.kernelNames).toEqual(expect.arrayContaining(['MixersAverageContext', 'MixersAverageContextGrad']));
    tf.dispose(x);
    info.result && tf.dispose(info.result as tf.Tensor);
  });

  it('tf.time reports GPU time for the kernels', async () => {
    // a few milliseconds of work: a tiny dispatch can finish within one tick of the adapter's
    // timestamp resolution and read 0
    const x = tf.randomNormal([1, 4096, 256]) as tf.Tensor3D;
    const timing = await tf.time(() => ops.causalGeneration(x).dispose());
    expect(timing.kernelMs).toBeGreaterThan(0);
    x.dispose();
  });

  it('output buffers are released with their tensors', async () => {
    const x = tf.randomNormal([2, 100, 16]) as tf.Tensor3D;
    // the first launch uploads x from the CPU: count from after it
    const warm = ops.averageContext(x);
    await warm.data();
    warm.dispose();
    const before = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number };
    for (let i = 0; i < 5; i++) {
      const y = ops.averageContext(x);
      await y.data();
      y.dispose();
    }
    const after = tf.memory() as tf.MemoryInfo & { numBytesInGPU: number };
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytesInGPU).toBe(before.numBytesInGPU);
    x.dispose();
  });

  it('a kernel that fails to compile makes its next launch throw instead of reading zeros', async () => {
    const backend = tf.backend() as WebGPUBackend;
    const x = tf.ones([4]);
    const bad = { name: 'BrokenForTest', code: '@compute @workgroup_size(1) fn main() { let a: f32 = undefinedThing; }' };
    const launch = () => runKernel(backend, bad, { inputs: [x], outputs: [[4]], workgroups: [1, 1, 1] });
    // the read submits the command buffer the invalid dispatch went into, which WebGPU then
    // drops whole: the later tests' dispatches must not join it
    const y = tf.engine().makeTensorFromTensorInfo(launch()[0]!);
    await y.data();
    y.dispose();
    // that first launch's pipeline was refused, and with it its command buffer
    expect((await takeRefusedCommands()).join('\n')).toMatch(/Invalid ComputePipeline "BrokenForTest"/);
    expect(launch).toThrow(/kernel BrokenForTest failed to compile/);
    x.dispose();
  });

  it('a pipeline runs only the code and constants it was compiled for', async () => {
    const backend = tf.backend() as WebGPUBackend;
    const x = tf.tensor1d([1, 2, 3, 4]);
    const kernel = (op: string) => ({
      name: 'ScaleForTest',
      code: `override C: f32;
        @group(0) @binding(0) var<storage, read> x: array<f32>;
        @group(0) @binding(1) var<storage, read_write> y: array<f32>;
        @compute @workgroup_size(4) fn main(@builtin(local_invocation_index) i: u32) { y[i] = x[i] ${op} C; }`,
    });
    const launch = (op: string, C: number) => tf.engine().makeTensorFromTensorInfo(
      runKernel(backend, kernel(op), { inputs: [x], outputs: [[4]], constants: { C }, workgroups: [1, 1, 1] })[0]!);
    // the same code with two constants, then other code under the same name and constant, each
    // from a kernel source built anew: four results, none from another's pipeline
    const ys = [launch('*', 2), launch('*', 3), launch('+', 3), launch('*', 2)];
    expect(await Promise.all(ys.map((y) => y.data()))).toEqual(
      [[2, 4, 6, 8], [3, 6, 9, 12], [4, 5, 6, 7], [2, 4, 6, 8]].map((v) => new Float32Array(v)));
    tf.dispose([x, ...ys]);
  });

  // Params echoed back as bits: a u32, an i32 and two f32s
  const ECHO = {
    name: 'EchoParamsForTest',
    code: `struct Params { a: u32, b: i32, c: f32, d: f32 }
      @group(0) @binding(0) var<storage, read> x: array<f32>;
      @group(0) @binding(1) var<storage, read_write> y: array<u32>;
      @group(0) @binding(2) var<uniform> params: Params;
      @compute @workgroup_size(1) fn main() {
        y[0] = params.a; y[1] = bitcast<u32>(params.b); y[2] = bitcast<u32>(params.c); y[3] = bitcast<u32>(params.d);
      }`,
  };
  const echo = (x: tf.Tensor, params: Param[]) => tf.engine().makeTensorFromTensorInfo(runKernel(tf.backend() as WebGPUBackend, ECHO,
    { inputs: [x], outputs: [{ shape: [4], dtype: 'int32' }], params, workgroups: [1, 1, 1] })[0]!);
  const bitsOf = (ints: Int32Array | Float32Array | Uint32Array) => Array.from(new Uint32Array(ints.buffer, ints.byteOffset, ints.length));

  it('each launch binds its own params, bit for bit, whichever an earlier launch bound', async () => {
    const x = tf.zeros([1]);
    // +0 and −0, and two NaNs, are equal or unordered as numbers and different as bits
    const sets: Array<[number, number, number, number]> = [
      [1, -1, 0, -0], [1, -1, -0, 0], [7, 2 ** 31 - 1, NaN, 1.5], [1, -1, 0, -0], [2 ** 32 - 1, -(2 ** 31), -Infinity, 1e-45],
    ];
    const ys = sets.map(([a, b, c, d]) => echo(x, [{ u32: a }, { i32: b }, { f32: c }, { f32: d }]));
    const got = await Promise.all(ys.map(async (y) => bitsOf((await y.data()) as Int32Array)));
    // the expected bits from typed arrays, not from the code under test
    expect(got).toEqual(sets.map(([a, b, c, d]) => [...bitsOf(new Uint32Array([a])), ...bitsOf(new Int32Array([b])), ...bitsOf(new Float32Array([c, d]))]));
    expect(got[1]![2]).toBe(0x80000000);
    tf.dispose([x, ...ys]);
  });

  it('a launch on the buffers and params of an earlier one makes no new bind group', async () => {
    const device = (tf.backend() as WebGPUBackend).device;
    const x = tf.ones([1]);
    const params: Param[] = [{ u32: 3 }, { i32: 4 }, { f32: 5 }, { f32: 6 }];
    const first = echo(x, params);
    await first.data();
    // read and freed: tfjs's pool hands its buffer to the next output of the same size
    first.dispose();
    const made = vi.spyOn(device, 'createBindGroup');
    // other params on that buffer: a bind group of their own
    const other = echo(x, [...params.slice(0, 3), { f32: 7 }]);
    expect(made).toHaveBeenCalledTimes(1);
    expect(bitsOf((await other.data()) as Int32Array)).toEqual(bitsOf(new Uint32Array([3, 4, 0x40a00000, 0x40e00000])));
    other.dispose();
    // the first params on it again: the first launch's bind group
    const again = echo(x, params);
    expect(made).toHaveBeenCalledTimes(1);
    made.mockRestore();
    expect(bitsOf((await again.data()) as Int32Array)).toEqual(bitsOf(new Uint32Array([3, 4, 0x40a00000, 0x40c00000])));
    tf.dispose([x, again]);
  });

  it('past the kept params and bind groups, every launch still binds its own', async () => {
    const x = tf.zeros([1]);
    // more distinct params than are kept, on more output buffers than bind groups are kept for,
    // each params twice (a hit for the first time round, an evicted entry made again the second)
    const distinct = KEPT_PARAMS + 40;
    const launches = Math.max(2 * distinct, KEPT_BIND_GROUPS + 40);
    const ys = Array.from({ length: launches }, (_, i) => echo(x, [{ u32: i % distinct }, { i32: -i }, { f32: i / 4 }, { f32: 0 }]));
    const got = await Promise.all(ys.map(async (y) => Array.from((await y.data()) as Int32Array).slice(0, 2)));
    expect(got).toEqual(Array.from({ length: launches }, (_, i) => [i % distinct, 0 - i | 0]));
    tf.dispose([x, ...ys]);
  });

  it('keeps an int table per key, made once, disposing the least recently used past KEPT_TABLES', async () => {
    const backend = tf.backend() as WebGPUBackend;
    const made: number[] = [];
    const table = (n: number) => keptTable(backend, `kept-test|${n}`, [2], () => {
      made.push(n);
      return Int32Array.of(n, -n - 1);
    });
    const first = table(0);
    const second = table(1);
    expect(table(0)).toBe(first);
    // KEPT_TABLES − 1 keys more, 0 used before each: 1 is then the least recently used
    for (let n = 2; n <= KEPT_TABLES; n++) {
      table(0);
      table(n);
    }
    expect(made).toEqual(Array.from({ length: KEPT_TABLES + 1 }, (_, n) => n));
    const held = (t: tf.TensorInfo) => (backend as unknown as BackendInternals).tensorMap.has(t.dataId);
    expect([held(first), held(second)]).toEqual([true, false]);
    // read on the GPU, as a launch binds it; 1 is made again
    const COPY = {
      name: 'CopyIntsForTest',
      code: `@group(0) @binding(0) var<storage, read> t: array<i32>;
        @group(0) @binding(1) var<storage, read_write> y: array<i32>;
        @compute @workgroup_size(2) fn main(@builtin(local_invocation_index) i: u32) { y[i] = t[i]; }`,
    };
    const copied = [table(0), table(1)].map((t) => tf.engine().makeTensorFromTensorInfo(
      runKernel(backend, COPY, { inputs: [t], outputs: [{ shape: [2], dtype: 'int32' }], workgroups: [1, 1, 1] })[0]!));
    expect(await Promise.all(copied.map(async (y) => Array.from(await y.data())))).toEqual([[0, -1], [1, -2]]);
    expect(made.at(-1)).toBe(1);
    tf.dispose(copied);
  });

  it('a launch of more than 65535 workgroups (folded into two dimensions) covers every element', async () => {
    // B·T·D = 65537·256 elements: 65537 workgroups of 256
    const x = tf.randomUniform([1, 65537, 256], -1, 1) as tf.Tensor3D;
    const [k, r] = [ops.causalGeneration(x, { reduce: 'max', implementation: 'webgpu' }),
      ops.causalGeneration(x, { reduce: 'max', implementation: 'reference' })];
    expect(maxAbsDiff(await values(k), await values(r))).toBe(0);
    tf.dispose([x, k, r]);
  });
});
