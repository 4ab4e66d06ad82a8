import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Implementation } from '../src/validate.js';
import { blockSparseAttention } from '../src/mixers/block-sparse/op.js';
import { blockSparse } from '../src/mixers/block-sparse/layer.js';
import {
  blockActive, blockSparseCsr, drawBlockSparseLayout, tilePlans, tokenVisible, visibleKeyCount, visibleKeys, type BlockSparseLayout, type TilePlan,
} from '../src/mixers/block-sparse/layout.js';
import { flashAttention } from '../src/mixers/flash-style-tiled-attention/op.js';
import { itLeaksNothing, itRoundTrips, itTrains } from './layer-properties.js';
import { itAttentionOpLeaksNothing, itMatchesRepeatedHeads } from './attention-op-properties.js';
import { blockSparseMask, softmaxAttentionGradOracle, softmaxAttentionOracle, type AttentionShape } from './oracle/attention.js';
import {
  EPS32, REFERENCE_BACKENDS, decodeSteps, describeOn, describeOnSubgroups, expectWithinDerivedTolerance, launchedPipelines, maxAbs, maxAbsDiff,
  recordedStep, seededUniform, uploadsDuring, values,
} from './helpers.js';
import { cacheMaskKernel, stepKeysKernel } from '../src/mixers/block-sparse/kernel.js';
import { ATTENTION_SPLIT_PASS_FLAG } from '../src/attention/split-pass.js';

/** Rows per tile of the kernels (BR in src/attention/kernel-source.ts). */
const ROWS = 64;

const layouts = fc.record({
  blockSize: fc.constantFrom(1, 3, 16, 64, 100),
  localBlocks: fc.integer({ min: 1, max: 3 }),
  globalBlocks: fc.integer({ min: 0, max: 2 }),
  stride: fc.constantFrom(0, 0, 2, 3),
});

/**
 * B 1..2; T of 1, odd, or long enough for several blocks of the drawn size with a partial last
 * one (n whole blocks plus a remainder); every block size of the list past and below a
 * 64-row tile (one tile per block, tiles split inside a block of 100, several blocks per tile);
 * windows, sinks and strides; H / Hkv from MHA to MQA; K from the list plus 7 (the
 * scalar-lane kernels); a random scale.
 */
const cases = fc.noBias(fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  layout: layouts,
  length: fc.oneof(
    { arbitrary: fc.constant({ kind: 'one' as const }), weight: 1 },
    { arbitrary: fc.integer({ min: 0, max: 40 }).map((v) => ({ kind: 'odd' as const, T: 2 * v + 1 })), weight: 2 },
    { arbitrary: fc.record({ kind: fc.constant('blocks' as const), n: fc.nat(), rest: fc.nat() }), weight: 3 },
  ),
  heads: fc.constantFrom([1, 1], [2, 2], [4, 2], [4, 1], [3, 1]),
  K: fc.constantFrom(8, 16, 32, 64, 7),
  scale: fc.double({ min: 0.05, max: 0.5, noNaN: true }),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
})).map((c) => {
  const b = c.layout.blockSize;
  const l = c.length;
  // n ≥ 1 whole blocks and a partial last one, T ≤ 180 to keep the webgpu reference quick
  const T = l.kind === 'one' ? 1 : l.kind === 'odd' ? l.T
    : Math.min(180, (1 + (l.n % Math.max(1, Math.floor(170 / b)))) * b + 1 + (l.rest % Math.max(1, b - 1)));
  return { B: c.B, T, layout: c.layout, H: c.heads[0]!, Hkv: c.heads[1]!, K: c.K, scale: c.scale, seed: c.seed };
});
type Case = { B: number; T: number; layout: BlockSparseLayout; H: number; Hkv: number; K: number; scale: number; seed: number };

function shapeOf(c: Case): AttentionShape {
  return { B: c.B, Tq: c.T, Tk: c.T, H: c.H, Hkv: c.Hkv, K: c.K };
}

