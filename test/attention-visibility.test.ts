// MIXERS.md §7 on the attention ops: window, kvLengths, queryOffsets, segmentIds and mask, alone
// and combined, against the float64 oracle with the same visibility (reference on cpu and wasm,
// kernel on webgpu), forward and gradients; rows with no visible key; non-finite invisible keys
// and values; the options against the dense mask they stand for; packed segments against each
// sequence run alone; and the checks of the options themselves.
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { ops, type Implementation } from '../src/index.js';
import { withReferenceTiling } from '../src/attention/reference.js';
import {
  blockSparseMask, expressiveAttentionGradOracle, expressiveAttentionOracle, softmaxAttentionGradOracle,
  softmaxAttentionOracle, visibleMaskPerRow, type AttentionShape, type MaskFn, type OracleVisibility,
} from './oracle/attention.js';
import {
  EPS32, REFERENCE_BACKENDS, describeOn, describeOnSubgroups, expectNoLeaks, expectWithinDerivedTolerance, maxAbs, maxAbsDiff,
  mulberry32, seededUniform, values,
} from './helpers.js';

type OpName = 'flashAttention' | 'expressiveAttention' | 'blockSparseAttention';
const OP_NAMES: OpName[] = ['flashAttention', 'expressiveAttention', 'blockSparseAttention'];
type OptionName = 'window' | 'kvLengths' | 'queryOffsets' | 'segmentIds' | 'mask';
/** The options each op takes; BlockSparse takes neither a window nor query offsets. */
const OPTIONS_OF: Record<OpName, OptionName[]> = {
  flashAttention: ['window', 'kvLengths', 'queryOffsets', 'segmentIds', 'mask'],
  expressiveAttention: ['window', 'kvLengths', 'queryOffsets', 'segmentIds', 'mask'],
  blockSparseAttention: ['kvLengths', 'segmentIds', 'mask'],
};
/**
 * ExpressiveAttention's ε: a large one keeps s² / (ε + Σ s²) well-conditioned, so that the
 * plain γ_n bound below holds for it as for softmax.
 */
const EPSILON = 1;

type Layout = { blockSize: number; localBlocks: number; globalBlocks: number; stride: number };
type Case = {
  op: OpName; B: number; Tq: number; Tk: number; heads: readonly number[]; K: number; causal: boolean;
  scale: number; seed: number; layout: Layout; given: OptionName[]; window: number;
  maskKind: 'key' | 'full' | 'broadcast'; maskDtype: 'bool' | 'int32' | 'float32'; lengthsAsArray: boolean;
  /** The chunked reference's tiles when checked against the oracle: small, so that many tiles meet. */
  tiling: { chunk: number; keptScores: number };
};

const layouts = fc.record({
  blockSize: fc.integer({ min: 1, max: 4 }), localBlocks: fc.integer({ min: 1, max: 3 }),
  globalBlocks: fc.integer({ min: 0, max: 1 }), stride: fc.integer({ min: 0, max: 3 }),
});

/** Random shapes (GQA, Tq ≠ Tk) and options for `op`, each option given when `given` lists it. */
function cases(op: OpName, given: fc.Arbitrary<OptionName[]>): fc.Arbitrary<Case> {
  const self = op === 'blockSparseAttention';
  return fc.record({
    op: fc.constant(op),
    B: fc.integer({ min: 1, max: 2 }),
    Tq: fc.integer({ min: 1, max: 24 }),
    Tk: fc.integer({ min: 1, max: 24 }),
    heads: fc.constantFrom([1, 1], [2, 1], [4, 2], [3, 3]),
    K: fc.constantFrom(3, 4, 8),
    causal: self ? fc.constant(true) : fc.boolean(),
    scale: fc.double({ min: 0.2, max: 1, noNaN: true }),
    seed: fc.integer({ min: 0, max: 2 ** 30 }),
    layout: layouts,
    given,
    window: fc.integer({ min: 1, max: 8 }),
    maskKind: fc.constantFrom('key' as const, 'full' as const, 'broadcast' as const),
    maskDtype: fc.constantFrom('bool' as const, 'int32' as const, 'float32' as const),
    lengthsAsArray: fc.boolean(),
    tiling: fc.record({ chunk: fc.integer({ min: 1, max: 8 }), keptScores: fc.constantFrom(0, 1 << 20) }),
  }).map((c) => (self ? { ...c, Tk: c.Tq } : c));
}

