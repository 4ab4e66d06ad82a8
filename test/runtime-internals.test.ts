import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { ops } from '../src/index.js';
import { WEBGPU_BACKEND_VERSION } from '../src/webgpu/internals.js';
import { describeOn, maxAbsDiff, values } from './helpers.js';

// this file must be the first to check the backend's members in its process: nothing runs a kernel before
describeOn('webgpu', 'webgpu backend internals', () => {
  let removed: unknown;
  beforeEach(() => {
    // a tfjs-backend-webgpu without one of the members the runtime drives
    const backend = tf.backend() as unknown as { querySetCount?: unknown };
    removed = backend.querySetCount;
    delete backend.querySetCount;
  });
  afterEach(() => {
    (tf.backend() as unknown as { querySetCount: unknown }).querySetCount = removed;
    vi.restoreAllMocks();
  });

  it("'webgpu' throws naming the op, the member and the version; 'auto' runs the reference with one warning", async () => {
    expect(WEBGPU_BACKEND_VERSION).toBe('4.22.0');
    const x = tf.tensor3d([[[1], [3], [0]]]);
    expect(() => ops.causalGeneration(x, { implementation: 'webgpu' })).toThrow(
      /^causalGeneration: the active 'webgpu' backend has no WebGPUBackend\.querySetCount, a private member of @tensorflow\/tfjs-backend-webgpu 4\.22\.0/,
    );
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const first = ops.causalGeneration(x, { reduce: 'max' });
    const second = ops.causalGeneration(x, { reduce: 'mean' });
    expect(Array.from(await first.data())).toEqual([1, 3, 3]);
    const reference = ops.causalGeneration(x, { reduce: 'mean', implementation: 'reference' });
    expect(maxAbsDiff(await values(second), await values(reference))).toBe(0);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(/querySetCount.*4\.22\.0.*Running the tfjs-ops reference instead\./);
    tf.dispose([x, first, second, reference]);
  });

  it('the kernels run again once the member is back', async () => {
    (tf.backend() as unknown as { querySetCount: unknown }).querySetCount = removed;
    const x = tf.tensor3d([[[1], [3], [0]]]);
    const y = ops.causalGeneration(x, { reduce: 'max', implementation: 'webgpu' });
    expect(Array.from(await y.data())).toEqual([1, 3, 3]);
    tf.dispose([x, y]);
  });
});