function inputs(c: Case) {
  const s = shapeOf(c);
  const qs = seededUniform(c.seed, s.B * s.Tq * s.H * s.K);
  const ks = seededUniform(c.seed + 1, s.B * s.Tk * s.Hkv * s.K);
  const vs = seededUniform(c.seed + 2, s.B * s.Tk * s.Hkv * s.K);
  const dOs = seededUniform(c.seed + 3, s.B * s.Tq * s.H * s.K);
  return { s, qs, ks, vs, dOs };
}

function oracles(c: Case) {
  const { s, qs, ks, vs, dOs } = inputs(c);
  const opts = { causal: true, scale: c.scale, mask: blockSparseMask({ T: c.T, ...c.layout }) };
  const { o } = softmaxAttentionOracle(qs, ks, vs, s, opts);
  const g = softmaxAttentionGradOracle(qs, ks, vs, dOs, s, opts);
  return [o, g.dq, g.dk, g.dv];
}

type Attend = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;

/** o, dq, dk, dv of `attend` on the case's inputs, with dO as the upstream gradient. */
function run(c: Case, attend: Attend): tf.Tensor[] {
  const { s, qs, ks, vs, dOs } = inputs(c);
  return tf.tidy(() => {
    const q = tf.tensor4d(qs, [s.B, s.Tq, s.H, s.K]);
    const k = tf.tensor4d(ks, [s.B, s.Tk, s.Hkv, s.K]);
    const v = tf.tensor4d(vs, [s.B, s.Tk, s.Hkv, s.K]);
    const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => attend(a as tf.Tensor4D, b as tf.Tensor4D, d as tf.Tensor4D);
    const o = f(q, k, v);
    const [dq, dk, dv] = tf.grads(f)([q, k, v], tf.tensor4d(dOs, [s.B, s.Tq, s.H, s.K]));
    return [o, dq!, dk!, dv!];
  });
}

function sparse(c: Case, implementation: Implementation): Attend {
  return (q, k, v) => blockSparseAttention(q, k, v, { ...c.layout, scale: c.scale, implementation });
}

const NAMES = ['o', 'dq', 'dk', 'dv'];

/** A plan's layout and, per tile, its rows and runs, each `[first, end)`. */
function readPlan(p: TilePlan) {
  const pair = (n: number): [number, number] => [p.pairs[2 * n]!, p.pairs[2 * n + 1]!];
  const [b, w] = pair(0);
  const [g, s] = pair(1);
  const tiles = Array.from({ length: p.numTiles }, (_, t) => {
    const [r0, r1] = pair(3 + 2 * t);
    return { rows: pair(2 + 2 * t), runs: Array.from({ length: r1 - r0 }, (__, r) => pair(r0 + r)) };
  });
  return { layout: { blockSize: b, localBlocks: w, globalBlocks: g, stride: s }, tiles };
}