const alone = (op: OpName) => fc.constantFrom(...OPTIONS_OF[op].map((o) => [o]));
const combined = (op: OpName) => fc.subarray(OPTIONS_OF[op], { minLength: 2 });

const shapeOf = (c: Case): AttentionShape => ({ B: c.B, Tq: c.Tq, Tk: c.Tk, H: c.heads[0]!, Hkv: c.heads[1]!, K: c.K });

/** A case's visibility for the oracle, with the mask's values and shape for the op. */
type CaseVisibility = OracleVisibility & { maskValues?: Float32Array; maskShape?: [number, number, number] };

/**
 * The visibility values of a case, drawn from its seed: lengths in 0..Tk (0 now and then, a row
 * with no key), offsets in 0..Tk + 2, segment ids in runs (packed sequences) or scattered, and
 * a mask with about a fifth of its entries invisible.
 */
function visibilityOf(c: Case): CaseVisibility {
  const r = mulberry32(c.seed + 11);
  const int = (n: number) => Math.floor(r() * n);
  const out: CaseVisibility = {};
  const { B, Tq, Tk } = c;
  if (c.given.includes('window')) out.window = c.window;
  if (c.given.includes('kvLengths')) out.kvLengths = Array.from({ length: B }, () => (r() < 0.15 ? 0 : int(Tk + 1)));
  if (c.given.includes('queryOffsets')) out.queryOffsets = Array.from({ length: B }, () => int(Tk + 3));
  if (c.given.includes('segmentIds')) {
    const ids = (T: number) => {
      const runs = r() < 0.7;
      let id = int(3);
      return Array.from({ length: T }, () => (runs ? (r() < 0.2 ? ++id : id) : int(3)));
    };
    const query = Array.from({ length: B }, () => ids(Tq));
    // one tensor serves both sides when Tq = Tk (and for BlockSparse, always)
    out.segmentIds = { query, key: Tq === Tk ? query : Array.from({ length: B }, () => ids(Tk)) };
  }
  if (c.given.includes('mask')) {
    const shape: [number, number, number] = c.maskKind === 'key' ? [B, 1, Tk] : c.maskKind === 'full' ? [B, Tq, Tk] : [1, Tq, Tk];
    const m = Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, () => (r() < 0.2 ? 0 : c.maskDtype === 'float32' ? 0.5 + r() : 1));
    out.maskValues = m;
    out.maskShape = shape;
    out.attentionMask = (b, i, j) => m[((shape[0] === 1 ? 0 : b) * shape[1] + (shape[1] === 1 ? 0 : i)) * Tk + j] !== 0;
  }
  return out;
}

/** The op's visibility options for a case, as tensors (to dispose) or number[]. */
function opOptions(c: Case, vis: CaseVisibility): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (vis.window !== undefined) o.window = vis.window;
  if (vis.kvLengths) o.kvLengths = c.lengthsAsArray ? [...vis.kvLengths] : tf.tensor1d([...vis.kvLengths], 'int32');
  if (vis.queryOffsets) o.queryOffsets = c.lengthsAsArray ? [...vis.queryOffsets] : tf.tensor1d([...vis.queryOffsets], 'int32');
  if (vis.segmentIds) {
    const query = tf.tensor2d(vis.segmentIds.query.map((row) => [...row]), [c.B, c.Tq], 'int32');
    o.segmentIds = vis.segmentIds.query === vis.segmentIds.key
      ? query : { query, key: tf.tensor2d(vis.segmentIds.key.map((row) => [...row]), [c.B, c.Tk], 'int32') };
  }
  if (vis.maskValues) o.mask = tf.tensor3d(vis.maskValues, vis.maskShape!).cast(c.maskDtype);
  return o;
}

const layoutMask = (c: Case): MaskFn | undefined =>
  (c.op === 'blockSparseAttention' ? blockSparseMask({ T: c.Tq, ...c.layout }) : undefined);

/** The oracle's o, dq, dk, dv for a case with visibility `vis`. */
function oracle(c: Case, vis: OracleVisibility, x: Inputs): Float64Array[] {
  const s = shapeOf(c);
  const opts = { causal: c.causal, scale: c.scale, mask: layoutMask(c), ...vis };
  if (c.op === 'expressiveAttention') {
    const g = expressiveAttentionGradOracle(x.qs, x.ks, x.vs, x.dOs, s, { ...opts, epsilon: EPSILON });
    return [expressiveAttentionOracle(x.qs, x.ks, x.vs, s, { ...opts, epsilon: EPSILON }).o, g.dq, g.dk, g.dv];
  }
  const g = softmaxAttentionGradOracle(x.qs, x.ks, x.vs, x.dOs, s, opts);
  return [softmaxAttentionOracle(x.qs, x.ks, x.vs, s, opts).o, g.dq, g.dk, g.dv];
}

