// src/positions.ts's advancedPositions: every row's position one on, through tfjs's add or, on
// webgpu, the kernel of its own (kernels/positions/advance.wgsl).
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { advancedPositions } from '../src/positions.js';
import { REFERENCE_BACKENDS, describeOn, expectNoLeaks, launchedPipelines } from './helpers.js';

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'advancedPositions', () => {
  const ways = backend === 'webgpu' ? [false, true] : [false];
  for (const onKernel of ways) {
    it(`adds one to every row${onKernel ? ' in one launch of its kernel' : ''}, across workgroups, and takes no rows`, async () => {
      // 130 rows: the kernel's workgroups of 64 and a partial third. The last is the largest int32
      // position but one for the kernel; tfjs-webgpu's add rounds int32 through float32, exact to 2²⁴
      const largest = onKernel || backend !== 'webgpu' ? 2 ** 31 - 2 : 2 ** 24 - 1;
      const given = Array.from({ length: 130 }, (_, b) => (b === 129 ? largest : b * 7919));
      const positions = tf.tensor1d(given, 'int32');
      const empty = tf.tensor1d([], 'int32');
      await expectNoLeaks(async () => {
        let next: tf.Tensor1D | undefined;
        const ran = await launchedPipelines(async () => {
          next = advancedPositions(positions, onKernel);
          await next.data();
        });
        if (onKernel) expect(ran).toEqual(['AdvancePositions']);
        expect(next!.dtype).toBe('int32');
        expect(Array.from(await next!.data())).toEqual(given.map((p) => p + 1));
        const none = advancedPositions(empty, onKernel);
        expect(none.shape).toEqual([0]);
        tf.dispose([next!, none]);
      });
      tf.dispose([positions, empty]);
    });
  }
});
