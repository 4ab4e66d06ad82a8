import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { ops, type Implementation } from '../src/index.js';
import { describeOn, expectNoLeaks } from './helpers.js';

const t = (shape: number[]) => tf.randomNormal(shape);
const t2 = (shape: number[]) => t(shape) as tf.Tensor2D;
const t3 = (shape: number[]) => t(shape) as tf.Tensor3D;
const t4 = (shape: number[]) => t(shape) as tf.Tensor4D;

/**
 * Every public op with small valid inputs, `options` passed through as they are: the inputs
 * are created once per call and left to the caller's tidy.
 */
const calls: Record<string, (options: unknown) => unknown> = {
  causalGeneration: (o) => ops.causalGeneration(t3([1, 3, 2]), o as never),
  causalGenerationStep: (o) => ops.causalGenerationStep(t2([1, 2]), t2([1, 2]), o as never),
  averageContext: (o) => ops.averageContext(t3([1, 3, 2]), o as never),
  averageContextStep: (o) => ops.averageContextStep(t2([1, 2]), t2([1, 2]), t2([1, 2]), 1, o as never),
  averageContextPrefill: (o) => ops.averageContextPrefill(t3([1, 3, 2]), t2([1, 2]), t2([1, 2]), tf.zeros([1], 'int32') as tf.Tensor1D, o as never),
  causalMean: (o) => ops.causalMean(t3([1, 3, 2]), o as never),
  flashAttention: (o) => ops.flashAttention(t4([1, 3, 2, 4]), t4([1, 3, 1, 4]), t4([1, 3, 1, 4]), o as never),
  blockSparseAttention: (o) => ops.blockSparseAttention(t4([1, 3, 2, 4]), t4([1, 3, 1, 4]), t4([1, 3, 1, 4]), o as never),
  expressiveAttention: (o) => ops.expressiveAttention(t4([1, 3, 2, 4]), t4([1, 3, 1, 4]), t4([1, 3, 1, 4]), o as never),
  expressiveAttentionRecurrentStep: (o) => ops.expressiveAttentionRecurrentStep(
    t3([1, 2, 2]), t3([1, 1, 2]), t3([1, 1, 2]), t4([1, 1, 3, 2]), t3([1, 1, 3]), o as never),
  selectiveScan: (o) => ops.selectiveScan(t3([1, 3, 2]), t3([1, 3, 2]), t2([2, 2]), t3([1, 3, 2]), t3([1, 3, 2]), o as never),
  selectiveScanWithState: (o) => ops.selectiveScanWithState(t3([1, 3, 2]), t3([1, 3, 2]), t2([2, 2]), t3([1, 3, 2]), t3([1, 3, 2]), o as never),
  selectiveScanStep: (o) => ops.selectiveScanStep(t2([1, 2]), t2([1, 2]), t2([2, 2]), t2([1, 2]), t2([1, 2]), t3([1, 2, 2]), o as never),
  aaren: (o) => ops.aaren(t2([2, 4]), t4([1, 3, 2, 4]), t4([1, 3, 2, 4]), o as never),
  aarenWithState: (o) => ops.aarenWithState(t2([2, 4]), t4([1, 3, 2, 4]), t4([1, 3, 2, 4]), o as never),
  gatedLinearAttention: (o) => ops.gatedLinearAttention(t4([1, 3, 2, 4]), t4([1, 3, 2, 4]), t4([1, 3, 2, 3]),
    tf.neg(tf.abs(t4([1, 3, 2, 4]))) as tf.Tensor4D, o as never),
  gatedLinearAttentionWithState: (o) => ops.gatedLinearAttentionWithState(t4([1, 3, 2, 4]), t4([1, 3, 2, 4]), t4([1, 3, 2, 3]),
    tf.neg(tf.abs(t4([1, 3, 2, 4]))) as tf.Tensor4D, o as never),
  rotary: (o) => ops.rotary(t4([1, 3, 2, 4]), o as never),
  dense: (o) => ops.dense(t3([1, 3, 2]), t2([2, 4]), o as never),
  layerNorm: (o) => ops.layerNorm(t3([1, 3, 2]), t([2]) as tf.Tensor1D, t([2]) as tf.Tensor1D, o as never),
  addLayerNorm: (o) => ops.addLayerNorm(t3([1, 3, 2]), t3([1, 3, 2]), t([2]) as tf.Tensor1D, t([2]) as tf.Tensor1D, o as never),
};

