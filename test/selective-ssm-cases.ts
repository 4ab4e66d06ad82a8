// The selective-scan cases shared by test/selective-ssm.test.ts (reference and WGSL kernels) and
// test/selective-ssm-fast.test.ts (the plain-JS path): random shapes and options, their inputs,
// one forward+backward through ops.selectiveScanWithState, the float64 oracle, and the number of
// terms of each float32 sum (the derived tolerance's γ_n floor).
import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { ops, type Implementation } from '../src/index.js';
import type { ScanArgs } from '../src/mixers/selective-ssm/reference.js';
import { selectiveScanGradOracle, selectiveScanOracle, type ScanInputs } from './oracle/selective-ssm.js';
import { seededUniform } from './helpers.js';

export type Case = {
  B: number; T: number; E: number; N: number; D: boolean; z: boolean; deltaBias: boolean; initialState: boolean;
  deltaSoftplus: boolean; seed: number;
};

/**
 * B 1..bMax; T of 1, odd, and `long` (past several 32-step chunks, of the kernels and of the
 * plain-JS backward's checkpoints); E from 1 to past one 32-channel backward workgroup; N from
 * the list; every optional input on or off; softplus on or off (then delta is positive,
 * a Δ of its own).
 */
export function scanCases(bMax: number, long: [number, number]): fc.Arbitrary<Case> {
  return fc.record({
    B: fc.integer({ min: 1, max: bMax }),
    T: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 20 }).map((v) => 2 * v + 1), fc.integer({ min: long[0], max: long[1] })),
    E: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 33, max: 40 })),
    N: fc.constantFrom(1, 4, 16, 64),
    D: fc.boolean(),
    z: fc.boolean(),
    deltaBias: fc.boolean(),
    initialState: fc.boolean(),
    deltaSoftplus: fc.boolean(),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  });
}

const OPTIONAL = ['D', 'z', 'deltaBias', 'initialState'] as const;
export type Name = 'u' | 'delta' | 'A' | 'Bm' | 'Cm' | (typeof OPTIONAL)[number];
export type Inputs = Partial<Record<Name, Float32Array>>;

/** float32 inputs of a case (Δ about 0.05..1.3, A in [−4, −0.05], as Mamba's ranges), and upstream gradients. */
export function scanInputs(c: Case): { x: Inputs; dOut: Float32Array; dState: Float32Array } {
  const { B, T, E, N } = c;
  let seed = c.seed;
  const draw = (n: number, lo = -1, hi = 1) => seededUniform(seed++, n, lo, hi);
  const x: Inputs = {
    u: draw(B * T * E),
    delta: c.deltaSoftplus ? draw(B * T * E, -3, 1) : draw(B * T * E, 0, 1),
    A: draw(E * N, -4, -0.05),
    Bm: draw(B * T * N),
    Cm: draw(B * T * N),
  };
  if (c.D) x.D = draw(E);
  if (c.z) x.z = draw(B * T * E, -2, 2);
  if (c.deltaBias) x.deltaBias = draw(E, -0.5, 0.5);
  if (c.initialState) x.initialState = draw(B * E * N);
  return { x, dOut: draw(B * T * E), dState: draw(B * E * N) };
}

export function scanShapes(c: Case): Record<Name, number[]> {
  const { B, T, E, N } = c;
  return { u: [B, T, E], delta: [B, T, E], A: [E, N], Bm: [B, T, N], Cm: [B, T, N], D: [E], z: [B, T, E], deltaBias: [E], initialState: [B, E, N] };
}

/**
 * How a test runs the scan: the op with an implementation, or one of the paths the op picks
 * between (a function of the op's checked arguments), to test a path on a backend that would not pick it.
 */
export type ScanPath = Implementation | ((args: ScanArgs) => { output: tf.Tensor3D; state: tf.Tensor3D });

/** The output, the final state, and the gradient of Σ dOut·out + Σ dState·state for every input given. */
export function scanTensors(c: Case, impl: ScanPath, x: Inputs, dOut: Float32Array, dState: Float32Array) {
  const names = Object.keys(x) as Name[];
  return tf.tidy(() => {
    const shape = scanShapes(c);
    const tensors = names.map((n) => tf.tensor(x[n]!, shape[n]));
    const f = (...t: tf.Tensor[]) => {
      const by = Object.fromEntries(names.map((n, i) => [n, t[i]!])) as Record<Name, tf.Tensor>;
      if (typeof impl === 'function') {
        return impl({ u: by.u as tf.Tensor3D, delta: by.delta as tf.Tensor3D, A: by.A as tf.Tensor2D, B: by.Bm as tf.Tensor3D,
          C: by.Cm as tf.Tensor3D, D: by.D as tf.Tensor1D, z: by.z as tf.Tensor3D, deltaBias: by.deltaBias as tf.Tensor1D,
          initialState: by.initialState as tf.Tensor3D, deltaSoftplus: c.deltaSoftplus });
      }
      return ops.selectiveScanWithState(
        by.u as tf.Tensor3D, by.delta as tf.Tensor3D, by.A as tf.Tensor2D, by.Bm as tf.Tensor3D, by.Cm as tf.Tensor3D,
        { D: by.D as tf.Tensor1D, z: by.z as tf.Tensor3D, deltaBias: by.deltaBias as tf.Tensor1D,
          initialState: by.initialState as tf.Tensor3D, deltaSoftplus: c.deltaSoftplus, implementation: impl });
    };
    const { output, state } = f(...tensors);
    const dO = tf.tensor(dOut, output.shape);
    const dS = tf.tensor(dState, state.shape);
    const grads = tf.grads((...t: tf.Tensor[]) => {
      const r = f(...t);
      return tf.add(tf.sum(tf.mul(r.output, dO)), tf.sum(tf.mul(r.state, dS)));
    })(tensors);
    return { output, state, grads: Object.fromEntries(names.map((n, i) => [n, grads[i]!])) as Record<Name, tf.Tensor> };
  });
}

/** The float64 oracle's output, state and gradients for a case's inputs. */
export function scanOracle(c: Case, x: Inputs, dOut: Float32Array, dState: Float32Array) {
  const scan: ScanInputs = { ...(x as unknown as ScanInputs), deltaSoftplus: c.deltaSoftplus };
  const dims = { B: c.B, T: c.T, E: c.E, N: c.N };
  return { ...selectiveScanOracle(scan, dims), grads: selectiveScanGradOracle(scan, dims, dOut, dState) };
}

/**
 * Every value of the scan is a float32 sum: the state h[t] sums up to T decayed inputs and the
 * output N states; dA, dD and d deltaBias sum those over B·T steps, dB and dC over E channels.
 * So the derived tolerance's floor is the γ_n bound of n such terms (see
 * expectWithinDerivedTolerance), n per quantity here; it stays far under Mamba's ceiling.
 */
export function scanTerms(c: Case, what: Name | 'output' | 'state'): number {
  const chain = c.T + c.N;
  if (what === 'A' || what === 'D' || what === 'deltaBias') return c.B * c.T + chain;
  if (what === 'Bm' || what === 'Cm') return c.E + chain;
  return chain;
}