describe('block-sparse layout', () => {
  const withT = fc.record({ layout: layouts, T: fc.integer({ min: 1, max: 400 }) });

  it('the CSR lists exactly the active blocks, by rows and by columns, and is cached', () => {
    fc.assert(fc.property(withT, ({ layout, T }) => {
      const csr = blockSparseCsr(T, layout);
      const n = Math.ceil(T / layout.blockSize);
      expect(csr.numBlocks).toBe(n);
      for (let I = 0; I < n; I++) {
        const want = [...Array(n).keys()].filter((J) => blockActive(I, J, layout));
        expect([...csr.colIdx.subarray(csr.rowPtr[I]!, csr.rowPtr[I + 1]!)]).toEqual(want);
        expect([...csr.rowIdx.subarray(csr.colPtr[I]!, csr.colPtr[I + 1]!)]).toEqual(
          [...Array(n).keys()].filter((J) => blockActive(J, I, layout)));
      }
      expect(blockSparseCsr(T, layout)).toBe(csr);
    }), { numRuns: 60 });
  });

  it('each tile\'s runs hold every key its rows see, and a tile inside one block reads exactly its active blocks', () => {
    fc.assert(fc.property(withT, ({ layout, T }) => {
      const b = layout.blockSize;
      const { forward, transposed } = tilePlans(T, layout, ROWS);
      for (const [plan, rowSees] of [[forward, (i: number, j: number) => tokenVisible(i, j, layout)],
        [transposed, (j: number, i: number) => tokenVisible(i, j, layout)]] as const) {
        const { layout: header, tiles } = readPlan(plan);
        expect(header).toEqual(layout);
        let next = 0;
        tiles.forEach(({ rows: [first, end], runs }, t) => {
          // tiles cut [0, T) in order, at most ROWS rows, never across a block longer than a tile
          expect(first).toBe(next);
          expect(end - first).toBeGreaterThan(0);
          expect(end - first).toBeLessThanOrEqual(ROWS);
          if (b >= ROWS) expect(Math.floor(first / b)).toBe(Math.floor((end - 1) / b));
          next = end;
          const read = new Set<number>();
          for (const [lo, hi] of runs) {
            expect(lo).toBeLessThan(hi);
            expect(hi).toBeLessThanOrEqual(T);
            for (let x = lo; x < hi; x++) { expect(read.has(x)).toBe(false); read.add(x); }
          }
          const needed = new Set<number>();
          for (let row = first; row < end; row++) for (let x = 0; x < T; x++) if (rowSees(row, x)) needed.add(x);
          for (const x of needed) expect(read.has(x), `tile ${t} misses ${x}`).toBe(true);
          // work tracks the active blocks: a tile inside one block reads nothing its rows all skip
          if (b >= ROWS) expect(read.size).toBe(needed.size);
        });
        expect(next).toBe(T);
      }
    }), { numRuns: 40 });
  });

  it('visibleKeys(i) is the token mask\'s row i, visibleKeyCount its length, and the drawing shows the active blocks', () => {
    fc.assert(fc.property(withT, ({ layout, T }) => {
      const i = T - 1;
      const want = [...Array(T).keys()].filter((j) => tokenVisible(i, j, layout));
      expect([...visibleKeys(i, layout)]).toEqual(want);
      expect(visibleKeyCount(i, layout)).toBe(want.length);
      const rows = drawBlockSparseLayout(T, layout).split('\n').slice(3);
      const n = Math.ceil(T / layout.blockSize);
      expect(rows.length).toBe(n);
      rows.forEach((line, I) => {
        const cells = line.trim().split(/\s+/).slice(2);
        expect(cells.map((x) => x !== '.')).toEqual([...Array(n).keys()].map((J) => blockActive(I, J, layout)));
      });
    }), { numRuns: 40 });
    expect(drawBlockSparseLayout(30, { blockSize: 4, localBlocks: 2, globalBlocks: 1, stride: 3 })).toBe([
      'T = 30, blockSize 4: 8 blocks, the last partial (2 tokens)',
      'localBlocks 2, globalBlocks 1, stride 3: 26 of 36 causal blocks active',
      '    J 0 1 2 3 4 5 6 7',
      'I  0  L . . . . . . .',
      'I  1  L L . . . . . .',
      'I  2  G L L . . . . .',
      'I  3  G . L L . . . .',
      'I  4  G S . L L . . .',
      'I  5  G . S . L L . .',
      'I  6  G . . S . L L .',
      'I  7  G S . . S . L L',
    ].join('\n'));
  });
});

for (const backend of REFERENCE_BACKENDS) describeOn(backend, 'blockSparseAttention', () => {
  it('reference matches the float64 oracle under the block mask, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const wants = oracles(c);
      const got = run(c, sparse(c, 'reference'));
      // float32 worst case, as for flashAttention: sums over K (scores), T (softmax, P·V) and
      // T (dK, dV), each within n·ε of the magnitudes summed, all ≤ the output's scale
      for (let n = 0; n < 4; n++) {
        const bound = 4 * (c.K + 2 * c.T) * EPS32 * Math.max(1, maxAbs(wants[n]!));
        expect(maxAbsDiff(await values(got[n]!), wants[n]!), NAMES[n]).toBeLessThanOrEqual(bound);
      }
      tf.dispose(got);
    }), { numRuns: 8 });
  });
});

