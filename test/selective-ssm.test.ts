import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import { ops, type Implementation } from '../src/index.js';
import { scanCases, scanInputs, scanOracle, scanShapes, scanTensors, scanTerms, type Case, type Name } from './selective-ssm-cases.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, describeScans, expectNoLeaks, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, seededUniform, values } from './helpers.js';

const cases = scanCases(2, [65, 110]);

/** The output, the final state and every gradient of a case's own inputs. */
function run(c: Case, impl: Implementation) {
  const { x, dOut, dState } = scanInputs(c);
  return scanTensors(c, impl, x, dOut, dState);
}

function oracleOf(c: Case) {
  const { x, dOut, dState } = scanInputs(c);
  return scanOracle(c, x, dOut, dState);
}

/**
 * Mamba's own fp32 test tolerances (tests/ops/test_selective_scan.py), the ceiling of the
 * issue: rtol 6e-4, atol 2e-3 on outputs; its multipliers on each gradient; 1e-3 and 2e-3 for
 * the weights' (A, D, deltaBias, z) with a gate.
 */
const MAMBA: Record<Name | 'output' | 'state', [number, number]> = {
  output: [6e-4, 2e-3], state: [6e-4, 2e-3],
  u: [2 * 6e-4, 2 * 2e-3], delta: [5 * 6e-4, 10 * 2e-3], A: [1e-3, 5 * 2e-3], Bm: [6e-4, 2e-3], Cm: [6e-4, 2e-3],
  D: [1e-3, 2e-3], z: [1e-3, 2e-3], deltaBias: [1e-3, 2e-3], initialState: [6e-4, 2e-3],
};

function expectAllClose(got: ArrayLike<number>, want: ArrayLike<number>, [rtol, atol]: [number, number], what: string): void {
  let worst = -Infinity;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) - (atol + rtol * Math.abs(want[i]!)));
  expect(worst, `${what}: over Mamba's fp32 tolerance by ${worst}`).toBeLessThanOrEqual(0);
}

for (const backend of REFERENCE_BACKENDS) describeOn(backend, 'selectiveScan', () => {
  it('reference matches the float64 oracle, forward and every gradient, within Mamba\'s fp32 tolerances', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const want = oracleOf(c);
      const got = run(c, 'reference');
      expectAllClose(await values(got.output), want.out, MAMBA.output, 'output');
      expectAllClose(await values(got.state), want.state, MAMBA.state, 'state');
      for (const [n, g] of Object.entries(got.grads)) {
        const key = n as Name;
        expectAllClose(await values(g), want.grads[key]!, MAMBA[key], `d${n}`);
      }
      tf.dispose(got);
    }), { numRuns: 10 });
  });
});

/**
 * The reference's results on the cpu backend: the same float32 ops, read back. tfjs-webgpu
 * launches a workgroup per output of a reduction, which makes the reference's per-step sums
 * about a hundred times slower there on SwiftShader than on the cpu; its float32 error is what
 * the derived tolerance needs, and the cpu's is no larger.
 */
async function onCpu(c: Case) {
  await tf.setBackend('cpu');
  try {
    const r = run(c, 'reference');
    const grads: Partial<Record<Name, Float64Array>> = {};
    for (const [n, g] of Object.entries(r.grads)) grads[n as Name] = await values(g);
    const out = { output: await values(r.output), state: await values(r.state), grads };
    tf.dispose(r);
    return out;
  } finally {
    await tf.setBackend('webgpu');
  }
}

