// src/tensors.ts's detached: the same values, off the gradient tape, its own reference to the data.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { detached } from '../src/tensors.js';
import { REFERENCE_BACKENDS, describeOn, expectNoLeaks } from './helpers.js';

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'detached', () => {
  it('holds x\'s values, gives no gradient, and outlives x or dies before it without freeing the other', async () => {
    const x = tf.tensor1d([1, -2, 3]);
    await expectNoLeaks(async () => {
      // d/da (a·a + a·detached(a)) = 2a + detached(a) = 3a, not 4a
      const g = tf.grad((a: tf.Tensor) => tf.sum(tf.add(tf.mul(a, a), tf.mul(a, detached(a)))))(x);
      expect(Array.from(await g.data())).toEqual([3, -6, 9]);
      g.dispose();
      const d = detached(x);
      expect(Array.from(await d.data())).toEqual([1, -2, 3]);
      d.dispose();
      expect(Array.from(await x.data())).toEqual([1, -2, 3]);
    });
    const y = tf.tensor1d([4, 5]);
    const e = detached(y);
    y.dispose();
    expect(Array.from(await e.data())).toEqual([4, 5]);
    e.dispose();
    x.dispose();
  });
});