describeOn('webgpu', 'blockSparseAttention', () => {
  it('kernel matches the oracle at least as well as the reference, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c) => {
      const wants = oracles(c);
      const kernel = run(c, sparse(c, 'webgpu'));
      // the reference on webgpu, in float32 arithmetic throughout (tfjs-cpu sums in float64)
      const reference = run(c, sparse(c, 'reference'));
      for (let n = 0; n < 4; n++) {
        expectWithinDerivedTolerance(await values(kernel[n]!), await values(reference[n]!), wants[n]!,
          `${NAMES[n]} (T ${c.T}, ${JSON.stringify(c.layout)})`);
      }
      tf.dispose([kernel, reference]);
    }), {
      numRuns: 11,
      // tiles of many short blocks, whose rows mask the union of their windows, sinks and strides
      examples: [
        [{ B: 1, T: 73, layout: { blockSize: 1, localBlocks: 3, globalBlocks: 1, stride: 2 }, H: 4, Hkv: 2, K: 16, scale: 0.3, seed: 7 }],
        [{ B: 2, T: 77, layout: { blockSize: 3, localBlocks: 2, globalBlocks: 0, stride: 0 }, H: 3, Hkv: 1, K: 7, scale: 0.2, seed: 8 }],
        [{ B: 1, T: 150, layout: { blockSize: 16, localBlocks: 2, globalBlocks: 1, stride: 3 }, H: 2, Hkv: 2, K: 32, scale: 0.25, seed: 9 }],
      ],
    });
  });

  it('a window of every block equals causal flashAttention, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(cases, async (c0) => {
      const layout = { ...c0.layout, localBlocks: Math.ceil(c0.T / c0.layout.blockSize) + c0.layout.localBlocks - 1 };
      const c = { ...c0, layout };
      const got = run(c, sparse(c, 'webgpu'));
      const want = run(c, (q, k, v) => flashAttention(q, k, v, { causal: true, scale: c.scale, implementation: 'webgpu' }));
      for (let n = 0; n < 4; n++) {
        const w = await values(want[n]!);
        expect(maxAbsDiff(await values(got[n]!), w), NAMES[n]).toBeLessThanOrEqual(4 * EPS32 * Math.max(1, maxAbs(w)));
      }
      tf.dispose([got, want]);
    }), { numRuns: 3 });
  });

  itMatchesRepeatedHeads(cases.filter((c) => c.H !== c.Hkv), inputs, (q, k, v, c) => sparse(c, 'webgpu')(q, k, v), 3);

  itAttentionOpLeaksNothing((q, k, v, options) =>
    blockSparseAttention(q, k, v, { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 2, ...options }));
});

describe('blockSparseAttention input checks', () => {
  let q: tf.Tensor4D;
  let kv: tf.Tensor4D;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    q = tf.zeros([1, 5, 4, 8]);
    kv = tf.zeros([1, 5, 2, 8]);
  });

  it('names the option, the expectation and what it received', () => {
    expect(blockSparseAttention(q, kv, kv).shape).toEqual([1, 5, 4, 8]);
    expect(() => blockSparseAttention(q, tf.zeros([1, 6, 2, 8]) as tf.Tensor4D, tf.zeros([1, 6, 2, 8]) as tf.Tensor4D))
      .toThrow(/'q' and 'k' must have the same length T; received Tq = 5 and Tk = 6/);
    expect(() => blockSparseAttention(q, kv, kv, { causal: false }))
      .toThrow(/option 'causal' must be true or omitted: the layout is causal by definition .*received false/);
    expect(() => blockSparseAttention(q, kv, kv, { blockSize: 0 })).toThrow(/option 'blockSize' must be an integer ≥ 1; received 0/);
    expect(() => blockSparseAttention(q, kv, kv, { blockSize: 2.5 })).toThrow(/option 'blockSize' must be an integer ≥ 1; received 2.5/);
    expect(() => blockSparseAttention(q, kv, kv, { localBlocks: 0 }))
      .toThrow(/option 'localBlocks' must be an integer ≥ 1 \(the window holds the diagonal block.*\); received 0/);
    expect(() => blockSparseAttention(q, kv, kv, { globalBlocks: -1 })).toThrow(/option 'globalBlocks' must be an integer ≥ 0; received -1/);
    expect(() => blockSparseAttention(q, kv, kv, { stride: '2' as never })).toThrow(/option 'stride' must be an integer ≥ 0 \(0 for no strided blocks\); received '2'/);
    expect(() => blockSparseAttention(q, kv, kv, { window: 3 } as never))
      .toThrow(/unknown option 'window'; the options are 'blockSize', 'localBlocks', 'globalBlocks', 'stride', 'causal', 'kvLengths', 'segmentIds', 'mask', 'dropout', 'seed', 'scale', 'implementation'/);
    expect(() => blockSparseAttention(q, tf.zeros([1, 5, 3, 8]) as tf.Tensor4D, tf.zeros([1, 5, 3, 8]) as tf.Tensor4D))
      .toThrow(/the query heads H = 4 must be a multiple of the key\/value heads Hkv = 3/);
    expect(() => blockSparseAttention(q, kv, kv, { implementation: 'webgpu' })).toThrow(/implementation 'webgpu' needs the 'webgpu' backend/);
  });
});

