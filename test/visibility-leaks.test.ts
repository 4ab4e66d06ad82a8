// MIXERS.md §7: an invisible key or value never reaches an output. A NaN or an infinity in a
// token may change only the outputs that see that token, forward and backward: with the loss
// taken over the outputs before it, every other gradient equals the one of a clean run. An
// attention row that sees one comes out NaN, through every forward kernel.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { layers, ops, type Implementation } from '../src/index.js';
import { ATTENTION_FORWARD_FLAG, ATTENTION_ROWS_FLAG, ATTENTION_ROW_LANES_FLAG } from '../src/attention/kernel-source.js';
import { ATTENTION_SPLIT_PASS_FLAG } from '../src/attention/split-pass.js';
import { ATTENTION_SPLITS_FLAG } from '../src/attention/tile-splits.js';
import { type TestBackend, decodeSteps, describeOn, describeOnSubgroups, launchedPipelines, seededUniform, values } from './helpers.js';

const BAD_VALUES = [Number.NaN, Number.POSITIVE_INFINITY];

/** A tensor's values with entry `[.., index, ..]` of axis 1 overwritten by `bad` (every other axis). */
function poisoned(xs: Float32Array, shape: number[], index: number, bad: number): Float32Array {
  const out = xs.slice();
  const inner = shape.slice(2).reduce((a, b) => a * b, 1);
  for (let b = 0; b < shape[0]!; b++) {
    const start = (b * shape[1]! + index) * inner;
    out.fill(bad, start, start + inner);
  }
  return out;
}

/** Zeros at axis-1 positions ≥ `from`: the loss reads only the outputs before it. */
function cotangent(seed: number, shape: number[], from: number): Float32Array {
  const out = seededUniform(seed, shape.reduce((a, b) => a * b, 1));
  const inner = shape.slice(2).reduce((a, b) => a * b, 1);
  for (let b = 0; b < shape[0]!; b++) out.fill(0, (b * shape[1]! + from) * inner, (b + 1) * shape[1]! * inner);
  return out;
}

/**
 * Asserts that `got` equals `want` bit for bit (±0 aside) at every axis-1 position for which
 * `compared` holds, naming `what` and the first entry that differs.
 */
function expectSameAt(got: Float32Array, want: Float32Array, shape: number[], compared: (t: number) => boolean, what: string): void {
  const inner = shape.slice(2).reduce((a, b) => a * b, 1);
  for (let n = 0; n < got.length; n++) {
    const t = Math.floor(n / inner) % shape[1]!;
    if (!compared(t)) continue;
    if (!(got[n] === want[n])) {
      expect.fail(`${what}: entry ${n} (position ${t}) is ${got[n]}, the clean run's is ${want[n]}`);
    }
  }
}

const implementationsOn = (backend: TestBackend): Implementation[] => (backend === 'webgpu' ? ['webgpu', 'reference'] : ['reference']);

type Attention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, implementation: Implementation) => tf.Tensor4D;

/** q `[1, Tq, 2, 4]`, k and v `[1, Tk, 1, 4]` (two query heads share a kv head); key j is poisoned. */
const SELF = { Tq: 6, Tk: 6, j: 3 };
const CROSS = { Tq: 4, Tk: 6, j: 4 };

/** Whether query row i sees key j of Tk, with Tq queries. */
type Sees = (i: number, j: number, Tq: number, Tk: number) => boolean;
/** Bottom-right causal: query i sees key j when j ≤ i + Tk − Tq. */
const causalSees: Sees = (i, j, Tq, Tk) => j <= i + Tk - Tq;

const ATTENTION_OPS: Array<[string, Attention, Array<typeof SELF>, Sees]> = [
  ['flashAttention', (q, k, v, implementation) => ops.flashAttention(q, k, v, { causal: true, implementation }), [SELF, CROSS], causalSees],
  ['expressiveAttention', (q, k, v, implementation) => ops.expressiveAttention(q, k, v, { causal: true, implementation }), [SELF, CROSS], causalSees],
  // self-attention only; the layout also hides key 3 from rows 4 and 5, which see blocks 0 and 2:
  // a row sees the causal keys of its own block of 2 and of block 0
  ['blockSparseAttention', (q, k, v, implementation) =>
    ops.blockSparseAttention(q, k, v, { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 0, implementation }), [SELF],
  (i, j) => j <= i && (j >> 1 === i >> 1 || j >> 1 === 0)],
];

