import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { FlatAdam } from '../examples/char-lm/flat-adam.js';
import { buildModel, lossOf, withSeededRandom } from '../examples/char-lm/model.js';
import { describeOn, expectNoLeaks, maxAbsDiff } from './helpers.js';

for (const backend of ['cpu', 'webgpu'] as const) {
  describeOn(backend, 'examples/char-lm FlatAdam', () => {
    const config = { mixer: 'flashStyleTiledAttention', vocab: 11, context: 8, width: 8, blocks: 2, heads: 2 } as const;

    /** The model's weights after `steps` steps of `optimizer` on fixed batches, from the same initial weights. */
    async function trained(optimizer: tf.Optimizer, steps: number, between?: (model: tf.LayersModel, s: number) => void): Promise<Float32Array[]> {
      const model = withSeededRandom(3, () => buildModel(config));
      for (let s = 0; s < steps; s++) {
        between?.(model, s);
        const [x, y] = tf.tidy(() => [
          tf.tensor2d(Array.from({ length: 16 }, (_, n) => (n * 7 + s * 3) % 11), [2, 8], 'int32'),
          tf.tensor2d(Array.from({ length: 16 }, (_, n) => (n * 5 + s) % 11), [2, 8], 'int32'),
        ]);
        tf.dispose(optimizer.minimize(() => lossOf(model, x, y, true), true) ?? []);
        tf.dispose([x, y]);
      }
      const weights = await Promise.all(model.getWeights().map((w) => w.data() as Promise<Float32Array>));
      optimizer.dispose();
      model.dispose();
      return weights;
    }

    it('takes the steps of tf.train.adam, bit for bit', async () => {
      // every element goes through the same float32 operations in the same order as tfjs's Adam
      // (the moments, the float32 powers of β in the bias corrections, the update added to the
      // weight), from the same gradients: only where the operands live differs, so the weights
      // are equal, not merely close
      const want = await trained(tf.train.adam(0.01), 4);
      const got = await trained(new FlatAdam(0.01), 4);
      expect(got.length).toBe(want.length);
      for (let n = 0; n < want.length; n++) {
        expect(maxAbsDiff(got[n]!, want[n]!)).toBe(0);
      }
      // and it moved the weights at all
      const initial = withSeededRandom(3, () => buildModel(config));
      const before = await Promise.all(initial.getWeights().map((w) => w.data() as Promise<Float32Array>));
      initial.dispose();
      expect(want.some((w, n) => maxAbsDiff(w, before[n]!) > 1e-4)).toBe(true);
    });

    it('takes up weights written between its steps, as tf.train.adam does', async () => {
      // FlatAdam keeps the weights flat from one step to the next: a weight written in between
      // (setWeights, a variable's assign) must be read anew, not overwritten by its stale copy
      const write = (model: tf.LayersModel, s: number) => {
        if (s !== 2) return;
        tf.tidy(() => model.setWeights(model.getWeights().map((w, n) => n % 3 === 0 ? tf.mul(w, 0.5) : w)));
      };
      const want = await trained(tf.train.adam(0.01), 4, write);
      const got = await trained(new FlatAdam(0.01), 4, write);
      for (let n = 0; n < want.length; n++) {
        expect(maxAbsDiff(got[n]!, want[n]!), `weight ${n}`).toBe(0);
      }
    });

    it('leaks no tensors and refuses gradients of other variables', async () => {
      const model = withSeededRandom(3, () => buildModel(config));
      const x = tf.zeros([1, 8], 'int32') as tf.Tensor2D;
      const before = tf.memory().numTensors;
      const optimizer = new FlatAdam(0.01);
      tf.dispose(optimizer.minimize(() => lossOf(model, x, x, true), true) ?? []);
      // the first step made the moments; later steps make nothing that outlives them
      await expectNoLeaks(() => tf.dispose(optimizer.minimize(() => lossOf(model, x, x, true), true) ?? []));
      const grads = optimizer.computeGradients(() => lossOf(model, x, x, true));
      const first = Object.keys(grads.grads)[0]!;
      expect(() => optimizer.applyGradients({ [first]: grads.grads[first]! }))
        .toThrow(/FlatAdam.applyGradients: the gradients must name the same variables in the same order every step/);
      tf.dispose([grads.value, grads.grads]);
      optimizer.dispose();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(x);
      model.dispose();
    });
  });
}