type Inputs = { qs: Float32Array; ks: Float32Array; vs: Float32Array; dOs: Float32Array };
function inputsOf(c: Case): Inputs {
  const s = shapeOf(c);
  return {
    qs: seededUniform(c.seed, s.B * s.Tq * s.H * s.K),
    ks: seededUniform(c.seed + 1, s.B * s.Tk * s.Hkv * s.K),
    vs: seededUniform(c.seed + 2, s.B * s.Tk * s.Hkv * s.K),
    dOs: seededUniform(c.seed + 3, s.B * s.Tq * s.H * s.K),
  };
}

/** Calls op `name` with the case's own options and `extra`. */
function call(c: Case, name: OpName, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, extra: Record<string, unknown>): tf.Tensor4D {
  if (name === 'flashAttention') return ops.flashAttention(q, k, v, { causal: c.causal, scale: c.scale, ...extra });
  if (name === 'expressiveAttention') return ops.expressiveAttention(q, k, v, { causal: c.causal, scale: c.scale, epsilon: EPSILON, ...extra });
  return ops.blockSparseAttention(q, k, v, { ...c.layout, scale: c.scale, ...extra });
}

/** o, dq, dk, dv of op `name` on the inputs `x`, as float64 arrays; every tensor made is disposed. */
async function run(c: Case, name: OpName, x: Inputs, extra: Record<string, unknown>): Promise<Float64Array[]> {
  const s = shapeOf(c);
  const outs = tf.tidy(() => {
    const q = tf.tensor4d(x.qs, [s.B, s.Tq, s.H, s.K]);
    const k = tf.tensor4d(x.ks, [s.B, s.Tk, s.Hkv, s.K]);
    const v = tf.tensor4d(x.vs, [s.B, s.Tk, s.Hkv, s.K]);
    const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => call(c, name, a as tf.Tensor4D, b as tf.Tensor4D, d as tf.Tensor4D, extra);
    return [f(q, k, v), ...tf.grads(f)([q, k, v], tf.tensor4d(x.dOs, [s.B, s.Tq, s.H, s.K]))];
  });
  const got = await Promise.all(outs.map(values));
  tf.dispose(outs);
  return got;
}

/** Runs the case's op with its options (made and disposed here) and `extra`. */
async function runWith(c: Case, x: Inputs, vis: CaseVisibility, extra: Record<string, unknown>): Promise<Float64Array[]> {
  const options = opOptions(c, vis);
  try {
    return await run(c, c.op, x, { ...options, ...extra });
  } finally {
    tf.dispose(tensorsIn(options));
  }
}

/** The tensors among an options object's values, one level deep ({ query, key } included). */
function tensorsIn(options: Record<string, unknown>): tf.Tensor[] {
  return Object.values(options).flatMap((o) => {
    if (o instanceof tf.Tensor) return [o];
    return o && typeof o === 'object' && !Array.isArray(o) ? Object.values(o) as tf.Tensor[] : [];
  });
}

const NAMES = ['o', 'dq', 'dk', 'dv'];

/**
 * The float32 worst case: every value is a chain of sums over K (scores), Tk (the weights and
 * their mix of values) and Tq (dK, dV), each within n·ε₃₂ of the magnitudes summed (γ_n); the
 * inputs are ≤ 1 and the weights sum to ≤ 1, so 4·(K + Tk + Tq)·ε₃₂ of the output's scale.
 */
const bound = (c: Case, want: Float64Array) => 4 * (c.K + c.Tk + c.Tq) * EPS32 * Math.max(1, maxAbs(want));

async function expectReferenceMatchesOracle(c: Case): Promise<void> {
  const x = inputsOf(c);
  const vis = visibilityOf(c);
  const got = await withReferenceTiling(c.tiling, () => runWith(c, x, vis, { implementation: 'reference' }));
  const wants = oracle(c, vis, x);
  for (let n = 0; n < 4; n++) {
    expect(maxAbsDiff(got[n]!, wants[n]!), `${c.op} ${c.given.join('+')} ${NAMES[n]}`).toBeLessThanOrEqual(bound(c, wants[n]!));
  }
}

