import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
// the op's own module rather than the barrel: this file tests one op, whatever else is being built
import { addLayerNorm, layerNorm, rmsNorm, rmsNormSwishGate } from '../src/layer-norm/op.js';
import { POISON_OUTPUTS_FLAG } from '../src/webgpu/runtime.js';
import { layerNormOracle, rmsNormSwishGateOracle } from './oracle/layer-norm.js';
import {
  REFERENCE_BACKENDS, describeOn, describeOnSubgroups, expectNoLeaks, expectWithinDerivedTolerance, launchedPipelines, seededUniform,
} from './helpers.js';

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

/**
 * The kernels write every element of y, dx, dgamma and dbeta (outputs start as NaN), the gradient
 * in two launches: dgamma and dbeta are one pass down the rows.
 */
async function expectEveryElementWritten(): Promise<void> {
  const poisoned = tf.env().getBool(POISON_OUTPUTS_FLAG);
  tf.env().set(POISON_OUTPUTS_FLAG, true);
  try {
    const { xs, gs, bs, dys } = inputs(37, 12, 1, 9);
    const [x, gamma, beta, dy] = [tf.tensor2d(xs, [37, 12]), tf.tensor1d(gs), tf.tensor1d(bs), tf.tensor2d(dys, [37, 12])];
    const f = (x1: tf.Tensor, g1: tf.Tensor, b1: tf.Tensor) => layerNorm(x1, g1 as tf.Tensor1D, b1 as tf.Tensor1D);
    let out: tf.Tensor[] = [];
    const launched = await launchedPipelines(async () => {
      out = [f(x, gamma, beta), ...tf.grads(f)([x, gamma, beta], dy)];
      await Promise.all(out.map((t) => t.data()));
    });
    // y, then the taped forward's and its gradient's launches (the subgroup kernels' names say so)
    expect(launched.filter((label) => !label.startsWith('Fill')).map((label) => label.replace('Subgroups', ''))).toEqual(
      ['LayerNormForwardVec4', 'LayerNormForwardVec4', 'LayerNormBackwardGammaVec4', 'LayerNormBackwardRowsVec4']);
    for (const t of out) expect(Array.from(await t.data()).every(Number.isFinite)).toBe(true);
    tf.dispose([x, gamma, beta, dy, ...out]);
  } finally {
    tf.env().set(POISON_OUTPUTS_FLAG, poisoned);
  }
}

/**
 * addLayerNorm against tf.add then layerNorm on the same backend, to the bit: the sum is rounded
 * once either way, and the norm of the same floats is the same code (the one-launch kernel where
 * no gradient is recorded on webgpu, the two ops elsewhere). Under a tape both outputs' gradients
 * are those of the two ops, which the tests above hold to the oracle.
 */
async function expectAddLayerNormComposes(numRuns: number): Promise<void> {
  await fc.assert(fc.asyncProperty(cases, async ({ M, D, shift, seed }) => {
    const { xs, gs, bs, dys } = inputs(M, D, shift, seed);
    const rs = seededUniform(seed + 4, M * D, -2, 2);
    const vs = seededUniform(seed + 5, M * D);
    const [x, r, gamma, beta, dy, v] = [tf.tensor3d(xs, [1, M, D]), tf.tensor3d(rs, [1, M, D]), tf.tensor1d(gs), tf.tensor1d(bs),
      tf.tensor3d(dys, [1, M, D]), tf.tensor3d(vs, [1, M, D])];
    const options = { epsilon: 1e-5 };
    await expectNoLeaks(async () => {
      const [sum, y] = addLayerNorm(x, r, gamma, beta, options);
      const sum2 = tf.add(x, r);
      const y2 = layerNorm(sum2, gamma, beta, options);
      expect(Array.from(await sum.data())).toEqual(Array.from(await sum2.data()));
      expect(Array.from(await y.data())).toEqual(Array.from(await y2.data()));
      // a cotangent on each output: dy on the norm, v on the sum
      const both = (fused: boolean) => tf.grads((x1: tf.Tensor, r1: tf.Tensor, g1: tf.Tensor, b1: tf.Tensor) => {
        const [s1, n1] = fused ? addLayerNorm(x1, r1, g1 as tf.Tensor1D, b1 as tf.Tensor1D, options)
          : ((t: tf.Tensor) => [t, layerNorm(t, g1 as tf.Tensor1D, b1 as tf.Tensor1D, options)])(tf.add(x1, r1));
        return tf.add(tf.sum(tf.mul(s1!, v)), tf.sum(tf.mul(n1!, dy)));
      })([x, r, gamma, beta]);
      const [got, want] = [both(true), both(false)];
      for (let i = 0; i < got.length; i++) expect(Array.from(await got[i]!.data())).toEqual(Array.from(await want[i]!.data()));
      tf.dispose([sum, y, sum2, y2, ...got, ...want]);
    });
    tf.dispose([x, r, gamma, beta, dy, v]);
  }), { numRuns });
}

