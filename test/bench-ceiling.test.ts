// bench/ceiling.ts: the compute ceilings bench:profile sets the attention passes against must do
// the multiply-adds they count, reading what they say they read. With small whole inputs every
// product and sum is exact in float32, so each invocation's output is compared exactly with its
// float64 value: passes · Σ over accumulators j of (Σ of the staged vec4s j meets) ⊙ factor j.
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { expect, it } from 'vitest';
import { CEILINGS, ceilingAccumulators, ceilingFlops, ceilingInputs, runCeiling } from '../bench/ceiling.js';
import { describeOn, seededIntegers } from './helpers.js';

describeOn('webgpu', 'bench ceilings', () => {
  for (const c of CEILINGS) {
    it(`${c.name}: every invocation sums the products it counts`, async () => {
      const workgroups = 2;
      const passes = 3;
      const floats = 4 * ceilingInputs(c);
      const data = seededIntegers(11 + c.R * 10 + CEILINGS.indexOf(c), floats);
      const input = tf.tensor1d(data);
      const out = runCeiling(tf.backend() as WebGPUBackend, c, input, workgroups, passes);
      const got = await out.data();
      tf.dispose([input, out]);
      const at = (v: number, e: number) => data[4 * v + e]!;
      for (let g = 0; g < workgroups * 256; g++) {
        // the vec4 of a staged row the invocation reads: its own of eight, or its pair's
        const column = c.reads === 'spread' ? (g % 256) % 8 : c.reads === 'pairs' ? Math.floor((g % 256) / 2) % 8 : 0;
        const row = c.reads === 'spread' || c.reads === 'pairs' ? 8 : 1;
        for (let e = 0; e < 4; e++) {
          // accumulator j meets every row, or (held) rows j, j + 16
          const C = ceilingAccumulators(c);
          let sum = 0;
          for (let j = 0; j < C; j++) {
            let w = 0;
            for (let x = c.held ? j : 0; x < 32; x += c.held ? C : 1) w += c.reads === 'registers' ? at(x % 4, e) : at(x * row + column, e);
            sum += w * at(j, e);
          }
          if (got[4 * g + e] !== passes * sum) {
            expect.fail(`invocation ${g}, component ${e}: ${got[4 * g + e]}, expected ${passes * sum}`);
          }
        }
      }
      // R products a staged row
      expect(ceilingFlops(c, workgroups, passes)).toBe(2 * 4 * c.R * 32 * passes * workgroups * 256);
    });
  }

  it('refuses an input too short for the rows it stages, naming the ceiling', () => {
    const c = CEILINGS.find((k) => k.reads === 'pairs')!;
    const input = tf.zeros([4 * 32]) as tf.Tensor1D;
    expect(() => runCeiling(tf.backend() as WebGPUBackend, c, input, 1, 1)).toThrow(`bench ceiling ${c.name}: input must hold at least 1024 floats; received 128.`);
    input.dispose();
  });
});