for (const backend of REFERENCE_BACKENDS) {
  describeOn(backend, 'attention visibility (reference)', () => {
    for (const op of OP_NAMES) {
      for (const option of OPTIONS_OF[op]) {
        it(`${op}: ${option} alone matches the float64 oracle, forward and gradients`, async () => {
          await fc.assert(fc.asyncProperty(cases(op, fc.constant([option])), expectReferenceMatchesOracle), { numRuns: 5 });
        });
      }

      it(`${op}: options combined match the float64 oracle, forward and gradients`, async () => {
        await fc.assert(fc.asyncProperty(cases(op, combined(op)), expectReferenceMatchesOracle), { numRuns: 10 });
      });

      it(`${op}: tiles of 64 × 64 at K = 64 (wasm's products batch by batch) match the float64 oracle, options combined`, async () => {
        // several kv heads, so that the batches are several and any mix-up among them shows
        const large = cases(op, combined(op)).map((c) => ({
          ...c, Tq: 64 + 4 * c.Tq, Tk: op === 'blockSparseAttention' ? 64 + 4 * c.Tq : 64 + 4 * c.Tk, K: 64,
          heads: c.heads[1] === 1 ? [4, 2] : c.heads, tiling: { ...c.tiling, chunk: 64 },
        }));
        await fc.assert(fc.asyncProperty(large, expectReferenceMatchesOracle), { numRuns: 2 });
      });
    }
    sharedProperties('reference');
  });
}

describeOn('webgpu', 'attention visibility (kernels)', () => {
  for (const op of OP_NAMES) {
    const kernelMatchesOracle = async (c: Case) => {
      const x = inputsOf(c);
      const vis = visibilityOf(c);
      const kernel = await runWith(c, x, vis, { implementation: 'webgpu' });
      const reference = await runWith(c, x, vis, { implementation: 'reference' });
      const wants = oracle(c, vis, x);
      for (let n = 0; n < 4; n++) expectWithinDerivedTolerance(kernel[n]!, reference[n]!, wants[n]!, `${op} ${c.given.join('+')} ${NAMES[n]}`);
    };
    for (const option of OPTIONS_OF[op]) {
      it(`${op}: with ${option} alone, the kernel matches the oracle at least as well as the reference`, async () => {
        await fc.assert(fc.asyncProperty(cases(op, fc.constant([option])), kernelMatchesOracle), { numRuns: 3 });
      });
    }

    it(`${op}: with options combined, the kernel matches the oracle at least as well as the reference`, async () => {
      await fc.assert(fc.asyncProperty(cases(op, combined(op)), kernelMatchesOracle), { numRuns: 6 });
    });
  }

  for (const op of SPLIT_OPS) {
    it(`${op}: the split-K decode matches the oracle as well as the reference, with every option`, async () => {
      await splitMatchesOracle(op);
    });
  }

  it('the references run on webgpu too (no value is read back) and match the float64 oracle', async () => {
    for (const op of OP_NAMES) {
      await fc.assert(fc.asyncProperty(cases(op, combined(op)), expectReferenceMatchesOracle), { numRuns: 2 });
    }
  });

  sharedProperties('webgpu');
});

const SPLIT_OPS = ['flashAttention', 'expressiveAttention'] as const;

/**
 * The split-K decode (forced) against the oracle, with options combined: few queries, and more
 * keys than a chunk (128), so that a row's keys span chunks and, with subgroups, every lane of a
 * chunk has a tile, or none.
 */
async function splitMatchesOracle(op: (typeof SPLIT_OPS)[number]): Promise<void> {
  await fc.assert(fc.asyncProperty(cases(op, combined(op)), fc.integer({ min: 1, max: 4 }), async (c0, Tq) => {
    const c = { ...c0, Tq, Tk: c0.Tk + 140 };
    const x = inputsOf(c);
    const vis = visibilityOf(c);
    const split = await runWith(c, x, vis, { implementation: 'webgpu', split: 'always' });
    const reference = await runWith(c, x, vis, { implementation: 'reference' });
    const wants = oracle(c, vis, x);
    for (let n = 0; n < 4; n++) expectWithinDerivedTolerance(split[n]!, reference[n]!, wants[n]!, `split ${c.given.join('+')} ${NAMES[n]}`);
  }), { numRuns: 5 });
}