/**
 * rmsNormSwishGate against rmsNorm times the gate's swish in tfjs ops (gate·sigmoid(gate)) on the
 * same backend, to the bit: the one-launch kernel where no gradient is recorded on webgpu forms
 * the same norm, the sigmoid as tfjs's kernel forms it, and the two products in the same order.
 */
async function expectSwishGateComposes(numRuns: number): Promise<void> {
  await fc.assert(fc.asyncProperty(cases, async ({ M, D, shift, seed }) => {
    const { xs, gs } = inputs(M, D, shift, seed);
    const [x, gamma, gate] = [tf.tensor3d(xs, [1, M, D]), tf.tensor1d(gs), tf.tensor3d(seededUniform(seed + 6, M * D, -8, 8), [1, M, D])];
    const options = { epsilon: 1e-5 };
    await expectNoLeaks(async () => {
      const y = rmsNormSwishGate(x, gamma, gate, options);
      const want = tf.tidy(() => tf.mul(rmsNorm(x, gamma, options), tf.mul(gate, tf.sigmoid(gate))));
      expect(Array.from(await y.data())).toEqual(Array.from(await want.data()));
      tf.dispose([y, want]);
    });
    tf.dispose([x, gamma, gate]);
  }), { numRuns });
}

/**
 * rmsNormSwishGate's value and its gradients in x, gamma and the gate against the float64 oracle,
 * within the derived tolerance of rmsNorm times the swish in tfjs ops (its reference) on the same
 * backend: the floor of each is as for RMSNorm's (D ulps for y, dx and the gate, which are
 * elementwise after the row's sums, M for dgamma).
 */
async function expectSwishGateMatchesOracle(numRuns: number): Promise<void> {
  await fc.assert(fc.asyncProperty(cases, async ({ M, D, shift, seed }) => {
    const { xs, gs, dys } = inputs(M, D, shift, seed);
    const zs = seededUniform(seed + 6, M * D, -8, 8);
    const [x, gamma, gate, dy] = [tf.tensor3d(xs, [1, M, D]), tf.tensor1d(gs), tf.tensor3d(zs, [1, M, D]), tf.tensor3d(dys, [1, M, D])];
    const oracle = rmsNormSwishGateOracle(xs, gs, zs, 1e-5, dys);
    await expectNoLeaks(async () => {
      const run = (implementation: 'auto' | 'reference') => {
        const f = (x1: tf.Tensor, g1: tf.Tensor, z1: tf.Tensor) => rmsNormSwishGate(x1, g1 as tf.Tensor1D, z1, { epsilon: 1e-5, implementation });
        return [f(x, gamma, gate), ...tf.grads(f)([x, gamma, gate], dy)];
      };
      const [mine, reference] = [run('auto'), run('reference')];
      const read = (ts: tf.Tensor[]) => Promise.all(ts.map((t) => t.data()));
      const [got, ref] = [await read(mine), await read(reference)];
      const want = [oracle.y, oracle.dx, oracle.dGamma, oracle.dGate];
      ['y', 'dx', 'dgamma', 'dgate'].forEach((what, i) =>
        expectWithinDerivedTolerance(got[i]!, ref[i]!, want[i]!, `rmsNormSwishGate ${what} [${M}, ${D}] + ${shift}`, what === 'dgamma' ? M : D));
      tf.dispose([...mine, ...reference]);
    });
    tf.dispose([x, gamma, gate, dy]);
  }), { numRuns });
}

/**
 * The tfjs-ops reference (a customGrad, its gradient written out) against tfjs's own autodiff of
 * the textbook formula on the same backend, both against the oracle: the reference within the
 * derived tolerance of autodiff's error. On cpu and wasm the property above compares the
 * reference with itself, so this is where its gradient meets the oracle there.
 */