/** o, dq, dk, dv of `op` with the loss over the outputs before query row `row`. */
async function attentionRun(op: Attention, impl: Implementation, qs: Float32Array, ks: Float32Array, vs: Float32Array,
  qShape: number[], kShape: number[], row: number): Promise<Float32Array[]> {
  const outs = tf.tidy(() => {
    const q = tf.tensor4d(qs, qShape as [number, number, number, number]);
    const k = tf.tensor4d(ks, kShape as [number, number, number, number]);
    const v = tf.tensor4d(vs, kShape as [number, number, number, number]);
    const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => op(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, impl);
    const dy = tf.tensor4d(cotangent(7, qShape, row), qShape as [number, number, number, number]);
    return [f(q, k, v), ...tf.grads(f)([q, k, v], dy)];
  });
  const got = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  return got;
}

/**
 * Asserts that `op` (q `[1, Tq, 2, K]`, k and v `[1, Tk, 1, K]`, forward only) makes NaN every
 * entry of the rows that see token j and no entry of the others, with the token's key, value or
 * query (row j − (Tk − Tq)) alone set to each non-finite value. Rows read 'N' (all NaN), 'f'
 * (none) or 'n' (some), so that a failure shows the whole pattern.
 */
async function expectNaNRows(op: Attention, impl: Implementation, sees: Sees, s: { Tq: number; Tk: number; j: number; K: number }, what: string): Promise<void> {
  const { Tq, Tk, j, K } = s;
  const row = j - (Tk - Tq);
  // each input's values, shape and poisoned position along axis 1
  const inputs = [
    { xs: seededUniform(1, Tq * 2 * K), shape: [1, Tq, 2, K], at: row },
    { xs: seededUniform(2, Tk * K), shape: [1, Tk, 1, K], at: j },
    { xs: seededUniform(3, Tk * K), shape: [1, Tk, 1, K], at: j },
  ] as const;
  for (const bad of [...BAD_VALUES, Number.NEGATIVE_INFINITY]) {
    for (const [which, input] of (['q', 'k', 'v'] as const).entries()) {
      const o = tf.tidy(() => {
        const [q, k, v] = inputs.map(({ xs, shape, at }, n) =>
          tf.tensor4d(n === which ? poisoned(xs, [...shape], at, bad) : xs, [...shape]));
        return op(q!, k!, v!, impl);
      });
      const got = await o.data();
      o.dispose();
      const rows = Array.from({ length: Tq }, (_, i) => {
        const entries = got.subarray(i * 2 * K, (i + 1) * 2 * K);
        return entries.every(Number.isNaN) ? 'N' : entries.some(Number.isNaN) ? 'n' : 'f';
      }).join('');
      const want = Array.from({ length: Tq }, (_, i) => ((input === 'q' ? i === row : sees(i, j, Tq, Tk)) ? 'N' : 'f')).join('');
      expect(rows, `${what} (${impl}), Tq ${Tq}, Tk ${Tk}, ${input} at ${j} = ${bad}`).toBe(want);
    }
  }
}

type ScanSizes = { B: number; T: number; E: number; N: number; t: number };
/**
 * selectiveScan's sizes (batch, steps, channels, state size) and the poisoned step t: within the
 * kernels' first 32-step chunk, and in the second with steps of it before t, so that an adjoint
 * crosses the chunk boundary through the chunk holding t.
 */
const SCANS: ScanSizes[] = [{ B: 2, T: 7, E: 3, N: 2, t: 4 }, { B: 1, T: 40, E: 3, N: 2, t: 35 }];
const SCAN_GRADIENTS = ['du', 'ddelta', 'dA', 'dB', 'dC', 'dD', 'dz', 'ddeltaBias'];

