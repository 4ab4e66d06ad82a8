import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
// the op's own module rather than the barrel: this file tests one op, whatever else is being built
import { layerNorm, rmsNorm } from '../src/layer-norm/op.js';
import { POISON_OUTPUTS_FLAG } from '../src/webgpu/runtime.js';
import { layerNormOracle } from './oracle/layer-norm.js';
import { REFERENCE_BACKENDS, describeOn, describeOnSubgroups, expectNoLeaks, expectWithinDerivedTolerance, seededUniform } from './helpers.js';

/*
 * Tolerance: ARCHITECTURE.md's rule, the kernel's error against the float64 oracle at most twice
 * the tfjs-ops reference's (on the same backend) plus a floor. Every output is a float32 sum over
 * a row of D (the moments, the gradient's two row means) or down M rows (dgamma, dbeta), each
 * summed in another order than the reference's, so the floor is the γ_n of that sum: D ulps of
 * the output's scale for y and dx, M for dgamma and dbeta.
 */

/** Sizes that reach both lane widths (D a multiple of 4 or not) and partial workgroups. */
const cases = fc.record({
  M: fc.integer({ min: 1, max: 90 }),
  D: fc.oneof(fc.constantFrom(4, 64, 192), fc.integer({ min: 1, max: 40 })),
  shift: fc.constantFrom(0, 3),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

/** x (rows offset by `shift`, so the variance is not taken about 0), gamma, beta and dy. */
function inputs(M: number, D: number, shift: number, seed: number) {
  const xs = seededUniform(seed, M * D).map((v) => v + shift);
  return { xs, gs: seededUniform(seed + 1, D, 0.5, 1.5), bs: seededUniform(seed + 2, D), dys: seededUniform(seed + 3, M * D) };
}

type Norm = 'layerNorm' | 'rmsNorm';

/** y and its gradients against the oracle, within the derived tolerance of the reference. */
async function expectMatchesOracle(numRuns: number, norm: Norm = 'layerNorm'): Promise<void> {
  const centred = norm === 'layerNorm';
  await fc.assert(fc.asyncProperty(cases, async ({ M, D, shift, seed }) => {
    const { xs, gs, bs, dys } = inputs(M, D, shift, seed);
    const [x, gamma, beta, dy] = [tf.tensor3d(xs, [1, M, D]), tf.tensor1d(gs), tf.tensor1d(bs), tf.tensor3d(dys, [1, M, D])];
    const oracle = layerNormOracle(xs, gs, centred ? bs : new Float32Array(D), 1e-5, dys, centred);
    await expectNoLeaks(async () => {
      const run = (implementation: 'auto' | 'reference') => {
        const options = { epsilon: 1e-5, implementation };
        const f = centred
          ? (x1: tf.Tensor, g1: tf.Tensor, b1: tf.Tensor) => layerNorm(x1, g1 as tf.Tensor1D, b1 as tf.Tensor1D, options)
          : (x1: tf.Tensor, g1: tf.Tensor) => rmsNorm(x1, g1 as tf.Tensor1D, options);
        const args = centred ? [x, gamma, beta] : [x, gamma];
        return [f(x, gamma, beta), ...tf.grads(f)(args, dy)];
      };
      const [mine, reference] = [run('auto'), run('reference')];
      const read = (ts: tf.Tensor[]) => Promise.all(ts.map((t) => t.data()));
      const [got, ref] = [await read(mine), await read(reference)];
      const want = [oracle.y, oracle.dx, oracle.dGamma, oracle.dBeta];
      ['y', 'dx', 'dgamma', 'dbeta'].slice(0, got.length).forEach((what, i) =>
        expectWithinDerivedTolerance(got[i]!, ref[i]!, want[i]!, `${norm} ${what} [${M}, ${D}] + ${shift}`, i < 2 ? D : M));
      tf.dispose([...mine, ...reference]);
    });
    tf.dispose([x, gamma, beta, dy]);
  }), { numRuns });
}

/** The kernels write every element of y, dx, dgamma and dbeta (outputs start as NaN). */
async function expectEveryElementWritten(): Promise<void> {
  const poisoned = tf.env().getBool(POISON_OUTPUTS_FLAG);
  tf.env().set(POISON_OUTPUTS_FLAG, true);
  try {
    const { xs, gs, bs, dys } = inputs(37, 12, 1, 9);
    const [x, gamma, beta, dy] = [tf.tensor2d(xs, [37, 12]), tf.tensor1d(gs), tf.tensor1d(bs), tf.tensor2d(dys, [37, 12])];
    const f = (x1: tf.Tensor, g1: tf.Tensor, b1: tf.Tensor) => layerNorm(x1, g1 as tf.Tensor1D, b1 as tf.Tensor1D);
    const out = [f(x, gamma, beta), ...tf.grads(f)([x, gamma, beta], dy)];
    for (const t of out) expect(Array.from(await t.data()).every(Number.isFinite)).toBe(true);
    tf.dispose([x, gamma, beta, dy, ...out]);
  } finally {
    tf.env().set(POISON_OUTPUTS_FLAG, poisoned);
  }
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'layerNorm', () => {
  it('matches the oracle and has its gradients, within the derived tolerance of the reference', async () => {
    await expectMatchesOracle(backend === 'webgpu' ? 40 : 10);
  });

  it('RMSNorm (GatedLinearAttention\'s readout) matches its oracle and has its gradients, within the same tolerance', async () => {
    await expectMatchesOracle(backend === 'webgpu' ? 40 : 10, 'rmsNorm');
  });

  it('names the op, the argument, what it expected and what it received', () => {
    const x = tf.zeros([2, 3, 8]);
    const ones = tf.ones([8]) as tf.Tensor1D;
    expect(() => layerNorm(x, tf.ones([7]) as tf.Tensor1D, ones)).toThrow(
      "layerNorm: argument 'gamma' must be a float32 tensor [D] = [8], D the last dimension of x [2, 3, 8]; received a float32 tensor of shape [7].");
    expect(() => layerNorm(x, ones, ones, { epsilon: 0 })).toThrow("layerNorm: option 'epsilon' must be a positive finite number; received 0 (a number).");
    expect(() => layerNorm(tf.zeros([2, 0]), ones, ones)).toThrow(
      "layerNorm: argument 'x' must be a float32 tensor [..., D] of rank ≥ 1 with D ≥ 1; received a float32 tensor of shape [2, 0].");
  });

  it('gives an empty output for no rows', () => {
    expect(layerNorm(tf.zeros([0, 3, 4]), tf.ones([4]) as tf.Tensor1D, tf.zeros([4]) as tf.Tensor1D).shape).toEqual([0, 3, 4]);
  });
});

describeOn('webgpu', 'layerNorm kernels', () => {
  it('write every element of y, dx, dgamma and dbeta', async () => {
    await expectEveryElementWritten();
  });
});

describeOnSubgroups('layerNorm kernels', (pipelines) => {
  it('with a subgroup per row, match the oracle within the derived tolerance and write every element', async () => {
    await expectMatchesOracle(40);
    await expectMatchesOracle(20, 'rmsNorm');
    await expectEveryElementWritten();
    for (const kernel of ['LayerNormForwardSubgroups', 'LayerNormBackwardRowsSubgroups']) {
      expect(pipelines.some((label) => label.startsWith(kernel))).toBe(true);
    }
  });
});

describe('layerNorm oracle', () => {
  it('normalises a hand-computed row', () => {
    // x = [1, 3]: mean 2, variance 1; ε = 0 gives x̂ = [−1, 1]
    const { y, dBeta } = layerNormOracle([1, 3], [2, 2], [1, 1], 0, [1, 1]);
    expect(Array.from(y)).toEqual([-1, 3]);
    expect(Array.from(dBeta)).toEqual([1, 1]);
  });
});
