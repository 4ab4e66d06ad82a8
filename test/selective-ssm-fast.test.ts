import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { expect, it } from 'vitest';
import { ops, type Implementation } from '../src/index.js';
import { HOST_SCAN, HOST_SCAN_GRAD } from '../src/mixers/selective-ssm/fast.js';
import { selectiveSSM } from '../src/mixers/selective-ssm/layer.js';
import { selectiveScanChunked } from '../src/mixers/selective-ssm/chunked.js';
import { scanCases, scanInputs, scanOracle, scanShapes, scanTensors, scanTerms, type Case, type Inputs, type Name, type ScanPath } from './selective-ssm-cases.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, expectNoLeaks, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, seededUniform, values } from './helpers.js';

// The fast paths off webgpu: on cpu and wasm, `implementation: 'auto'` runs the plain-JS kernels
// (src/mixers/selective-ssm/fast.ts); on webgl and tfjs-node, the chunked scan in tfjs ops
// (chunked.ts), tested here on cpu and wasm by calling it. Each is checked against the float64
// oracle (within the derived tolerance, with the per-step reference's own error on the same
// backend as the yardstick) and against the reference's non-finite semantics bit for bit; the
// plain-JS kernels also through the layer's forward, prefill and step (the chunked scan's layer
// runs on webgl in `npm run test:browser`).

const cases = scanCases(3, [63, 130]);

/** Output, final state and the gradient of Σ dOut·out + Σ dState·state for every input given, read back. */
async function run(c: Case, impl: ScanPath, x: Inputs, dOut: Float32Array, dState: Float32Array) {
  const got = scanTensors(c, impl, x, dOut, dState);
  const names = Object.keys(got.grads) as Name[];
  const read = await Promise.all([got.output, got.state, ...names.map((n) => got.grads[n])].map((t) => values(t)));
  tf.dispose(got);
  const [output, state, ...grads] = read;
  return { output: output!, state: state!, grads: Object.fromEntries(names.map((n, i) => [n, grads[i]!])) as Record<Name, Float64Array> };
}

/** Compares a fast path with the oracle: at most twice the reference's error plus the γ_n floor. */
async function expectFastMatches(path: ScanPath, c: Case, x: Inputs, dOut: Float32Array, dState: Float32Array): Promise<void> {
  const want = scanOracle(c, x, dOut, dState);
  const fast = await run(c, path, x, dOut, dState);
  const reference = await run(c, 'reference', x, dOut, dState);
  expectWithinDerivedTolerance(fast.output, reference.output, want.out, 'output', scanTerms(c, 'output'));
  expectWithinDerivedTolerance(fast.state, reference.state, want.state, 'state', scanTerms(c, 'state'));
  for (const n of Object.keys(fast.grads) as Name[]) {
    expectWithinDerivedTolerance(fast.grads[n], reference.grads[n], want.grads[n]!, `d${n}`, scanTerms(c, n));
  }
}

const nanMask = (a: Float64Array): boolean[] => Array.from(a, (v) => Number.isNaN(v));

/** Names of the kernels `f` runs. */
async function kernelsRun(f: () => tf.TensorContainer): Promise<string[]> {
  const profile = await tf.profile(() => f() as tf.Tensor);
  tf.dispose(profile.result as tf.TensorContainer);
  return profile.kernels.map((k) => k.name);
}