/** A layout sparse enough at the tests' lengths (T 7 to 16) for the mask to matter. */
const SMALL_LAYOUT = { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 3 };

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeOn(backend, 'BlockSparse layer', () => {
    itRoundTrips(() => blockSparse({ numHeads: 4, numKvHeads: 2, layout: SMALL_LAYOUT }),
      { numHeads: 4, numKvHeads: 2, headDim: null, useBias: true, implementation: 'auto', layout: SMALL_LAYOUT });
    if (backend === 'webgpu') itTrains(() => blockSparse({ numHeads: 2, layout: { blockSize: 4, localBlocks: 1, globalBlocks: 1, stride: 2 } }));

    const implementation: Implementation = backend === 'webgpu' ? 'webgpu' : 'reference';
    it(`(${implementation}) step decoding sees only the layout's keys and reproduces the parallel forward`, async () => {
      await fc.assert(fc.asyncProperty(
        fc.record({ B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 12 }), heads: fc.constantFrom([2, 2], [4, 1]),
          K: fc.constantFrom(4, 6), layout: fc.record({ blockSize: fc.integer({ min: 1, max: 3 }), localBlocks: fc.integer({ min: 1, max: 2 }),
            globalBlocks: fc.integer({ min: 0, max: 1 }), stride: fc.constantFrom(0, 2, 3) }), seed: fc.nat() }),
        async (c) => {
          const [H, Hkv] = c.heads as [number, number];
          const D = 12;
          const layer = blockSparse({ numHeads: H, numKvHeads: Hkv, headDim: c.K, layout: c.layout, implementation });
          const x = tf.tensor3d(seededUniform(c.seed, c.B * c.T * D), [c.B, c.T, D]);
          const parallel = layer.apply(x) as tf.Tensor;
          const stepped = decodeSteps(layer, x);
          // as for FlashStyleTiledAttention: the projections of [B, D] and [B·T, D] may round
          // differently by a few ulps, which the attention and Wo pass on
          expect(maxAbsDiff(await values(stepped), await values(parallel)))
            .toBeLessThanOrEqual(64 * EPS32 * Math.max(1, maxAbs(await values(parallel))) * D);
          tf.dispose([x, parallel, stepped]);
          layer.dispose();
        }), { numRuns: 5 });
    });

    itLeaksNothing('(grouped-query heads) ', () => blockSparse({ numHeads: 2, numKvHeads: 1, layout: SMALL_LAYOUT }) as never);
  });
}

describe('BlockSparse layer arguments', () => {
  beforeAll(async () => { await tf.setBackend('cpu'); });
  it('names the argument, the expectation and what it received', () => {
    expect(blockSparse({ numHeads: 2 }).layout).toEqual({ blockSize: 64, localBlocks: 4, globalBlocks: 1, stride: 0 });
    expect(() => blockSparse({ numHeads: 2, layout: { blockSize: 0 } }))
      .toThrow(/BlockSparse layout: option 'blockSize' must be an integer ≥ 1; received 0/);
    expect(() => blockSparse({ numHeads: 2, layout: { blocks: 4 } as never }))
      .toThrow(/BlockSparse layout: unknown option 'blocks'; the options are 'blockSize', 'localBlocks', 'globalBlocks', 'stride'/);
    expect(() => blockSparse({ numHeads: 2, layout: 64 as never }))
      .toThrow(/BlockSparse: argument 'layout' must be an object \{ blockSize, localBlocks, globalBlocks, stride \}; received 64/);
    expect(() => blockSparse({ numHeads: 4, numKvHeads: 3 })).toThrow(/numHeads = 4 must be a multiple of numKvHeads = 3/);
  });
});