async function expectReferenceAsAccurateAsAutodiff(numRuns: number, norm: Norm): Promise<void> {
  const centred = norm === 'layerNorm';
  const epsilon = 1e-5;
  // the formula as tfjs ops, differentiated by tfjs
  const textbook = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    if (!centred) return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), epsilon))), g);
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon))), g), b);
  };
  await fc.assert(fc.asyncProperty(cases, async ({ M, D, shift, seed }) => {
    const { xs, gs, bs, dys } = inputs(M, D, shift, seed);
    const [x, gamma, beta, dy] = [tf.tensor2d(xs, [M, D]), tf.tensor1d(gs), tf.tensor1d(bs), tf.tensor2d(dys, [M, D])];
    const oracle = layerNormOracle(xs, gs, centred ? bs : new Float32Array(D), epsilon, dys, centred);
    await expectNoLeaks(async () => {
      const options = { epsilon, implementation: 'reference' as const };
      const mine = (x1: tf.Tensor, g1: tf.Tensor, b1: tf.Tensor) => (centred
        ? layerNorm(x1, g1 as tf.Tensor1D, b1 as tf.Tensor1D, options) : rmsNorm(x1, g1 as tf.Tensor1D, options));
      const run = (f: typeof mine) => tf.tidy(() => [f(x, gamma, beta), ...tf.grads(f)(centred ? [x, gamma, beta] : [x, gamma], dy)]);
      const [got, byAutodiff] = [run(mine), run(textbook)];
      const [a, b] = [await Promise.all(got.map((t) => t.data())), await Promise.all(byAutodiff.map((t) => t.data()))];
      const want = [oracle.y, oracle.dx, oracle.dGamma, oracle.dBeta];
      ['y', 'dx', 'dgamma', 'dbeta'].slice(0, got.length).forEach((what, i) =>
        expectWithinDerivedTolerance(a[i]!, b[i]!, want[i]!, `${norm} reference ${what} [${M}, ${D}] + ${shift}`, i < 2 ? D : M));
      tf.dispose([...got, ...byAutodiff]);
    });
    tf.dispose([x, gamma, beta, dy]);
  }), { numRuns });
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) describeOn(backend, 'layerNorm', () => {
  it('matches the oracle and has its gradients, within the derived tolerance of the reference', async () => {
    await expectMatchesOracle(backend === 'webgpu' ? 40 : 10);
  });

  it('RMSNorm (GatedLinearAttention\'s readout) matches its oracle and has its gradients, within the same tolerance', async () => {
    await expectMatchesOracle(backend === 'webgpu' ? 40 : 10, 'rmsNorm');
  });

  it('the reference\'s written-out gradients are as accurate as tfjs\'s autodiff of the formula, for both norms', async () => {
    await expectReferenceAsAccurateAsAutodiff(20, 'layerNorm');
    await expectReferenceAsAccurateAsAutodiff(20, 'rmsNorm');
  });

  it('addLayerNorm gives [x + residual, layerNorm(x + residual)], to the bit, and both outputs\' gradients', async () => {
    await expectAddLayerNormComposes(backend === 'webgpu' ? 20 : 5);
  });

  it('rmsNormSwishGate gives rmsNorm(x)·gate·σ(gate), to the bit', async () => {
    await expectSwishGateComposes(backend === 'webgpu' ? 20 : 5);
  });

  it('rmsNormSwishGate matches its oracle and has its gradients, within the derived tolerance of the reference', async () => {
    await expectSwishGateMatchesOracle(backend === 'webgpu' ? 40 : 10);
  });

  it('names the op, the argument, what it expected and what it received', () => {
    const x = tf.zeros([2, 3, 8]);
    const ones = tf.ones([8]) as tf.Tensor1D;
    expect(() => addLayerNorm(x, tf.zeros([2, 8]), ones, ones)).toThrow(
      "addLayerNorm: argument 'residual' must be a float32 tensor of the shape of x [2, 3, 8]; received a float32 tensor of shape [2, 8].");
    expect(() => addLayerNorm(x, x, ones, tf.ones([3]) as tf.Tensor1D)).toThrow(
      "addLayerNorm: argument 'beta' must be a float32 tensor [D] = [8], D the last dimension of x [2, 3, 8]; received a float32 tensor of shape [3].");
    expect(() => rmsNormSwishGate(x, ones, tf.zeros([2, 3, 4]))).toThrow(
      "rmsNormSwishGate: argument 'gate' must be a float32 tensor of the shape of x [2, 3, 8]; received a float32 tensor of shape [2, 3, 4].");
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

  it('addLayerNorm is one launch that writes every element of the sum and the norm where no gradient is recorded, two ops under a tape', async () => {
    const poisoned = tf.env().getBool(POISON_OUTPUTS_FLAG);
    tf.env().set(POISON_OUTPUTS_FLAG, true);
    try {
      for (const D of [12, 7]) {
        const { xs, gs, bs } = inputs(37, D, 1, 11);
        const [x, r, gamma, beta] = [tf.tensor2d(xs, [37, D]), tf.tensor2d(xs.map((a) => -0.5 * a), [37, D]), tf.tensor1d(gs), tf.tensor1d(bs)];
        let out: tf.Tensor[] = [];
        const alone = await launchedPipelines(async () => {
          out = addLayerNorm(x, r, gamma, beta);
          await Promise.all(out.map((t) => t.data()));
        });
        expect(alone).toEqual([D % 4 === 0 ? 'AddLayerNormForwardVec4' : 'AddLayerNormForward']);
        for (const t of out) expect(Array.from(await t.data()).every(Number.isFinite)).toBe(true);
        const taped = await launchedPipelines(async () => {
          const g = tf.grad((x1: tf.Tensor) => addLayerNorm(x1, r, gamma, beta)[1])(x);
          await g.data();
          g.dispose();
        });
        expect(taped.some((label) => label.startsWith('AddLayerNorm'))).toBe(false);
        tf.dispose([x, r, gamma, beta, ...out]);
      }
    } finally {
      tf.env().set(POISON_OUTPUTS_FLAG, poisoned);
    }
  });

  it('rmsNormSwishGate is one launch that writes every element, and its gradient three', async () => {
    const poisoned = tf.env().getBool(POISON_OUTPUTS_FLAG);
    tf.env().set(POISON_OUTPUTS_FLAG, true);
    try {
      for (const D of [12, 7]) {
        const { xs, gs } = inputs(37, D, 1, 12);
        const [x, gamma, gate] = [tf.tensor2d(xs, [37, D]), tf.tensor1d(gs), tf.tensor2d(xs.map((a) => 3 * a), [37, D])];
        let y: tf.Tensor | null = null;
        const alone = await launchedPipelines(async () => {
          y = rmsNormSwishGate(x, gamma, gate);
          await y.data();
        });
        expect(alone).toEqual([D % 4 === 0 ? 'RmsNormSwishGateForwardVec4' : 'RmsNormSwishGateForward']);
        expect(Array.from(await y!.data()).every(Number.isFinite)).toBe(true);
        const taped = await launchedPipelines(async () => {
          const grads = tf.grads((x1: tf.Tensor, g1: tf.Tensor, z1: tf.Tensor) => rmsNormSwishGate(x1, g1 as tf.Tensor1D, z1))([x, gamma, gate]);
          for (const g of grads) expect(Array.from(await g.data()).every(Number.isFinite)).toBe(true);
          tf.dispose(grads);
        });
        // the forward, then the gate's and the norm's output gradient, then gamma's and x's
        const lanes = D % 4 === 0 ? 'Vec4' : '';
        expect(taped.filter((label) => !label.startsWith('Fill'))).toEqual([`RmsNormSwishGateForward${lanes}`, `RmsNormSwishGateBackward${lanes}`,
          `LayerNormBackwardGamma${lanes}`, `LayerNormBackwardRows${lanes}`]);
        tf.dispose([x, gamma, gate, y!]);
      }
    } finally {
      tf.env().set(POISON_OUTPUTS_FLAG, poisoned);
    }
  });
});

describeOnSubgroups('layerNorm kernels', (pipelines) => {
  it('with a subgroup per row, match the oracle within the derived tolerance and write every element', async () => {
    await expectMatchesOracle(40);
    await expectMatchesOracle(20, 'rmsNorm');
    await expectEveryElementWritten();
    await expectAddLayerNormComposes(10);
    for (const kernel of ['LayerNormForwardSubgroups', 'LayerNormBackwardRowsSubgroups', 'AddLayerNormForwardSubgroups']) {
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