/** The properties that hold bit for bit, or nearly, for the reference and the kernels alike. */
function sharedProperties(implementation: Implementation): void {
  const impl = { implementation };
  // the kernels may visit the keys in other tiles than the dense-mask call: any summation order is valid
  const close = (c: Case, got: Float64Array, want: Float64Array, what: string) => {
    if (implementation === 'reference') expect(maxAbsDiff(got, want), what).toBe(0);
    else expect(maxAbsDiff(got, want), what).toBeLessThanOrEqual(bound(c, want));
  };

  for (const op of OP_NAMES) {
    it(`${op}: the options give what the dense mask they stand for gives`, async () => {
      await fc.assert(fc.asyncProperty(cases(op, fc.oneof(alone(op), combined(op))), async (c) => {
        const x = inputsOf(c);
        const vis = visibilityOf(c);
        const got = await runWith(c, x, vis, impl);
        // the whole visibility, causal and the block layout included, as one [B, Tq, Tk] mask
        const dense = visibleMaskPerRow(shapeOf(c), { causal: c.causal, mask: layoutMask(c), ...vis });
        const mask = tf.tensor3d(dense, [c.B, c.Tq, c.Tk], 'int32');
        const viaMask = op === 'expressiveAttention' ? 'expressiveAttention' : 'flashAttention';
        try {
          const want = await run(c, viaMask, x, { ...impl, causal: false, mask });
          for (let n = 0; n < 4; n++) close(c, got[n]!, want[n]!, `${op} ${c.given.join('+')} ${NAMES[n]}`);
        } finally {
          mask.dispose();
        }
      }), { numRuns: 6 });
    });

    it(`${op}: rows with no visible key output 0, with gradients 0`, async () => {
      await fc.assert(fc.asyncProperty(cases(op, fc.constant(['kvLengths', 'mask'] as OptionName[])), async (c0) => {
        // row 0 has no key at all; in row 1 (if any) the mask hides every key from query 0
        const c = { ...c0, maskKind: 'full' as const };
        const vis = visibilityOf(c);
        const kvLengths = [0, ...vis.kvLengths!.slice(1)];
        const maskValues = vis.maskValues!.map((m, n) => (n % (c.Tq * c.Tk) < c.Tk ? 0 : m));
        const s = shapeOf(c);
        const x = inputsOf(c);
        const [o, dq, dk, dv] = await runWith(c, x, { ...vis, kvLengths, maskValues }, impl);
        const inner = s.H * s.K;
        for (let b = 0; b < s.B; b++) {
          const rows = b === 0 ? s.Tq : 1;
          for (const [what, got] of [['o', o!], ['dq', dq!]] as const) {
            expect(maxAbs(got.subarray(b * s.Tq * inner, (b * s.Tq + rows) * inner)), `${op} ${what}, row ${b}`).toBe(0);
          }
        }
        const keys = s.Tk * s.Hkv * s.K;
        expect(maxAbs(dk!.subarray(0, keys)), `${op} dk, row 0`).toBe(0);
        expect(maxAbs(dv!.subarray(0, keys)), `${op} dv, row 0`).toBe(0);
      }), { numRuns: 5 });
    });

    it(`${op}: NaN and Inf in keys and values no query sees change nothing, forward and gradients`, async () => {
      await fc.assert(fc.asyncProperty(cases(op, fc.constant(['kvLengths'] as OptionName[])), fc.boolean(), async (c0, useMask) => {
        // a key padding mask (or kvLengths) hides the keys from j = L[b] on in every row
        const c = { ...c0, Tk: c0.Tk + 2, Tq: op === 'blockSparseAttention' ? c0.Tq + 2 : c0.Tq, maskKind: 'key' as const };
        const s = shapeOf(c);
        const lengths = Array.from({ length: s.B }, (_, b) => Math.min(s.Tk - 1, b + 1 + (c.seed % s.Tk)));
        const vis = useMask
          ? {
            maskValues: Float32Array.from({ length: s.B * s.Tk }, (_, n) => (n % s.Tk < lengths[Math.floor(n / s.Tk)]! ? 1 : 0)),
            maskShape: [s.B, 1, s.Tk] as [number, number, number],
          }
          : { kvLengths: lengths };
        const clean = inputsOf(c);
        const poisoned = { ...clean, ks: clean.ks.slice(), vs: clean.vs.slice() };
        const per = s.Hkv * s.K;
        for (let b = 0; b < s.B; b++) {
          for (let j = lengths[b]!; j < s.Tk; j++) {
            poisoned.ks.fill(j % 2 ? Number.NaN : Number.POSITIVE_INFINITY, (b * s.Tk + j) * per, (b * s.Tk + j + 1) * per);
            poisoned.vs.fill(j % 2 ? Number.NEGATIVE_INFINITY : Number.NaN, (b * s.Tk + j) * per, (b * s.Tk + j + 1) * per);
          }
        }
        const want = await runWith(c, clean, vis, impl);
        const got = await runWith(c, poisoned, vis, impl);
        for (let n = 0; n < 4; n++) {
          const diff = maxAbsDiff(got[n]!, want[n]!);
          expect(diff, `${op} ${useMask ? 'mask' : 'kvLengths'} ${NAMES[n]}`).toBe(0);
        }
      }), { numRuns: 5 });
    });

    it(`${op}: a NaN or Inf in one key and value changes only the outputs and dq of the queries that see it`, async () => {
      await fc.assert(fc.asyncProperty(cases(op, combined(op)), fc.nat(), fc.boolean(), async (c, at, nan) => {
        const s = shapeOf(c);
        const vis = visibilityOf(c);
        const visible = visibleMaskPerRow(s, { causal: c.causal, mask: layoutMask(c), ...vis });
        const [b0, j0] = [at % s.B, at % s.Tk];
        const clean = inputsOf(c);
        const poisoned = { ...clean, ks: clean.ks.slice(), vs: clean.vs.slice() };
        const per = s.Hkv * s.K;
        poisoned.ks.fill(nan ? Number.NaN : Number.POSITIVE_INFINITY, (b0 * s.Tk + j0) * per, (b0 * s.Tk + j0 + 1) * per);
        poisoned.vs.fill(nan ? Number.NEGATIVE_INFINITY : Number.NaN, (b0 * s.Tk + j0) * per, (b0 * s.Tk + j0 + 1) * per);
        const want = await runWith(c, clean, vis, impl);
        const got = await runWith(c, poisoned, vis, impl);
        const inner = s.H * s.K;
        for (let b = 0; b < s.B; b++) {
          for (let i = 0; i < s.Tq; i++) {
            if (b === b0 && visible[(b * s.Tq + i) * s.Tk + j0]) continue;
            for (const n of [0, 1]) {
              const row = (b * s.Tq + i) * inner;
              expect(maxAbsDiff(got[n]!.subarray(row, row + inner), want[n]!.subarray(row, row + inner)),
                `${op} ${c.given.join('+')} ${NAMES[n]}, row ${b}, query ${i}, key ${j0} of row ${b0} poisoned`).toBe(0);
            }
          }
        }
      }), { numRuns: 6 });
    });

    it(`${op}: packed segments give what each sequence gives alone, forward and gradients`, async () => {
      const packing = fc.record({ lengths: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 3 }), seed: fc.nat() });
      await fc.assert(fc.asyncProperty(cases(op, fc.constant([] as OptionName[])), packing, async (c0, p) => {
        const T = p.lengths.reduce((a, b) => a + b, 0);
        // causal self-attention; BlockSparse with a window covering every block, so its layout is causal
        const c: Case = { ...c0, B: 1, Tq: T, Tk: T, causal: true, layout: { ...c0.layout, localBlocks: T } };
        const ids = p.lengths.flatMap((n, id) => Array<number>(n).fill(id + (p.seed % 5)));
        const x = inputsOf(c);
        const packed = await runWith(c, x, { segmentIds: { query: [ids], key: [ids] } }, impl);
        const s = shapeOf(c);
        let start = 0;
        for (const n of p.lengths) {
          const alone: Case = { ...c, Tq: n, Tk: n };
          const q = s.H * s.K;
          const kv = s.Hkv * s.K;
          const part: Inputs = {
            qs: x.qs.slice(start * q, (start + n) * q), ks: x.ks.slice(start * kv, (start + n) * kv),
            vs: x.vs.slice(start * kv, (start + n) * kv), dOs: x.dOs.slice(start * q, (start + n) * q),
          };
          const want = await run(alone, op, part, impl);
          const sizes = [q, q, kv, kv];
          for (let m = 0; m < 4; m++) {
            const got = packed[m]!.subarray(start * sizes[m]!, (start + n) * sizes[m]!);
            expect(maxAbsDiff(got, want[m]!), `${op} segment at ${start}, ${NAMES[m]}`).toBeLessThanOrEqual(bound(alone, want[m]!));
          }
          start += n;
        }
      }), { numRuns: 4 });
    });

    it(`${op}: leaves no tensor behind with every option, forward and gradients`, async () => {
      const c: Case = {
        op, B: 2, Tq: 6, Tk: 6, heads: [2, 1], K: 4, causal: true, scale: 0.5, seed: 3,
        layout: { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 0 }, given: OPTIONS_OF[op], window: 3,
        maskKind: 'key', maskDtype: 'float32', lengthsAsArray: true, tiling: { chunk: 2, keptScores: 1 << 20 },
      };
      const x = inputsOf(c);
      const vis = visibilityOf(c);
      const options = opOptions(c, vis);
      // many small tiles (and their kept scores), so that every tile's tensors are seen freed
      await expectNoLeaks(async () => {
        const got = await withReferenceTiling(c.tiling, () => run(c, op, x, { ...options, ...impl }));
        expect(got).toHaveLength(4);
      });
      tf.dispose(tensorsIn(options));
    });
  }
}