describeOn('webgpu', 'BlockSparse tile plans', () => {
  it('are uploaded once a (length, layout): a second forward and gradient upload nothing', async () => {
    // a length and layout no other test runs, so that the first call makes their plans
    const layout = { blockSize: 8, localBlocks: 3, globalBlocks: 2, stride: 5, implementation: 'webgpu' as const };
    const [q, k, v, dy] = [1, 2, 3, 4].map((seed) => tf.tensor4d(seededUniform(seed, 88 * 2 * 8), [1, 88, 2, 8]));
    // a given output gradient: tfjs's own seed of ones would be an upload of its own
    const pass = async () => {
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => blockSparseAttention(
        a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, layout))([q!, k!, v!], dy);
      await Promise.all(grads.map((g) => g.data()));
      tf.dispose(grads);
    };
    const given = [q!, k!, v!, dy!];
    // the query tiles' plan (forward and dQ) and the key tiles' (dK/dV)
    expect(await uploadsDuring(pass, given)).toBe(2);
    expect(await uploadsDuring(pass, given)).toBe(0);
    tf.dispose(given);
  });
});

describeOn('webgpu', 'BlockSparse decode step lists', () => {
  it('the step kernel\'s lists are the counts, then visibleKeys of each row\'s position as rows of the cache, zeros after, for any layout', async () => {
    await fc.assert(fc.asyncProperty(
      // up to 70 rows: a workgroup of 64 and part of a second
      fc.record({ positions: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 70 }),
        layout: fc.record({ blockSize: fc.integer({ min: 1, max: 16 }), localBlocks: fc.integer({ min: 1, max: 4 }),
          globalBlocks: fc.integer({ min: 0, max: 2 }), stride: fc.constantFrom(0, 1, 2, 5) }) }),
      async ({ positions, layout }) => {
        const lists = positions.map((t) => Array.from(visibleKeys(t, layout)));
        const M = Math.max(...lists.map((l) => l.length));
        // a cache of S slots a row: row b's key j is its row b·S + j
        const S = Math.max(...positions) + 3;
        const given = tf.tensor1d(positions, 'int32');
        const listed = stepKeysKernel(given, layout, M, S);
        expect(Array.from(await listed.data())).toEqual([
          ...lists.map((l) => l.length),
          ...lists.flatMap((l, b) => [...l.map((j) => b * S + j), ...new Array<number>(M - l.length).fill(0)]),
        ]);
        tf.dispose([given, listed]);
      }), { numRuns: 40 });
  });

  it('the cache mask kernel shows query t = offset + i the keys of its active blocks up to its own, for any layout', async () => {
    await fc.assert(fc.asyncProperty(
      fc.record({ offsets: fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 3 }), Tq: fc.integer({ min: 1, max: 5 }),
        extra: fc.integer({ min: 0, max: 4 }), layout: fc.record({ blockSize: fc.integer({ min: 1, max: 6 }), localBlocks: fc.integer({ min: 1, max: 3 }),
          globalBlocks: fc.integer({ min: 0, max: 2 }), stride: fc.constantFrom(0, 1, 2, 3) }) }),
      async ({ offsets, Tq, extra, layout }) => {
        const S = Math.max(...offsets) + Tq + extra;
        const given = tf.tensor1d(offsets, 'int32');
        const mask = cacheMaskKernel(given, Tq, S, layout);
        const want = offsets.flatMap((o) => Array.from({ length: Tq }, (_, i) => Array.from({ length: S }, (_, j) => {
          const [I, J] = [Math.floor((o + i) / layout.blockSize), Math.floor(j / layout.blockSize)];
          return J <= I && blockActive(I, J, layout) ? 1 : 0;
        })).flat());
        expect(Array.from(await mask.data())).toEqual(want);
        tf.dispose([given, mask]);
      }), { numRuns: 40 });
  });

  it('a step over lists longer than a chunk of the split-K decode (its merge) matches the reference\'s gathered step', async () => {
    await expectLongListStep(['FlashAttentionSplitK8', 'FlashAttentionMergeK8']);
    // and with a workgroup folding each chunk, as on a GPU without subgroups: its 64 lanes' chunk
    // holds every listed key, each lane folding some of them, and the row is finished without a merge
    tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'workgroup');
    try {
      await expectLongListStep(['FlashAttentionSplitWorkgroupK8']);
    } finally {
      tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
    }
  });

  it('a layer\'s step over its cache forms them there, uploading nothing', async () => {
    const layer = blockSparse({ numHeads: 2, layout: { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 3 } });
    tf.dispose(layer.apply(tf.zeros([1, 1, 8])) as tf.Tensor);
    const state = layer.initState(2, { capacity: 16 });
    const x = tf.ones([2, 8]) as tf.Tensor2D;
    // past position 0, whose step is the layer's forward over the token alone
    for (let s = 0; s < 5; s++) tf.dispose(layer.step(x, state)[0]);
    const { ran, uploads } = await recordedStep(() => layer.step(x, state));
    expect(uploads).toBe(0);
    // the q, k, v projections, the cache write, the lists, the attention reading the listed keys
    // where they lie (no gathers), the output projection
    expect(ran).toEqual(['DenseGroups', expect.stringMatching(/^KVCacheWrite/), 'BlockSparseStepKeys',
      expect.stringMatching(/^FlashAttentionSplit/), expect.stringMatching(/^Dense/)]);
    tf.dispose([x, state]);
    layer.dispose();
  });
});