describeOn('cpu', 'op options', () => {
  // the options each op documents; the five ops that ignored unknown names are the ones to fix
  const known: Record<string, string> = {
    causalGeneration: "'reduce', 'implementation'",
    causalGenerationStep: "'reduce', 'implementation', 'position'",
    averageContext: "'combine', 'causal', 'implementation'",
    averageContextStep: "'combine', 'implementation'",
    averageContextPrefill: "'combine', 'implementation'",
    causalMean: "'implementation'",
  };
  for (const [op, names] of Object.entries(known)) {
    it(`${op} rejects an unknown option, listing the valid ones`, () => {
      const misspelt = { [op.startsWith('causalGeneration') ? 'reduse' : 'combien']: 'max' };
      expect(() => tf.tidy(() => { calls[op]!(misspelt); }))
        .toThrow(new RegExp(`^${op}: unknown option '${Object.keys(misspelt)[0]}'; the options are ${names}\\.$`));
      expect(() => tf.tidy(() => { calls[op]!({ implementation: 'reference' }); })).not.toThrow();
    });
  }

  it('every op rejects options that are not an object, naming the argument and what it received', () => {
    expect(Object.keys(calls).sort()).toEqual(Object.keys(ops).sort());
    for (const op of Object.keys(calls)) {
      expect(() => tf.tidy(() => { calls[op]!('max'); }), op)
        .toThrow(new RegExp(`^${op}: argument 'options' must be an object with some of the options .*; received 'max' \\(a string\\)\\.$`));
      expect(() => tf.tidy(() => { calls[op]!(null); }), op).toThrow(new RegExp(`^${op}: argument 'options' .*; received null\\.$`));
    }
  });
});

describeOn('cpu', 'op argument messages', () => {
  it('a tensor of the wrong dtype or rank is described with its dtype, the right article, and its shape', () => {
    tf.tidy(() => {
      expect(() => ops.causalGeneration(tf.zeros([1, 2, 3], 'int32') as tf.Tensor3D)).toThrow(
        "causalGeneration: argument 'x' must be a float32 tensor of rank 3 [B, T, D]; received an int32 tensor of shape [1, 2, 3]. " +
        "Cast it with tf.cast(x, 'float32').");
      expect(() => ops.causalMean(tf.zeros([4, 3]) as unknown as tf.Tensor3D)).toThrow(
        "causalMean: argument 'x' must be a float32 tensor of rank 3 [B, T, D]; received a float32 tensor of shape [4, 3].");
      expect(() => ops.flashAttention(t4([1, 2, 1, 2]), tf.zeros([1, 2, 1, 2], 'bool') as tf.Tensor4D, t4([1, 2, 1, 2])))
        .toThrow(/^flashAttention: argument 'k' must be a float32 tensor of rank 4 \[B, Tk, Hkv, K\]; received a bool tensor of shape \[1, 2, 1, 2\]\./);
    });
  });

  it('an option of the wrong type is printed with its type', () => {
    tf.tidy(() => {
      const [q, kv] = [t4([1, 3, 2, 4]), t4([1, 3, 1, 4])];
      expect(() => ops.flashAttention(q, kv, kv, { scale: '0.5' as never }))
        .toThrow("flashAttention: option 'scale' must be a finite number; received '0.5' (a string).");
      expect(() => ops.blockSparseAttention(q, kv, kv, { scale: '0.5' as never }))
        .toThrow("blockSparseAttention: option 'scale' must be a finite number; received '0.5' (a string).");
      expect(() => ops.expressiveAttention(q, kv, kv, { epsilon: '1e-6' as never }))
        .toThrow("expressiveAttention: option 'epsilon' must be a finite number ≥ 0; received '1e-6' (a string).");
      expect(() => ops.blockSparseAttention(q, kv, kv, { blockSize: '4' as never }))
        .toThrow("blockSparseAttention: option 'blockSize' must be an integer ≥ 1; received '4' (a string).");
      const x = t2([1, 2]);
      expect(() => ops.averageContextStep(x, x, x, '2' as never))
        .toThrow("averageContextStep: argument 'position' must be a non-negative integer; received '2' (a string).");
    });
  });

  it('an empty feature dimension is named; an empty batch or sequence is not an error', () => {
    tf.tidy(() => {
      expect(() => ops.causalGeneration(tf.zeros([1, 3, 0]) as tf.Tensor3D))
        .toThrow("causalGeneration: argument 'x' [B, T, D] must have D ≥ 1 (dimension 2); received a float32 tensor of shape [1, 3, 0].");
      const u = t3([1, 3, 2]);
      expect(() => ops.selectiveScan(u, u, tf.zeros([2, 0]) as tf.Tensor2D, t3([1, 3, 0]), t3([1, 3, 0])))
        .toThrow("selectiveScan: argument 'A' [E, N] must have N ≥ 1 (dimension 1); received a float32 tensor of shape [2, 0].");
      expect(() => ops.flashAttention(t4([1, 3, 2, 300]), t4([1, 3, 1, 300]), t4([1, 3, 1, 300])))
        .toThrow("flashAttention: the head dimension K of 'q', 'k' and 'v' must be at most 256; received 300.");
    });
  });

  it('options are checked before an empty input returns', () => {
    tf.tidy(() => {
      expect(() => ops.causalGeneration(tf.zeros([1, 0, 3]) as tf.Tensor3D, { implementation: 'webgpu' }))
        .toThrow(/^causalGeneration: implementation 'webgpu' needs the 'webgpu' backend/);
      expect(() => ops.flashAttention(t4([1, 2, 2, 4]), t4([1, 0, 1, 4]), t4([1, 0, 1, 4]), { scale: NaN }))
        .toThrow("flashAttention: option 'scale' must be a finite number; received NaN (a number).");
    });
  });
});