/** selectiveScan's output and its gradients (SCAN_GRADIENTS) with the loss over the outputs before step t. */
async function scanRun(impl: Implementation, sizes: ScanSizes, p: { u: Float32Array; delta: Float32Array; B: Float32Array; C: Float32Array; z: Float32Array }): Promise<Float32Array[]> {
  const { B, T, E, N, t } = sizes;
  const outs = tf.tidy(() => {
    const A = tf.neg(tf.tensor2d(seededUniform(15, E * N, 0.5, 1.5), [E, N]));
    const D = tf.tensor1d(seededUniform(16, E));
    const deltaBias = tf.tensor1d(seededUniform(17, E));
    const f = (u: tf.Tensor, delta: tf.Tensor, a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor, z: tf.Tensor, bias: tf.Tensor) =>
      ops.selectiveScan(u as tf.Tensor3D, delta as tf.Tensor3D, a as tf.Tensor2D, b as tf.Tensor3D, c as tf.Tensor3D,
        { D: d as tf.Tensor1D, z: z as tf.Tensor3D, deltaBias: bias as tf.Tensor1D, implementation: impl });
    const args: [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor] = [
      tf.tensor3d(p.u, [B, T, E]), tf.tensor3d(p.delta, [B, T, E]), A, tf.tensor3d(p.B, [B, T, N]),
      tf.tensor3d(p.C, [B, T, N]), D, tf.tensor3d(p.z, [B, T, E]), deltaBias];
    const dy = tf.tensor3d(cotangent(18, [B, T, E], t), [B, T, E]);
    return [f(...args), ...tf.grads(f)(args, dy)];
  });
  const got = await Promise.all(outs.map(async (o) => Float32Array.from(await o.data())));
  tf.dispose(outs);
  return got;
}