describeOnSubgroups('BlockSparse decode step lists', () => {
  it('a step over lists longer than a chunk, a subgroup folding each, matches the reference\'s gathered step', async () => {
    await expectLongListStep(['FlashAttentionSplitSubgroupsK8', 'FlashAttentionMergeK8']);
  });
});

/**
 * One decode step of a BlockSparse layer on the kernels, against the same layer on the reference
 * (which gathers the listed keys), at positions whose lists pass two of SwiftShader's chunks of
 * 128 keys, so that the split-K decode reading the lists where they lie takes three chunks and
 * its merge where its chunks are SwiftShader's; `attention` names the launches the step's
 * attention must take.
 */
async function expectLongListStep(attention: string[]): Promise<void> {
  // blocks of 64, 4 local and 1 global: the global block, three local ones and the diagonal's
  // keys up to the position, blocks between them skipped
  const args = { numHeads: 4, numKvHeads: 2, headDim: 8, layout: { blockSize: 64, localBlocks: 4, globalBlocks: 1 } };
  const kernel = blockSparse({ ...args, implementation: 'webgpu' });
  const reference = blockSparse({ ...args, implementation: 'reference' });
  const D = 16;
  const prompt = tf.tensor3d(seededUniform(7, 2 * 400 * D, -2, 2), [2, 400, D]);
  tf.dispose([kernel.apply(prompt), reference.apply(prompt)] as tf.Tensor[]);
  reference.setWeights(kernel.getWeights());
  // rows at positions 400 and 330
  expect([400, 330].map((t) => visibleKeyCount(t, kernel.layout))).toEqual([64 + 192 + 17, 64 + 192 + 11]);
  const outs: number[][] = [];
  for (const layer of [kernel, reference]) {
    const [yPrompt, state] = layer.prefill(prompt, layer.initState(2, { capacity: 448 }), { lengths: [400, 330] });
    const token = tf.tensor2d(seededUniform(8, 2 * D, -2, 2), [2, D]);
    const ran = await launchedPipelines(async () => {
      const [y] = layer.step(token, state);
      outs.push(Array.from(await y.data()));
      y.dispose();
    });
    if (layer === kernel) expect(ran.filter((label) => label.startsWith('FlashAttention'))).toEqual(attention);
    tf.dispose([yPrompt, token, state]);
  }
  // as in the step-decoding property above: one softmax over the same keys, whose projections
  // (kernel and reference) may round differently by a few ulps, which the attention and Wo pass on
  expect(maxAbsDiff(outs[0]!, outs[1]!)).toBeLessThanOrEqual(64 * EPS32 * Math.max(1, maxAbs(outs[1]!)) * D);
  tf.dispose(prompt);
  kernel.dispose();
  reference.dispose();
}