describeOn('cpu', 'attention visibility: option checks', () => {
  const q = () => tf.zeros([2, 3, 2, 4]) as tf.Tensor4D;
  const kv = (T = 3) => tf.zeros([2, T, 1, 4]) as tf.Tensor4D;
  const flash = (options: Record<string, unknown>, Tk = 3) => () => ops.flashAttention(q(), kv(Tk), kv(Tk), options);
  const expressive = (options: Record<string, unknown>) => () => ops.expressiveAttention(q(), kv(), kv(), options);
  const sparse = (options: Record<string, unknown>) => () => ops.blockSparseAttention(q(), kv(), kv(), options);

  it('rejects bad values, naming the op, the option, the expectation and what it received', () => {
    tf.tidy(() => {
      for (const call of [flash, expressive]) {
        expect(call({ window: 0 })).toThrow(/Attention: option 'window' must be a positive integer; received 0/);
        expect(call({ window: 1.5 })).toThrow(/'window'.*1\.5/);
        expect(call({ causal: 'yes' })).toThrow(/'causal'/);
        expect(call({ kvLengths: [1, 4] })).toThrow(/'kvLengths' must hold B = 2 integers in 0\.\.3.*4/);
        expect(call({ kvLengths: [-1, 2] })).toThrow(/'kvLengths'.*-1/);
        expect(call({ kvLengths: [1] })).toThrow(/'kvLengths' must hold B = 2/);
        expect(call({ kvLengths: [1.5, 2] })).toThrow(/'kvLengths'.*integers/);
        expect(call({ queryOffsets: [0, -2] })).toThrow(/'queryOffsets' must hold B = 2 integers ≥ 0/);
        expect(call({ unknown: 1 })).toThrow(/unknown option 'unknown'/);
      }
    });
  });

  it('rejects tensors of the wrong shape or dtype', () => {
    tf.tidy(() => {
      expect(flash({ kvLengths: tf.tensor1d([1, 2]) })).toThrow(/flashAttention.*'kvLengths' must be an int32 tensor \[B\] = \[2\].*float32/);
      expect(flash({ kvLengths: tf.tensor1d([1, 2, 3], 'int32') })).toThrow(/'kvLengths'.*\[3\]/);
      expect(flash({ queryOffsets: tf.tensor2d([[1, 2]], [1, 2], 'int32') })).toThrow(/'queryOffsets' must be an int32 tensor/);
      expect(flash({ segmentIds: tf.zeros([2, 3]) })).toThrow(/'segmentIds' must be an int32 tensor \[B, T\] = \[2, 3\].*float32/);
      expect(flash({ segmentIds: tf.zeros([2, 4], 'int32') })).toThrow(/'segmentIds'.*\[2, 4\]/);
      expect(flash({ segmentIds: tf.zeros([2, 3], 'int32') }, 5))
        .toThrow(/'segmentIds' must be \{ query: \[B, Tq\], key: \[B, Tk\] \} when Tq = 3 ≠ Tk = 5/);
      expect(flash({ segmentIds: { query: tf.zeros([2, 3], 'int32'), key: tf.zeros([2, 3], 'int32') } }, 5))
        .toThrow(/'segmentIds\.key' must be an int32 tensor \[B, Tk\] = \[2, 5\]/);
      expect(flash({ segmentIds: [[0, 0, 0]] })).toThrow(/'segmentIds' must be an int32 tensor \[B, T\] or \{ query, key \}; received/);
      expect(expressive({ mask: tf.ones([2, 3]) }))
        .toThrow(/expressiveAttention.*'mask' must be a bool, int32 or float32 tensor \[B\|1, Tq\|1, Tk\]/);
      expect(expressive({ mask: tf.ones([3, 3, 3]) })).toThrow(/'mask'.*\[3, 3, 3\]/);
      expect(expressive({ mask: tf.ones([2, 3, 4]) })).toThrow(/'mask'/);
      expect(sparse({ mask: tf.ones([2, 2, 3]) })).toThrow(/blockSparseAttention.*'mask'/);
    });
  });

  it('blockSparseAttention takes no window, no queryOffsets and no causal: false', () => {
    tf.tidy(() => {
      expect(sparse({ window: 2 })).toThrow(/blockSparseAttention.*'window'/);
      expect(sparse({ queryOffsets: [0, 0] })).toThrow(/blockSparseAttention.*'queryOffsets'/);
      expect(sparse({ causal: false })).toThrow(/blockSparseAttention.*'causal' must be true/);
    });
  });

  it('a rejected call leaves no tensor behind, even after an option it had already converted', async () => {
    const [a, b, mask] = [q(), kv(), tf.ones([1])];
    await expectNoLeaks(() => {
      expect(() => ops.flashAttention(a, b, b, { kvLengths: [1, 2], queryOffsets: [0, 1], mask })).toThrow(/'mask'/);
    });
    tf.dispose([a, b, mask]);
  });

  it('empty inputs still give empty or zero outputs with the options, leaving no tensor behind', async () => {
    const [a, empty, ids] = [q(), kv(0), tf.zeros([0, 3], 'int32') as tf.Tensor2D];
    const [none, noneKv] = [tf.zeros([0, 3, 2, 4]) as tf.Tensor4D, tf.zeros([0, 3, 1, 4]) as tf.Tensor4D];
    await expectNoLeaks(async () => {
      // kvLengths as number[] is converted to a tensor, which the empty path must dispose too
      const o = ops.flashAttention(a, empty, empty, { kvLengths: [0, 0], window: 2 });
      expect(o.shape).toEqual([2, 3, 2, 4]);
      expect(maxAbs(await o.data())).toBe(0);
      const e = ops.expressiveAttention(none, noneKv, noneKv, { segmentIds: ids, kvLengths: [] });
      expect(e.shape).toEqual([0, 3, 2, 4]);
      tf.dispose([o, e]);
    });
    tf.dispose([a, empty, none, noneKv, ids]);
  });
});