for (const backend of ['cpu', 'wasm', 'webgpu'] as const) {
  describeOn(backend, 'invisible values never reach an output', () => {
    for (const impl of implementationsOn(backend)) {
      for (const [name, op, sizes, sees] of ATTENTION_OPS) {
        /** Clean and poisoned runs of `op`, for each size and bad value. */
        const runs = async (check: (what: string, got: Float32Array[], clean: Float32Array[], row: number, j: number, qShape: number[], kShape: number[]) => void) => {
          for (const { Tq, Tk, j } of sizes) {
            const qShape = [1, Tq, 2, 4];
            const kShape = [1, Tk, 1, 4];
            // bottom-right causal: query row i sees key j when j ≤ i + Tk − Tq; the token at key
            // position j is also the query row j − (Tk − Tq)
            const row = j - (Tk - Tq);
            const qs = seededUniform(1, Tq * 8);
            const ks = seededUniform(2, Tk * 4);
            const vs = seededUniform(3, Tk * 4);
            const clean = await attentionRun(op, impl, qs, ks, vs, qShape, kShape, row);
            for (const bad of BAD_VALUES) {
              const got = await attentionRun(op, impl, poisoned(qs, qShape, row, bad), poisoned(ks, kShape, j, bad),
                poisoned(vs, kShape, j, bad), qShape, kShape, row);
              check(`${name} (${impl}), Tq ${Tq}, Tk ${Tk}, token ${j} = ${bad}`, got, clean, row, j, qShape, kShape);
            }
          }
        };

        it(`(${impl}) ${name}: a non-finite token changes no output and no dq of the rows that do not see it`, async () => {
          await runs((what, got, clean, row, _j, qShape) => {
            expectSameAt(got[0]!, clean[0]!, qShape, (i) => i < row, `${what}: output`);
            expectSameAt(got[1]!, clean[1]!, qShape, (i) => i < row, `${what}: dq`);
          });
        });

        // docs/attention-masks.md: a row that sees a non-finite input comes out NaN, each input on
        // its own (a key alone, a value alone, a query), and no other row does
        it(`(${impl}) ${name}: a non-finite key, value or query makes NaN exactly the outputs of the rows that see it`, async () => {
          for (const { Tq, Tk, j } of sizes) await expectNaNRows(op, impl, sees, { Tq, Tk, j, K: 4 }, name);
        });

        it(`(${impl}) ${name}: with the loss over the rows before it, every other gradient equals a clean run's`, async () => {
          await runs((what, got, clean, row, j, qShape, kShape) => {
            expectSameAt(got[1]!, clean[1]!, qShape, (i) => i !== row, `${what}: dq`);
            expectSameAt(got[2]!, clean[2]!, kShape, (s) => s !== j, `${what}: dk`);
            expectSameAt(got[3]!, clean[3]!, kShape, (s) => s !== j, `${what}: dv`);
          });
        });
      }

      const causalMixers: Array<[string, (x: tf.Tensor3D) => tf.Tensor3D]> = [
        ...(['min', 'max', 'mean'] as const).map((reduce): [string, (x: tf.Tensor3D) => tf.Tensor3D] =>
          [`causalGeneration ${reduce}`, (x) => ops.causalGeneration(x, { reduce, implementation: impl })]),
        ...(['max', 'min', 'mean'] as const).map((combine): [string, (x: tf.Tensor3D) => tf.Tensor3D] =>
          [`averageContext ${combine}`, (x) => ops.averageContext(x, { combine, causal: true, implementation: impl })]),
        ['causalMean', (x) => ops.causalMean(x, { implementation: impl })],
      ];
      for (const [name, op] of causalMixers) {
        it(`(${impl}) ${name}: a non-finite token changes only the outputs from it on, forward and gradient`, async () => {
          const shape = [2, 7, 3];
          const t = 4;
          const xs = seededUniform(4, 42);
          const run = async (x: Float32Array) => {
            const outs = tf.tidy(() => {
              const input = tf.tensor3d(x, shape as [number, number, number]);
              const dy = tf.tensor3d(cotangent(5, shape, t), shape as [number, number, number]);
              return [op(input), tf.grad((a: tf.Tensor) => op(a as tf.Tensor3D))(input, dy)];
            });
            const got = await Promise.all(outs.map(async (o) => Float32Array.from(await o.data())));
            tf.dispose(outs);
            return got;
          };
          const clean = await run(xs);
          for (const bad of BAD_VALUES) {
            const got = await run(poisoned(xs, shape, t, bad));
            expectSameAt(got[0]!, clean[0]!, shape, (s) => s < t, `${name} (${impl}), token ${t} = ${bad}: output`);
            expectSameAt(got[1]!, clean[1]!, shape, (s) => s !== t, `${name} (${impl}), token ${t} = ${bad}: gradient`);
          }
        });
      }

      /** Clean and poisoned runs of selectiveScan, for each of SCANS: output, then SCAN_GRADIENTS. */
      const scanRuns = async (check: (what: string, sizes: ScanSizes, got: Float32Array[], clean: Float32Array[]) => void) => {
        for (const sizes of SCANS) {
          const { B, T, E, N, t } = sizes;
          const tokens = { u: seededUniform(10, B * T * E), delta: seededUniform(11, B * T * E),
            B: seededUniform(12, B * T * N), C: seededUniform(13, B * T * N), z: seededUniform(14, B * T * E) };
          const clean = await scanRun(impl, sizes, tokens);
          for (const bad of BAD_VALUES) {
            const [perE, perN] = [[B, T, E], [B, T, N]];
            const got = await scanRun(impl, sizes, { u: poisoned(tokens.u, perE, t, bad), delta: poisoned(tokens.delta, perE, t, bad),
              B: poisoned(tokens.B, perN, t, bad), C: poisoned(tokens.C, perN, t, bad), z: poisoned(tokens.z, perE, t, bad) });
            check(`selectiveScan (${impl}), T ${T}, token ${t} = ${bad}`, sizes, got, clean);
          }
        }
      };

      it(`(${impl}) selectiveScan: a non-finite token changes no output before it`, async () => {
        await scanRuns((what, { B, T, E, t }, got, clean) => {
          expectSameAt(got[0]!, clean[0]!, [B, T, E], (s) => s < t, `${what}: output`);
        });
      });

      it(`(${impl}) selectiveScan: with the loss over the outputs before it, every other gradient equals a clean run's`, async () => {
        await scanRuns((what, { B, T, E, N, t }, got, clean) => {
          const shapes = [[B, T, E], [B, T, E], [1, E, N], [B, T, N], [B, T, N], [1, E, 1], [B, T, E], [1, E, 1]];
          // A, D and deltaBias are shared by every step: their whole gradient must be clean
          const perToken = [true, true, false, true, true, false, true, false];
          for (let n = 0; n < SCAN_GRADIENTS.length; n++) {
            expectSameAt(got[n + 1]!, clean[n + 1]!, shapes[n]!, (s) => !perToken[n] || s !== t, `${what}: ${SCAN_GRADIENTS[n]}`);
          }
        });
      });

      const layerCases: Array<[string, () => tf.layers.Layer & { initState(b: number): tf.TensorContainer; step(x: tf.Tensor2D, s: tf.TensorContainer): [tf.Tensor2D, tf.TensorContainer] }]> = [
        ['FlashStyleTiledAttention', () => layers.flashStyleTiledAttention({ numHeads: 2, numKvHeads: 1, headDim: 4, implementation: impl }) as never],
        ['ExpressiveAttention', () => layers.expressiveAttention({ numHeads: 2, numKvHeads: 1, headDim: 4, implementation: impl }) as never],
        ['BlockSparse', () => layers.blockSparse({ numHeads: 2, numKvHeads: 1, headDim: 4, layout: { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 0 }, implementation: impl }) as never],
        ['CausalGeneration', () => layers.causalGeneration({ implementation: impl }) as never],
        ['AverageContext', () => layers.averageContext({ causal: true, implementation: impl }) as never],
        ['SelectiveSSM', () => layers.selectiveSSM({ stateSize: 2, expand: 1, implementation: impl }) as never],
        ['GatedLinearAttention', () => layers.gatedLinearAttention({ numHeads: 2, implementation: impl }) as never],
        ['Aaren', () => layers.aaren({ numHeads: 2, implementation: impl }) as never],
      ];
      for (const [name, make] of layerCases) {
        it(`(${impl}) ${name} layer: a non-finite token leaves the outputs before it unchanged, in the forward and in step decoding`, async () => {
          const shape = [2, 6, 8];
          const t = 3;
          const xs = seededUniform(20, 96);
          const layer = make();
          const run = async (x: Float32Array) => {
            const input = tf.tensor3d(x, shape as [number, number, number]);
            const parallel = layer.apply(input) as tf.Tensor;
            const stepped = decodeSteps(layer as never, input);
            const got = [Float32Array.from(await values(parallel)), Float32Array.from(await values(stepped))];
            tf.dispose([input, parallel, stepped]);
            return got;
          };
          const [cleanParallel, cleanStepped] = await run(xs);
          for (const bad of BAD_VALUES) {
            const [parallel, stepped] = await run(poisoned(xs, shape, t, bad));
            const what = `${name} layer (${impl}), token ${t} = ${bad}`;
            expectSameAt(parallel!, cleanParallel!, shape, (s) => s < t, `${what}: forward`);
            expectSameAt(stepped!, cleanStepped!, shape, (s) => s < t, `${what}: step decoding`);
            // decoding still agrees with the forward on which outputs the token reaches
            expect(Array.from(stepped!, Number.isFinite), `${what}: finite outputs, decoding vs forward`)
              .toEqual(Array.from(parallel!, Number.isFinite));
          }
          layer.dispose();
        });
      }
    }
  });
}