for (const backend of REFERENCE_BACKENDS) describeOn(backend, 'selectiveScan fast path', () => {
  it('runs the plain-JS kernels forward and backward, not the per-step reference', async () => {
    const c: Case = { B: 1, T: 40, E: 3, N: 2, D: true, z: true, deltaBias: true, initialState: true, deltaSoftplus: true, seed: 1 };
    const { x } = scanInputs(c);
    const names = await kernelsRun(() => {
      const s = scanShapes(c);
      const t = (n: Name) => tf.tensor(x[n]!, s[n]);
      const args = [t('u'), t('delta'), t('A'), t('Bm'), t('Cm')] as const;
      return tf.grads((u: tf.Tensor, delta: tf.Tensor) => ops.selectiveScan(u as tf.Tensor3D, delta as tf.Tensor3D, args[2] as tf.Tensor2D,
        args[3] as tf.Tensor3D, args[4] as tf.Tensor3D).sum())([args[0], args[1]]);
    });
    expect(names).toContain(HOST_SCAN);
    expect(names).toContain(HOST_SCAN_GRAD);
    // the reference's per-step loop would slice every step out with Unpack
    expect(names).not.toContain('Unpack');
  });

  it('the SelectiveSSM layer on the plain-JS kernels: forward, prefill and step equal the reference layer', async () => {
    const [B, T, D] = [2, 37, 8];
    const make = (implementation: Implementation) => selectiveSSM({ stateSize: 4, implementation });
    const fast = make('auto');
    const reference = make('reference');
    tf.dispose([fast.apply(tf.zeros([1, 1, D])) as tf.Tensor, reference.apply(tf.zeros([1, 1, D])) as tf.Tensor]);
    reference.setWeights(fast.getWeights());
    const x = tf.tensor3d(seededUniform(21, B * T * D), [B, T, D]);
    const next = tf.tensor2d(seededUniform(22, B * D), [B, D]);
    const lengths = [T, 20];
    const readAll = async (layer: ReturnType<typeof make>) => {
      const y = layer.apply(x) as tf.Tensor;
      const [prefilled, state] = layer.prefill(x as tf.Tensor3D, undefined, { lengths });
      const [stepped, after] = layer.step(next, state);
      const got = { y: await values(y), ssm: await values(state.ssm), stepped: await values(stepped), after: await values(after.ssm) };
      tf.dispose([y, prefilled, state, stepped, after] as tf.TensorContainer);
      return got;
    };
    const [a, b] = [await readAll(fast), await readAll(reference)];
    // the same float32 block on both paths but the scan: the reference's float32 sums of T + N
    // terms (the fast path's float64 ones round once), then the output projection's E = 2D terms
    const n = T + 4 + 2 * D;
    for (const k of ['y', 'ssm', 'stepped', 'after'] as const) {
      expect(maxAbsDiff(a[k], b[k]), k).toBeLessThanOrEqual(2 * n * EPS32 * Math.max(1, maxAbs(b[k])));
    }
    tf.dispose([x, next]);
    fast.dispose();
    reference.dispose();
  });
});

const PATHS: [string, ScanPath][] = [['plain-JS kernels', 'auto'], ['chunked scan', selectiveScanChunked]];