describeOnSubgroups('attention visibility: the split-K decode', (pipelines) => {
  for (const op of SPLIT_OPS) {
    it(`${op}: a subgroup per chunk (and per row of the gradient's delta) matches the oracle as well as the reference, with every option`, async () => {
      await splitMatchesOracle(op);
      for (const kernel of ['SplitSubgroups', 'AttentionDeltaSubgroups']) {
        expect(pipelines.some((label) => label.includes(kernel))).toBe(true);
      }
    });
  }
});

describeOn('webgpu', 'attention visibility: kernel calls outside a tidy', () => {
  it('leave only their output behind, forward and gradient, with int inputs (their packed buffer is freed)', async () => {
    const q = tf.randomNormal([1, 5, 2, 4]) as tf.Tensor4D;
    const kv = tf.randomNormal([1, 5, 1, 4]) as tf.Tensor4D;
    const ids = tf.tensor2d([[0, 0, 1, 1, 1]], undefined, 'int32');
    const options = { kvLengths: [4], segmentIds: ids, implementation: 'webgpu' as const };
    for (const op of [ops.flashAttention, ops.expressiveAttention, ops.blockSparseAttention]) {
      const before = tf.memory().numTensors;
      const o = op(q, kv, kv, options);
      // o alone: the row statistics and the packed visibility were freed
      expect(tf.memory().numTensors).toBe(before + 1);
      o.dispose();
      await expectNoLeaks(async () => {
        const dq = tf.grad((x: tf.Tensor) => tf.sum(op(x as tf.Tensor4D, kv, kv, options)))(q);
        expect(Number.isFinite(maxAbs(await dq.data()))).toBe(true);
        dq.dispose();
      });
    }
    tf.dispose([q, kv, ids]);
  });
});