/**
 * A forward kernel of the attention skeleton: whether it is the split-K decode's, the flags that
 * choose it, and the label of a pipeline only it launches.
 */
type ForwardKernel = { what: string; decoding: boolean; flags: Record<string, string | number>; pipeline: RegExp };

/**
 * Checks expectNaNRows through each kernel at K = 16 (four channel groups: the size that four
 * lanes a row take): the split-K decode (flashAttention and expressiveAttention, 2 query rows)
 * over 300 keys, several chunks where a chunk has an invocation, with key 299, which only the
 * last row sees; the tiled forward (all three ops, 40 rows) with key 20.
 */
function checkForwardKernels(kernels: ForwardKernel[], pipelines?: string[]): void {
  for (const { what, decoding, flags, pipeline } of kernels) {
    it(`${what}: a non-finite key, value or query makes NaN exactly the rows that see it`, async () => {
      for (const [flag, value] of Object.entries(flags)) tf.env().set(flag, value);
      try {
        const ran = await launchedPipelines(async () => {
          for (const [name, op, , sees] of decoding ? ATTENTION_OPS.slice(0, 2) : ATTENTION_OPS) {
            await expectNaNRows(op, 'webgpu', sees, decoding ? { Tq: 2, Tk: 300, j: 299, K: 16 } : { Tq: 40, Tk: 40, j: 20, K: 16 }, `${name}, ${what}`);
          }
        });
        expect(ran.filter((label) => pipeline.test(label)).length, `${pipeline} among ${[...new Set([...ran, ...(pipelines ?? [])])].join(', ')}`).toBeGreaterThan(0);
      } finally {
        for (const flag of Object.keys(flags)) tf.env().set(flag, 'auto');
      }
    });
  }
}