interface EmptyCase {
  label: string;
  inputs: () => tf.Tensor[];
  run: (inputs: tf.Tensor[], implementation: Implementation) => tf.Tensor | tf.Tensor[] | { output: tf.Tensor; state: tf.Tensor };
  /** The outputs' shapes, in the order {@link outputsOf} lists them. */
  shapes: number[][];
}

const seq = (op: typeof ops.causalGeneration | typeof ops.averageContext | typeof ops.causalMean, name: string, shape: number[]): EmptyCase => ({
  label: `${name} x ${JSON.stringify(shape)}`,
  inputs: () => [t(shape)],
  run: ([x], implementation) => op(x as tf.Tensor3D, { implementation }),
  shapes: [shape],
});

const attention = (name: 'flashAttention' | 'expressiveAttention' | 'blockSparseAttention', [B, Tq, Tk]: number[], causal = true): EmptyCase => ({
  label: `${name} B ${B}, Tq ${Tq}, Tk ${Tk}${causal ? '' : ', non-causal'}`,
  inputs: () => [t([B!, Tq!, 4, 3]), t([B!, Tk!, 2, 3]), t([B!, Tk!, 2, 3])],
  run: ([q, k, v], implementation) => name === 'blockSparseAttention'
    ? ops.blockSparseAttention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, { blockSize: 2, implementation })
    : ops[name](q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, { causal, implementation }),
  shapes: [[B!, Tq!, 4, 3]],
});

const scan = (name: 'selectiveScan' | 'selectiveScanWithState', B: number, T: number): EmptyCase => ({
  label: `${name} B ${B}, T ${T}, every option`,
  // u, delta, A, B, C, D, z, deltaBias
  inputs: () => [t([B, T, 3]), t([B, T, 3]), t([3, 2]), t([B, T, 2]), t([B, T, 2]), t([3]), t([B, T, 3]), t([3])],
  run: ([u, delta, A, Bm, C, D, z, deltaBias], implementation) => ops[name](
    u as tf.Tensor3D, delta as tf.Tensor3D, A as tf.Tensor2D, Bm as tf.Tensor3D, C as tf.Tensor3D,
    { D: D as tf.Tensor1D, z: z as tf.Tensor3D, deltaBias: deltaBias as tf.Tensor1D, implementation }),
  shapes: name === 'selectiveScan' ? [[B, T, 3]] : [[B, T, 3], [B, 3, 2]],
});

const emptyCases: EmptyCase[] = [
  seq(ops.causalGeneration, 'causalGeneration', [2, 0, 3]),
  seq(ops.causalGeneration, 'causalGeneration', [0, 4, 3]),
  seq(ops.averageContext, 'averageContext', [2, 0, 3]),
  seq(ops.averageContext, 'averageContext', [0, 4, 3]),
  seq(ops.causalMean, 'causalMean', [2, 0, 3]),
  {
    label: 'causalGenerationStep B 0',
    inputs: () => [t([0, 3]), t([0, 3])],
    run: ([x, p], implementation) => ops.causalGenerationStep(x as tf.Tensor2D, p as tf.Tensor2D, { implementation }),
    shapes: [[0, 3]],
  },
  {
    label: 'averageContextStep B 0',
    inputs: () => [t([0, 3]), t([0, 3]), t([0, 3])],
    run: ([x, p, s], implementation) => ops.averageContextStep(x as tf.Tensor2D, p as tf.Tensor2D, s as tf.Tensor2D, 2, { implementation }),
    shapes: [[0, 3], [0, 3]],
  },
  attention('flashAttention', [2, 3, 0]),
  attention('flashAttention', [2, 3, 0], false),
  attention('flashAttention', [2, 0, 5]),
  attention('flashAttention', [0, 3, 5]),
  attention('expressiveAttention', [2, 3, 0]),
  attention('expressiveAttention', [2, 3, 0], false),
  attention('expressiveAttention', [2, 0, 5]),
  attention('expressiveAttention', [0, 3, 5]),
  attention('blockSparseAttention', [2, 0, 0]),
  attention('blockSparseAttention', [0, 5, 5]),
  {
    label: 'expressiveAttentionRecurrentStep B 0',
    inputs: () => [t([0, 4, 3]), t([0, 2, 3]), t([0, 2, 3]), t([0, 2, 6, 3]), t([0, 2, 6])],
    run: ([q, k, v, M, z], implementation) => ops.expressiveAttentionRecurrentStep(
      q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, M as tf.Tensor4D, z as tf.Tensor3D, { implementation }),
    shapes: [[0, 4, 3], [0, 2, 6, 3], [0, 2, 6]],
  },
  scan('selectiveScan', 2, 0),
  scan('selectiveScan', 0, 4),
  scan('selectiveScanWithState', 2, 0),
  scan('selectiveScanWithState', 0, 4),
  {
    label: 'selectiveScanStep B 0',
    inputs: () => [t([0, 3]), t([0, 3]), t([3, 2]), t([0, 2]), t([0, 2]), t([0, 3, 2])],
    run: ([u, delta, A, B, C, state], implementation) => ops.selectiveScanStep(
      u as tf.Tensor2D, delta as tf.Tensor2D, A as tf.Tensor2D, B as tf.Tensor2D, C as tf.Tensor2D, state as tf.Tensor3D, { implementation }),
    shapes: [[0, 3], [0, 3, 2]],
  },
];