describeOn('webgpu', 'selectiveScan', () => {
  it('kernel matches the oracle at least as well as the reference, forward and every gradient', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const want = oracleOf(c);
      const kernel = run(c, 'webgpu');
      const reference = await onCpu(c);
      for (const [what, k, r, o] of [
        ['output', kernel.output, reference.output, want.out],
        ['state', kernel.state, reference.state, want.state],
      ] as const) {
        expectWithinDerivedTolerance(await values(k), r, o, what, scanTerms(c, what));
        expectAllClose(await values(k), o, MAMBA[what], what);
      }
      for (const n of Object.keys(kernel.grads) as Name[]) {
        const o = want.grads[n]!;
        expectWithinDerivedTolerance(await values(kernel.grads[n]), reference.grads[n]!, o, `d${n}`, scanTerms(c, n));
        expectAllClose(await values(kernel.grads[n]), o, MAMBA[n], `d${n}`);
      }
      tf.dispose(kernel);
    }));
  });

  it('reference runs on webgpu too and matches the oracle', async () => {
    await fc.assert(fc.asyncProperty(cases.filter((c) => c.T <= 41 && c.E <= 6), async (c) => {
      const want = oracleOf(c);
      const got = run(c, 'reference');
      expectAllClose(await values(got.output), want.out, MAMBA.output, 'output');
      for (const [n, g] of Object.entries(got.grads)) expectAllClose(await values(g), want.grads[n as Name]!, MAMBA[n as Name], `d${n}`);
      tf.dispose(got);
    }), { numRuns: 3 });
  });

  it('leaves no tensor behind', async () => {
    const c: Case = { B: 2, T: 40, E: 5, N: 4, D: true, z: true, deltaBias: true, initialState: true, deltaSoftplus: true, seed: 3 };
    await expectNoLeaks(async () => tf.dispose(run(c, 'webgpu')));
  });
});

/** The pieces of a case as tensors (same draws as `inputs`), for the properties below. */
function tensorsOf(c: Case) {
  const { x } = scanInputs(c);
  const shape = scanShapes(c);
  const t = (n: Name) => (x[n] ? tf.tensor(x[n]!, shape[n]) : undefined);
  return {
    u: t('u') as tf.Tensor3D, delta: t('delta') as tf.Tensor3D, A: t('A') as tf.Tensor2D, B: t('Bm') as tf.Tensor3D, C: t('Cm') as tf.Tensor3D,
    options: { D: t('D') as tf.Tensor1D | undefined, z: t('z') as tf.Tensor3D | undefined, deltaBias: t('deltaBias') as tf.Tensor1D | undefined,
      initialState: t('initialState') as tf.Tensor3D | undefined, deltaSoftplus: c.deltaSoftplus },
  };
}

/** Steps [start, start + n) of a [B, T, X] tensor. */
const steps = (x: tf.Tensor3D, start: number, n: number) => x.slice([0, start, 0], [-1, n, -1]);