describeOn('webgpu', 'a non-finite input through each attention forward kernel', () => {
  checkForwardKernels([
    { what: 'the split-K decode, an invocation a chunk, and the merge', decoding: true, flags: { [ATTENTION_SPLIT_PASS_FLAG]: 'invocation' }, pipeline: /^FlashAttentionMergeK16$/ },
    { what: 'the split-K decode, a workgroup a chunk', decoding: true, flags: { [ATTENTION_SPLIT_PASS_FLAG]: 'workgroup' }, pipeline: /^ExpressiveAttentionSplitWorkgroupK16$/ },
    { what: 'the tiled forward, a row an invocation', decoding: false, flags: { [ATTENTION_ROWS_FLAG]: 1 }, pipeline: /^BlockSparseForwardK16$/ },
    { what: 'the tiled forward, four rows an invocation, in 3 chunks of keys', decoding: false, flags: { [ATTENTION_ROWS_FLAG]: 4, [ATTENTION_SPLITS_FLAG]: 3 }, pipeline: /^FlashAttentionMergeK16$/ },
    { what: 'the forward by blocks', decoding: false, flags: { [ATTENTION_FORWARD_FLAG]: 'blocks' }, pipeline: /^ExpressiveAttentionForwardBlocksK16R4$/ },
    { what: 'the forward by blocks, in 3 chunks of keys', decoding: false, flags: { [ATTENTION_FORWARD_FLAG]: 'blocks', [ATTENTION_SPLITS_FLAG]: 3 }, pipeline: /^FlashAttentionMergeK16$/ },
  ]);
});

describeOnSubgroups('a non-finite input through each attention forward kernel', (pipelines) => {
  checkForwardKernels([
    { what: 'the tiled forward, four lanes a row', decoding: false, flags: { [ATTENTION_ROW_LANES_FLAG]: 4 }, pipeline: /^FlashAttentionForwardSubgroupsK16/ },
    { what: 'the split-K decode, a subgroup a chunk', decoding: true, flags: { [ATTENTION_SPLIT_PASS_FLAG]: 'subgroup' }, pipeline: /^FlashAttentionSplitSubgroups/ },
    { what: 'the split-K decode, a workgroup of four-lane folders a chunk', decoding: true, flags: { [ATTENTION_SPLIT_PASS_FLAG]: 'workgroup' }, pipeline: /^ExpressiveAttentionSplitWorkgroupQuarters/ },
  ], pipelines);
});