for (const backend of REFERENCE_BACKENDS) for (const [label, path] of PATHS) describeOn(backend, `selectiveScan fast path: ${label}`, () => {
  it('matches the float64 oracle at least as well as the reference, forward and every gradient', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const { x, dOut, dState } = scanInputs(c);
      await expectFastMatches(path, c, x, dOut, dState);
    }), { numRuns: 12 });
  });

  it('past many chunks (T = 300, a partial last chunk) and when exp(Δ·A) underflows or Δ is tiny', async () => {
    const c: Case = { B: 2, T: 300, E: 5, N: 16, D: true, z: true, deltaBias: true, initialState: true, deltaSoftplus: true, seed: 7 };
    const { x, dOut, dState } = scanInputs(c);
    await expectFastMatches(path, c, x, dOut, dState);
    for (const [lo, hi] of [[60, 800], [-80, -60]]) {
      const y = { ...x, delta: seededUniform(99, c.B * c.T * c.E, lo, hi) };
      delete y.deltaBias;
      await expectFastMatches(path, { ...c, deltaBias: false }, y, dOut, dState);
    }
  });

  it('every chunk boundary: lengths about whole numbers of 8 and 32 steps, a power of two of chunks among them, from an initial state', async () => {
    // the chunked scan cuts 8 steps, the plain-JS backward 32; with 2^k + 1 chunks h0 reaches the
    // last through the last round of doubling across them, and a partial last chunk ends the output
    for (const T of [2, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 127, 128, 129]) {
      const c: Case = { B: 2, T, E: 3, N: 4, D: true, z: false, deltaBias: false, initialState: true, deltaSoftplus: true, seed: T };
      const { x, dOut, dState } = scanInputs(c);
      await expectFastMatches(path, c, x, dOut, dState);
    }
  });

  it('a NaN or ±∞ in any per-token input: the same NaN outputs and state as the reference, and clean outputs and gradients elsewhere', async () => {
    const c: Case = { B: 2, T: 40, E: 3, N: 2, D: true, z: true, deltaBias: true, initialState: true, deltaSoftplus: true, seed: 5 };
    const { x, dState } = scanInputs(c);
    const t = 35;   // in the second 32-step chunk, so an adjoint crosses the chunk holding the bad token
    // the loss sees only the outputs before t (and no final state, which sees t)
    const dOut = seededUniform(6, c.B * c.T * c.E).map((v, i) => (Math.floor(i / c.E) % c.T < t ? v : 0));
    const noState = new Float32Array(dState.length);
    const clean = await run(c, path, x, dOut, noState);
    const shape = scanShapes(c);
    for (const name of ['u', 'delta', 'Bm', 'Cm', 'z'] as const) {
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        const inner = shape[name][2]!;
        const poisoned = x[name]!.slice();
        // one entry of one batch row: a per-channel input reaches only its channel, B and C every channel
        poisoned[(1 * c.T + t) * inner + (inner - 1)] = bad;
        const y = { ...x, [name]: poisoned };
        const fast = await run(c, path, y, dOut, noState);
        const reference = await run(c, 'reference', y, dOut, noState);
        const what = `${name} = ${bad} at step ${t}`;
        expect(nanMask(fast.output), `${what}: NaN outputs`).toEqual(nanMask(reference.output));
        expect(nanMask(fast.state), `${what}: NaN state`).toEqual(nanMask(reference.state));
        expect(fast.output.some(Number.isNaN), `${what}: some output is NaN`).toBe(true);
        for (let i = 0; i < clean.output.length; i++) {
          if (Math.floor(i / c.E) % c.T < t && fast.output[i] !== clean.output[i]) expect.fail(`${what}: output ${i} before step ${t} changed`);
        }
        for (const n of Object.keys(clean.grads) as Name[]) {
          // the bad entry's own gradient is 0 (as the reference's), every other one a clean run's, bit for bit
          const got = fast.grads[n];
          const want = n === name ? clean.grads[n].map((v, i) => (Number.isFinite(poisoned[i]!) ? v : 0)) : clean.grads[n];
          expect(maxAbsDiff(got, want), `${what}: d${n}`).toBe(0);
          // and the reference's, up to two float32 evaluations of the same sums (γ_n of each)
          expect(maxAbsDiff(got, reference.grads[n]), `${what}: d${n} against the reference`)
            .toBeLessThanOrEqual(2 * scanTerms(c, n) * EPS32 * Math.max(1, maxAbs(got)));
        }
      }
    }
  });

  it('a non-finite initial state or A poisons what it reaches, as the reference', async () => {
    const c: Case = { B: 2, T: 9, E: 3, N: 2, D: true, z: false, deltaBias: false, initialState: true, deltaSoftplus: true, seed: 8 };
    const { x, dOut, dState } = scanInputs(c);
    for (const name of ['initialState', 'A'] as const) {
      const y = { ...x, [name]: x[name]!.slice() };
      y[name]![1] = Number.NaN;
      const fast = await run(c, path, y, dOut, dState);
      const reference = await run(c, 'reference', y, dOut, dState);
      expect(nanMask(fast.output), `${name}: NaN outputs`).toEqual(nanMask(reference.output));
      expect(nanMask(fast.state), `${name}: NaN state`).toEqual(nanMask(reference.state));
    }
  });

  it('leaves no tensor behind: forward, gradients, with and without the optional inputs', async () => {
    for (const all of [true, false]) {
      const c: Case = { B: 2, T: 40, E: 5, N: 4, D: all, z: all, deltaBias: all, initialState: all, deltaSoftplus: all, seed: 3 };
      const { x, dOut, dState } = scanInputs(c);
      await expectNoLeaks(() => run(c, path, x, dOut, dState));
    }
  });
});

describeOn('cpu', 'selectiveScan chunked scan', () => {
  it('launches O(log T) kernels forward and backward: each doubling of T adds one round across the chunks each way', async () => {
    const count = async (T: number) => {
      const [u, delta, B, C] = [[1, T, 2], [1, T, 2], [1, T, 2], [1, T, 2]].map((s, i) => tf.tensor3d(seededUniform(i, 2 * T), s as [number, number, number]));
      const A = tf.tensor2d([-1, -2, -0.5, -3], [2, 2]);
      const names = await kernelsRun(() => tf.grads((u: tf.Tensor) => selectiveScanChunked({
        u: u as tf.Tensor3D, delta: delta!, A, B: B!, C: C!, deltaSoftplus: true,
      }).output.sum())([u!]));
      tf.dispose([u!, delta!, B!, C!, A]);
      return names.length;
    };
    const [k512, k1024, k2048] = [await count(512), await count(1024), await count(2048)];
    // T = 512, 1024, 2048 are 64, 128, 256 chunks of 8 steps: 6, 7, 8 rounds of doubling
    // across them, forward and (for the adjoint, reversed) backward. So each doubling of T adds
    // the same launches, two rounds': 7 each (slice, pad, multiply and add for the states; slice,
    // pad, multiply for the decays' product).
    expect(k2048 - k1024).toBe(k1024 - k512);
    expect(k1024 - k512).toBeGreaterThan(0);
    expect(k1024 - k512).toBeLessThanOrEqual(2 * 7);
    // fewer than one launch a step, where the per-step reference takes ~30
    expect(k1024).toBeLessThan(1024);
  });
});