/** Bound for two float32 evaluations of the same sums in different orders: γ_n of the larger scale. */
function sameSums(a: ArrayLike<number>, b: ArrayLike<number>, n: number): number {
  return 2 * n * EPS32 * Math.max(1, maxAbs(a), maxAbs(b));
}

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeScans(backend, 'selectiveScan properties', () => {
    const impl: Implementation = backend === 'webgpu' ? 'webgpu' : 'reference';

    it('token-by-token selectiveScanStep equals the chunked scan (output and state)', async () => {
      await fc.assert(fc.asyncProperty(cases.filter((c) => c.T <= 70), async (c) => {
        const [whole, stepped] = tf.tidy(() => {
          const { u, delta, A, B, C, options } = tensorsOf(c);
          const full = ops.selectiveScanWithState(u, delta, A, B, C, { ...options, implementation: impl });
          let state = options.initialState ?? tf.zeros([c.B, c.E, c.N]) as tf.Tensor3D;
          const outs: tf.Tensor[] = [];
          const at = (x: tf.Tensor3D, t: number) => x.slice([0, t, 0], [-1, 1, -1]).squeeze([1]) as tf.Tensor2D;
          for (let t = 0; t < c.T; t++) {
            const r = ops.selectiveScanStep(at(u, t), at(delta, t), A, at(B, t), at(C, t), state, {
              D: options.D, z: options.z && at(options.z, t), deltaBias: options.deltaBias, deltaSoftplus: c.deltaSoftplus, implementation: impl,
            });
            outs.push(r.output);
            state = r.state;
          }
          return [[full.output, full.state], [tf.stack(outs, 1), state]];
        });
        for (let i = 0; i < 2; i++) {
          const a = await values(whole[i]!);
          const b = await values(stepped[i]!);
          expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(sameSums(a, b, c.T + c.N));
        }
        tf.dispose([whole, stepped]);
      }), { numRuns: 6 });
    });

    it('two pieces carrying the state equal one run', async () => {
      await fc.assert(fc.asyncProperty(cases.filter((c) => c.T >= 2), fc.double({ min: 0, max: 1, noNaN: true }), async (c, at) => {
        const cut = 1 + Math.floor(at * (c.T - 1));
        const [one, two] = tf.tidy(() => {
          const { u, delta, A, B, C, options } = tensorsOf(c);
          const run1 = ops.selectiveScanWithState(u, delta, A, B, C, { ...options, implementation: impl });
          const piece = (start: number, n: number, initialState: tf.Tensor3D | undefined) =>
            ops.selectiveScanWithState(steps(u, start, n), steps(delta, start, n), A, steps(B, start, n), steps(C, start, n), {
              ...options, z: options.z && steps(options.z, start, n), initialState, implementation: impl,
            });
          const first = piece(0, cut, options.initialState);
          const second = piece(cut, c.T - cut, first.state);
          return [[run1.output, run1.state], [tf.concat([first.output, second.output], 1), second.state]];
        });
        for (let i = 0; i < 2; i++) {
          const a = await values(one[i]!);
          const b = await values(two[i]!);
          expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(sameSums(a, b, c.T + c.N));
        }
        tf.dispose([one, two]);
      }), { numRuns: 8 });
    });

    it('stays finite and exact when exp(Δ·A) underflows (large Δ) and when Δ is tiny', async () => {
      for (const [lo, hi] of [[60, 800], [-80, -60]]) {
        const c: Case = { B: 2, T: 70, E: 5, N: 16, D: true, z: true, deltaBias: false, initialState: true, deltaSoftplus: true, seed: 11 };
        const { x, dOut, dState } = scanInputs(c);
        x.delta = seededUniform(99, c.B * c.T * c.E, lo, hi);
        const shape = scanShapes(c);
        const names = Object.keys(x) as Name[];
        const got = tf.tidy(() => {
          const ts = names.map((n) => tf.tensor(x[n]!, shape[n]));
          const f = (...t: tf.Tensor[]) => {
            const by = Object.fromEntries(names.map((n, i) => [n, t[i]!])) as Record<Name, tf.Tensor>;
            const r = ops.selectiveScanWithState(by.u as tf.Tensor3D, by.delta as tf.Tensor3D, by.A as tf.Tensor2D, by.Bm as tf.Tensor3D,
              by.Cm as tf.Tensor3D, { D: by.D as tf.Tensor1D, z: by.z as tf.Tensor3D, initialState: by.initialState as tf.Tensor3D, implementation: impl });
            return tf.add(tf.sum(tf.mul(r.output, tf.tensor(dOut, r.output.shape))), tf.sum(tf.mul(r.state, tf.tensor(dState, r.state.shape))));
          };
          const { output, state } = ops.selectiveScanWithState(ts[0] as tf.Tensor3D, ts[1] as tf.Tensor3D, ts[2] as tf.Tensor2D,
            ts[3] as tf.Tensor3D, ts[4] as tf.Tensor3D, {
              D: ts[5] as tf.Tensor1D, z: ts[6] as tf.Tensor3D, initialState: ts[7] as tf.Tensor3D, implementation: impl });
          return { output, state, grads: tf.grads(f)(ts) };
        });
        const want = scanOracle({ ...c, deltaSoftplus: true }, x, dOut, dState);
        const wantGrads = want.grads;
        // Δ ≥ 60 and A ≤ −0.05: every decay is below e⁻³ per step, often exactly 0; Δ ≤ e⁻⁶⁰: the state barely moves
        for (const [what, t, o] of [['output', got.output, want.out], ['state', got.state, want.state]] as const) {
          const v = await values(t);
          expect(v.every(Number.isFinite), what).toBe(true);
          expectAllClose(v, o, MAMBA[what], `${what} at delta in [${lo}, ${hi}]`);
        }
        for (let i = 0; i < names.length; i++) {
          const v = await values(got.grads[i]!);
          expect(v.every(Number.isFinite), `d${names[i]}`).toBe(true);
          expectAllClose(v, wantGrads[names[i]!]!, MAMBA[names[i]!], `d${names[i]} at delta in [${lo}, ${hi}]`);
        }
        tf.dispose([got.output, got.state, got.grads]);
      }
    });

    it('leaves no tensor behind, scan, gradients and step', async () => {
      const c: Case = { B: 2, T: 40, E: 5, N: 4, D: true, z: true, deltaBias: true, initialState: true, deltaSoftplus: true, seed: 3 };
      await expectNoLeaks(async () => tf.dispose(run(c, impl)));
      const { u, delta, A, B, C, options } = tensorsOf(c);
      const at = (x: tf.Tensor3D) => x.slice([0, 0, 0], [-1, 1, -1]).squeeze([1]) as tf.Tensor2D;
      const [u0, d0, b0, c0, z0] = [at(u), at(delta), at(B), at(C), at(options.z!)];
      await expectNoLeaks(async () => {
        const r = ops.selectiveScanStep(u0, d0, A, b0, c0, options.initialState!, { D: options.D, z: z0, implementation: impl });
        tf.dispose([r.output, r.state]);
        tf.dispose(ops.selectiveScan(u, delta, A, B, C, { ...options, implementation: impl }));
      });
      tf.dispose([u, delta, A, B, C, u0, d0, b0, c0, z0, options.D!, options.z!, options.deltaBias!, options.initialState!]);
    });
  });
}

