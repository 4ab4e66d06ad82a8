// Every exported op and layer trains on the reference backends (issue 15): each case of
// examples/browser/training.ts (shared with the webgl page that `npm run test:browser` drives)
// takes a few Adam steps on cpu and on wasm, with finite, non-zero gradients, a loss that falls
// by at least half of what its gradients predict (Armijo's condition, derived there), and no
// leaked tensor. The checks themselves are checked first, on gradients made wrong on purpose.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { STEPS, TRAINING_CASES, trainCase, uncovered, type TrainingCase } from '../examples/browser/training.js';
import { REFERENCE_BACKENDS, describeOn, seededUniform } from './helpers.js';

/**
 * y = 2x on x `[4, 8]`, trained towards a fixed target, with the gradient `dx = gradient(dy)`
 * (the true one is 2·dy); `leak` keeps one more tensor at every loss evaluation.
 */
function doubling(name: string, gradient: (dy: tf.Tensor) => tf.Tensor, leak = false): TrainingCase {
  return {
    name,
    covers: { ops: 'causalMean' },
    setup() {
      // tidy frees the initial value; a variable outlives it
      const x = tf.tidy(() => tf.variable(tf.tensor2d(seededUniform(1, 32), [4, 8])));
      const target = tf.tensor2d(seededUniform(2, 32), [4, 8]);
      const double = tf.customGrad((input) => ({ value: tf.mul(input as tf.Tensor, 2), gradFunc: (dy) => gradient(dy as tf.Tensor) }));
      return {
        weights: [{ name: 'x', variable: x }],
        loss: () => tf.tidy(() => {
          if (leak) tf.keep(tf.scalar(0));
          return tf.mean(tf.square(tf.sub(double(x), target))) as tf.Scalar;
        }),
        zeroGradient: new Map(),
        dispose: () => tf.dispose([x, target]),
      };
    },
  };
}

describeOn('cpu', 'the training checks', () => {
  it('pass the true gradient', async () => {
    expect((await trainCase(doubling('2·dy', (dy) => tf.mul(dy, 2)))).problems).toEqual([]);
  });

  it('catch a gradient of the wrong sign, one 3× too large, a zero, a NaN, and leaks', async () => {
    // Adam's step −η·g/|g| ignores g's scale, so a 3× gradient predicts 3× the decrease the loss makes
    const failures: Array<[TrainingCase, RegExp]> = [
      [doubling('−2·dy', (dy) => tf.mul(dy, -2)), /^the first step lowered the loss by -/],
      [doubling('6·dy', (dy) => tf.mul(dy, 6)), /less than 0.5 × the .* its gradient predicts/],
      [doubling('0', (dy) => tf.zerosLike(dy)), /^the gradient of x is 0 everywhere$/],
      [doubling('NaN', (dy) => tf.mul(dy, NaN)), /^the gradient of x is not finite$/],
      [doubling('leaks', (dy) => tf.mul(dy, 2), true), /^the tensor count changes from step to step/],
    ];
    for (const [c, message] of failures) {
      const r = await trainCase(c);
      expect(r.problems.some((p) => message.test(p)), `${c.name}: ${r.problems.join('; ')}`).toBe(true);
    }
  });
});

it('every exported op and layer has a training case', () => {
  expect(uncovered()).toEqual([]);
});

for (const backend of REFERENCE_BACKENDS) {
  describeOn(backend, 'every op and layer trains', () => {
    for (const c of TRAINING_CASES) {
      it(c.name, async () => {
        const r = await trainCase(c);
        expect(r.backend).toBe(backend);
        expect(r.problems, `${c.name} on ${backend}: ${JSON.stringify({ losses: r.losses, predicted: r.predicted, gradients: r.gradients })}`)
          .toEqual([]);
        // what the checks passed on: a loss after every step, the last below the first
        expect(r.losses).toHaveLength(STEPS + 1);
        expect(r.losses[STEPS]!).toBeLessThan(r.losses[0]!);
      });
    }
  });
}