function outputsOf(out: ReturnType<EmptyCase['run']>): tf.Tensor[] {
  return out instanceof tf.Tensor ? [out] : Array.isArray(out) ? out : [out.output, out.state];
}

async function expectAllZero(x: tf.Tensor, what: string): Promise<void> {
  const data = await x.data();
  expect(Array.from(data).every((d) => d === 0), `${what}: ${Array.from(data).slice(0, 8).join(', ')}`).toBe(true);
}

for (const backend of ['cpu', 'webgpu'] as const) {
  describeOn(backend, 'empty batch, sequence and KV cache', () => {
    for (const implementation of ['auto', 'reference'] as const) {
      for (const c of emptyCases) {
        it(`${c.label} (${implementation}): outputs of the right shape, all 0; gradients zeros of each input's shape`, async () => {
          await expectNoLeaks(async () => {
            const inputs = c.inputs();
            const outputs = outputsOf(c.run(inputs, implementation));
            expect(outputs.map((o) => o.shape)).toEqual(c.shapes);
            for (const o of outputs) await expectAllZero(o, 'output');
            // one vector-Jacobian product per output: tfjs-webgpu's tf.sum fails on an empty tensor
            for (const [i, shape] of c.shapes.entries()) {
              const dy = tf.ones(shape);
              const grads = tf.grads((...xs: tf.Tensor[]) => outputsOf(c.run(xs, implementation))[i]!)(inputs, dy);
              expect(grads.map((g) => g.shape)).toEqual(inputs.map((x) => x.shape));
              for (const [n, g] of grads.entries()) await expectAllZero(g, `output ${i}, gradient ${n}`);
              tf.dispose([dy, grads]);
            }
            tf.dispose([inputs, outputs]);
          });
        });
      }

      it(`selectiveScanWithState T 0 (${implementation}): the state is the initial state, and its gradient flows to it`, async () => {
        await expectNoLeaks(async () => {
          const [u, delta, A, B, C] = [t3([2, 0, 3]), t3([2, 0, 3]), t2([3, 2]), t3([2, 0, 2]), t3([2, 0, 2])];
          const initialState = tf.tensor3d([1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12], [2, 3, 2]);
          const weight = tf.tensor3d([0.5, 1, 2, 4, 8, 16, -1, -2, -3, -4, -5, -6], [2, 3, 2]);
          const run = (s: tf.Tensor) => ops.selectiveScanWithState(u, delta, A, B, C, { initialState: s as tf.Tensor3D, implementation });
          const r = run(initialState);
          expect(r.output.shape).toEqual([2, 0, 3]);
          expect(Array.from(await r.state.data())).toEqual([1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12]);
          const [dState, dA] = tf.grads((s: tf.Tensor, a: tf.Tensor) => tf.sum(tf.mul(
            ops.selectiveScanWithState(u, delta, a as tf.Tensor2D, B, C, { initialState: s as tf.Tensor3D, implementation }).state, weight)))(
            [initialState, A]);
          expect(Array.from(await dState!.data())).toEqual([0.5, 1, 2, 4, 8, 16, -1, -2, -3, -4, -5, -6]);
          await expectAllZero(dA!, 'dA');
          const fresh = ops.selectiveScanWithState(u, delta, A, B, C, { implementation });
          expect(fresh.state.shape).toEqual([2, 3, 2]);
          await expectAllZero(fresh.state, 'state without an initial state');
          tf.dispose([u, delta, A, B, C, initialState, weight, r.output, r.state, dState, dA, fresh.output, fresh.state]);
        });
      });
    }
  });
}