describeOn('cpu', 'selectiveScan errors', () => {
  it('names the argument, the expected and the received shape', () => {
    const [u, A, B] = [tf.zeros([1, 4, 3]), tf.zeros([3, 2]) as tf.Tensor2D, tf.zeros([1, 4, 2])];
    const scan = (over: Record<string, unknown>, options: Record<string, unknown> = {}) => () => {
      const a = { u, delta: u, A, B, C: B, ...over };
      ops.selectiveScan(a.u as tf.Tensor3D, a.delta as tf.Tensor3D, a.A as tf.Tensor2D, a.B as tf.Tensor3D, a.C as tf.Tensor3D, options);
    };
    expect(scan({ u: tf.zeros([4, 3]) })).toThrow(/selectiveScan: argument 'u' must be a float32 tensor of rank 3 \[B, T, E\]; received a float32 tensor of shape \[4, 3\]/);
    expect(scan({ delta: tf.zeros([1, 5, 3]) })).toThrow(/argument 'delta' must have shape \[B, T, E\] = \[1, 4, 3\]; received \[1, 5, 3\]/);
    expect(scan({ A: tf.zeros([4, 2]) })).toThrow(/argument 'A' must have shape \[E, N\] = \[3, 2\]; received \[4, 2\]/);
    expect(scan({ B: tf.zeros([1, 4, 3]) })).toThrow(/argument 'B' must have shape \[B, T, N\] = \[1, 4, 2\]; received \[1, 4, 3\]/);
    expect(scan({ C: tf.zeros([1, 3, 2]) })).toThrow(/argument 'C' must have shape \[B, T, N\] = \[1, 4, 2\]/);
    expect(scan({}, { D: tf.zeros([2]) })).toThrow(/argument 'D' must have shape \[E\] = \[3\]; received \[2\]/);
    expect(scan({}, { z: tf.zeros([1, 4, 2]) })).toThrow(/argument 'z' must have shape \[B, T, E\]/);
    expect(scan({}, { initialState: tf.zeros([1, 2, 3]) })).toThrow(/argument 'initialState' must have shape \[B, E, N\] = \[1, 3, 2\]/);
    expect(scan({ u: tf.zeros([1, 4, 3], 'int32') })).toThrow(/argument 'u' .* received an int32 tensor of shape \[1, 4, 3\]/);
    expect(scan({}, { deltaSoftplus: 1 })).toThrow(/option 'deltaSoftplus' must be a boolean; received 1/);
    expect(scan({}, { chunk: 8 })).toThrow(/unknown option 'chunk'/);
    expect(scan({}, { implementation: 'cuda' })).toThrow(/option 'implementation' must be one of/);
    expect(() => ops.selectiveScanStep(tf.zeros([1, 3]) as tf.Tensor2D, tf.zeros([1, 3]) as tf.Tensor2D, A, tf.zeros([1, 2]) as tf.Tensor2D,
      tf.zeros([1, 2]) as tf.Tensor2D, tf.zeros([1, 3, 3]) as tf.Tensor3D)).toThrow(/selectiveScanStep: argument 'state' must have shape \[B, E, N\] = \[1, 3, 2\]/);
  });
});
