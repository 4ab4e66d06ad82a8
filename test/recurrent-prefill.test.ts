import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { averageContext } from '../src/mixers/average-context/layer.js';
import { causalGeneration } from '../src/mixers/causal-generation/layer.js';
import { selectiveSSM } from '../src/mixers/selective-ssm/layer.js';
import type { PrefillOptions } from '../src/layers/prefill.js';
import * as ops from '../src/mixers/average-context/op.js';
import { averageContextPrefill, type Combine } from '../src/mixers/average-context/op.js';
import { SCAN_FLAG } from '../src/mixers/average-context/kernel.js';
import type { Implementation } from '../src/validate.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, describeScans, expectNoLeaks, expectWithinDerivedTolerance, maxAbs, maxAbsDiff, mulberry32, seededUniform, values } from './helpers.js';

/**
 * Prefill of the three recurrent mixers (issue 14): `prefill(x, state?, {lengths})` runs a
 * right-padded prompt in parallel and must leave the state that stepping each row's real tokens
 * one by one leaves, with the same outputs at the real positions; a later step continues every
 * row from its own position. The expectation is the layer's `step`, run on each row alone (a
 * batch of 1), which shares no code with the parallel path beyond the weights.
 */

type State = Record<string, tf.Tensor>;

interface Recurrent extends tf.layers.Layer {
  initState(batch: number): State;
  step(x: tf.Tensor2D, state: State): [tf.Tensor2D, State];
  prefill(x: tf.Tensor3D, state?: State, options?: PrefillOptions): [tf.Tensor3D, State];
}

/** What a case knows to derive its tolerances. */
interface Sizes {
  /** Tokens summed into the compared quantity: those before the prompt and the prompt's. */
  tokens: number;
  D: number;
  /** max |x| over every token. */
  maxX: number;
  /** max over rows and channels of Σ |x| over the tokens a row has consumed. */
  maxAbsSum: number;
}

interface Subject {
  name: string;
  /** Widths to draw from: a multiple of 4 (the kernels' vec4 variant) and not. */
  widths: number[];
  /** The layer, in one of its variants (`pick` modulo their number). */
  make(pick: number): Recurrent;
  /**
   * The largest |prefill − stepped| allowed for the output `y` and each float state field, or
   * `0` where both paths must agree exactly.
   */
  bounds(layer: Recurrent, s: Sizes): Promise<Record<string, number>>;
  /** Its prefill runs the scan family, whose untaped forward walks or runs the chunks (SCAN_FLAG). */
  scans?: boolean;
}

/** The projection's largest column sum Σ_d |W[d, j]|: how much it can spread one input's error. */
async function columnSum(layer: Recurrent): Promise<number> {
  const W = layer.getWeights()[0]!;
  return maxAbs(await values(tf.tidy(() => tf.abs(W).sum(0))));
}

const subjects: Subject[] = [
  {
    name: 'CausalGeneration',
    widths: [5, 8],
    make: (pick) => causalGeneration({ reduce: (['mean', 'min', 'max'] as const)[pick % 3] }) as unknown as Recurrent,
    // R(x[t], x[t−1]) rounds once, alike on both paths, and the state's previous token is a copy:
    // only the projection's D + 1 terms may be summed in another order, on each path, each term's
    // error spread by at most the column sum
    bounds: async (layer, s) => ({
      y: 2 * (s.D + 1) * EPS32 * Math.max(1, s.maxX) * (await columnSum(layer)),
      previous: 0,
    }),
  },
  {
    name: 'AverageContext',
    widths: [5, 8],
    make: (pick) => averageContext({ combine: (['mean', 'max', 'min'] as const)[pick % 3] }) as unknown as Recurrent,
    // the running sum adds `tokens` terms in another order on each path (γ_n·Σ|x| each), the
    // mean divides once and the combine rounds twice; then the projection's D + 1 terms, each
    // spread by at most the column sum (as the step-vs-forward test of test/mixer-properties.ts)
    bounds: async (layer, s) => ({
      y: 2 * ((s.tokens + 4) * Math.max(1, s.maxAbsSum / Math.max(1, s.tokens)) + (s.D + 1) * Math.max(1, s.maxX))
        * EPS32 * (await columnSum(layer)),
      previous: 0,
      sum: 2 * s.tokens * EPS32 * Math.max(1, s.maxAbsSum),
    }),
  },
  {
    name: 'SelectiveSSM',
    scans: true,
    widths: [8, 12],
    // dConv 1 has an empty window, 2 a window of one token
    make: (pick) => selectiveSSM({ stateSize: 4, convKernel: [4, 1, 2][pick % 3] }) as unknown as Recurrent,
    // test/selective-ssm-layer.test.ts bounds the forward's error against the float64 block by
    // n·ε·max(1, max|value|), with n its chain of float32 sums (D inProj, dConv conv, E and R
    // the scan's inputs, `tokens` the state, N its read-out, E outProj), and the decode's by
    // twice that plus n: the prefill is the forward's computation, so the two differ by at most 4n
    bounds: async (layer, s) => {
      const ssm = layer as unknown as { expand: number; stateSize: number; convKernel: number };
      const E = ssm.expand * s.D;
      const n = s.D + ssm.convKernel + E + Math.ceil(s.D / 16) + s.tokens + ssm.stateSize + E;
      return { y: 4 * n, conv: 4 * n, ssm: 4 * n };
    },
  },
];

/** Scales a SelectiveSSM bound (in units of ε·max(1, max|value|)) by the compared values. */
const scaled = (name: string, bound: number, want: ArrayLike<number>) =>
  name === 'SelectiveSSM' ? bound * EPS32 * Math.max(1, maxAbs(want)) : bound;

/** A built layer of width D. */
function built(subject: Subject, D: number, pick = 0): Recurrent {
  const layer = subject.make(pick);
  tf.dispose(layer.apply(tf.zeros([1, 1, D])) as tf.Tensor);
  return layer;
}

/** Row b of a `[B, ...]` tensor's values. */
function row(all: Float64Array, B: number, b: number): Float64Array {
  const n = all.length / B;
  return all.slice(b * n, (b + 1) * n);
}

interface Stepped {
  /** Per segment, the outputs of its tokens, `[n, D]` flattened. */
  outputs: Float64Array[];
  /** Per segment, the state after it: every field's values. */
  states: Record<string, Float64Array>[];
}

async function stateValues(state: State): Promise<Record<string, Float64Array>> {
  const out: Record<string, Float64Array> = {};
  for (const [k, t] of Object.entries(state)) out[k] = await values(t);
  return out;
}

/**
 * Steps one row alone (a batch of 1) from `initState(1)` through `segments` of tokens, each
 * `[n, D]` values, recording each segment's outputs and the state after it.
 */
async function stepAlone(layer: Recurrent, segments: Float32Array[], D: number): Promise<Stepped> {
  let state = layer.initState(1);
  const result: Stepped = { outputs: [], states: [] };
  for (const tokens of segments) {
    const ys: number[] = [];
    for (let t = 0; t < tokens.length / D; t++) {
      const x = tf.tensor2d(tokens.slice(t * D, (t + 1) * D), [1, D]);
      const [y, next] = layer.step(x, state);
      ys.push(...await y.data());
      tf.dispose([x, y, state]);
      state = next;
    }
    result.outputs.push(Float64Array.from(ys));
    result.states.push(await stateValues(state));
  }
  tf.dispose(state);
  return result;
}

/** Row b's first `length` tokens of x `[B, T, D]` values. */
const tokensOf = (xs: Float32Array, b: number, T: number, D: number, length: number) =>
  xs.slice(b * T * D, (b * T + length) * D);

/** max over rows and channels of Σ |x| over the given tokens of each row. */
function maxAbsSum(rows: Float32Array[][], D: number): number {
  let m = 0;
  for (const segments of rows) {
    const acc = new Float64Array(D);
    for (const tokens of segments) for (let i = 0; i < tokens.length; i++) acc[i % D] += Math.abs(tokens[i]!);
    m = Math.max(m, maxAbs(acc));
  }
  return m;
}

/**
 * Sizes: B = 4 rows whose prompt lengths are T, 0 and two drawn in 0..T; T of 1, short, and
 * past a scan chunk (16 steps for AverageContext, 32 for SelectiveSSM). The incoming state,
 * when there is one, is itself a ragged prefill of P tokens: rows of P, none, and drawn.
 */
const cases = fc.record({
  T: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 12 }), fc.integer({ min: 33, max: 40 })),
  P: fc.integer({ min: 1, max: 9 }),
  widthPick: fc.nat(),
  variant: fc.nat(),
  a: fc.nat(),
  b: fc.nat(),
  seed: fc.nat(),
});

for (const backend of [...REFERENCE_BACKENDS, 'webgpu'] as const) {
  describeScans(backend, 'recurrent prefill', (scan) => {
    // the walk's block holds only the subjects it changes
    for (const subject of subjects.filter((x) => scan !== 'walk' || x.scans)) {
      for (const incoming of [false, true]) {
        const from = incoming ? 'continuing a ragged state' : 'from a fresh state';
        it(`${subject.name}: prefill ${from} equals stepping each row alone, and so does the next step`, async () => {
          await fc.assert(fc.asyncProperty(cases, async (c) => {
            const B = 4;
            const D = subject.widths[c.widthPick % subject.widths.length]!;
            const layer = built(subject, D, c.variant);
            const lengths = [c.T, 0, c.a % (c.T + 1), c.b % (c.T + 1)];
            const before = [c.b % (c.P + 1), c.P, 0, c.a % (c.P + 1)];
            const xs = seededUniform(c.seed, B * c.T * D, -2, 2);
            const x0s = seededUniform(c.seed + 1, B * c.P * D, -2, 2);
            const nexts = seededUniform(c.seed + 2, B * D, -2, 2);

            let start: State | undefined;
            if (incoming) {
              const x0 = tf.tensor3d(x0s, [B, c.P, D]);
              const [y0, s0] = layer.prefill(x0, undefined, { lengths: before });
              tf.dispose([x0, y0]);
              start = s0;
            }
            const startValues = start && await stateValues(start);
            const x = tf.tensor3d(xs, [B, c.T, D]);
            const [y, state] = layer.prefill(x, start, { lengths });
            const next = tf.tensor2d(nexts, [B, D]);
            const [yNext, stateNext] = layer.step(next, state);
            const got = {
              y: await values(y), state: await stateValues(state), yNext: await values(yNext), stateNext: await stateValues(stateNext),
            };
            // the input state is left as it was
            if (start) {
              const after = await stateValues(start);
              for (const k of Object.keys(after)) expect(maxAbsDiff(after[k]!, startValues![k]!), `state.${k} left intact`).toBe(0);
            }
            tf.dispose([x, y, state, next, yNext, stateNext, start]);

            const rows: Float32Array[][] = [];
            for (let b = 0; b < B; b++) {
              const segments = [tokensOf(xs, b, c.T, D, lengths[b]!), nexts.slice(b * D, (b + 1) * D)];
              rows.push(incoming ? [tokensOf(x0s, b, c.P, D, before[b]!), ...segments] : segments);
            }
            const sizes: Sizes = { tokens: (incoming ? c.P : 0) + c.T + 1, D, maxX: Math.max(maxAbs(xs), maxAbs(x0s), maxAbs(nexts)), maxAbsSum: maxAbsSum(rows, D) };
            const bounds = await subject.bounds(layer, sizes);
            const compare = (what: string, field: string, gotValues: Float64Array, want: Float64Array) => {
              const bound = scaled(subject.name, bounds[field]!, want);
              expect(maxAbsDiff(gotValues, want), `${what} (bound ${bound})`).toBeLessThanOrEqual(bound);
            };

            for (let b = 0; b < B; b++) {
              const stepped = await stepAlone(layer, rows[b]!, D);
              const k = incoming ? 1 : 0;
              const real = row(got.y, B, b).slice(0, lengths[b]! * D);
              compare(`row ${b}: y at its ${lengths[b]} real positions`, 'y', real, stepped.outputs[k]!);
              compare(`row ${b}: y of the next step`, 'y', row(got.yNext, B, b), stepped.outputs[k + 1]!);
              for (const [after, gotState] of [[k, got.state], [k + 1, got.stateNext]] as const) {
                const want = stepped.states[after]!;
                for (const field of Object.keys(want)) {
                  const what = `row ${b}: state.${field} after ${after === k ? 'the prefill' : 'the next step'}`;
                  if (field === 'positions') expect(row(gotState[field]!, B, b), what).toEqual(want[field]);
                  else compare(what, field, row(gotState[field]!, B, b), want[field]!);
                }
              }
              expect(row(got.state.positions!, B, b)[0]).toBe((incoming ? before[b]! : 0) + lengths[b]!);
            }
            layer.dispose();
          }), { numRuns: backend === 'webgpu' ? 3 : 6 });
        });
      }

      it(`${subject.name}: padded steps never reach the outputs or the state, and lengths as a tensor are clamped to 0..T`, async () => {
        const [B, T, D] = [3, 6, subject.widths[1]!];
        const layer = built(subject, D);
        const xs = seededUniform(7, B * T * D, -2, 2);
        const lengths = [2, 6, 0];
        const poisoned = xs.slice();
        for (let b = 0; b < B; b++) for (let i = (b * T + lengths[b]!) * D; i < (b + 1) * T * D; i++) poisoned[i] = NaN;
        const run = async (data: Float32Array, options: PrefillOptions) => {
          const x = tf.tensor3d(data, [B, T, D]);
          const [y, state] = layer.prefill(x, undefined, options);
          const out = { y: await values(y), state: await stateValues(state) };
          tf.dispose([x, y, state]);
          return out;
        };
        const clean = await run(xs, { lengths });
        const lengthsTensor = tf.tensor1d([2, T + 3, -1], 'int32');
        for (const other of [await run(poisoned, { lengths }), await run(xs, { lengths: lengthsTensor })]) {
          for (let b = 0; b < B; b++) {
            const real = lengths[b]! * D;
            expect(maxAbsDiff(row(other.y, B, b).slice(0, real), row(clean.y, B, b).slice(0, real))).toBe(0);
            // padded outputs are unspecified, but finite
            expect(row(other.y, B, b).every(Number.isFinite)).toBe(true);
          }
          for (const k of Object.keys(clean.state)) expect(maxAbsDiff(other.state[k]!, clean.state[k]!), `state.${k}`).toBe(0);
        }
        lengthsTensor.dispose();
        layer.dispose();
      });

      it(`${subject.name}: prefill and the steps after it leak no tensors, and empty prompts return the state`, async () => {
        const D = subject.widths[0]!;
        const layer = built(subject, D);
        const x = tf.randomNormal([2, 5, D]) as tf.Tensor3D;
        const lengths = tf.tensor1d([3, 5], 'int32');
        await expectNoLeaks(async () => {
          const [y1, s1] = layer.prefill(x);
          const [y2, s2] = layer.prefill(x, s1, { lengths: [0, 4] });
          const [y3, s3] = layer.prefill(x, s2, { lengths });
          const x4 = tf.tidy(() => x.slice([0, 0, 0], [2, 1, D]).reshape([2, D]) as tf.Tensor2D);
          const [y4, s4] = layer.step(x4, s3);
          const [empty, none] = [tf.zeros([2, 0, D]) as tf.Tensor3D, tf.zeros([0, 3, D]) as tf.Tensor3D];
          const [y5, s5] = layer.prefill(empty, s4);
          expect(y5.shape).toEqual([2, 0, D]);
          expect(Array.from(await s5.positions!.data())).toEqual([5 + 0 + 3 + 1, 5 + 4 + 5 + 1]);
          for (const k of Object.keys(s4)) expect(maxAbsDiff(await values(s5[k]!), await values(s4[k]!))).toBe(0);
          const [y6, s6] = layer.prefill(none);
          expect(y6.shape).toEqual([0, 3, D]);
          tf.dispose([x4, empty, none]);
          tf.dispose([y1, s1, y2, s2, y3, s3, y4, s4, y5, s5, y6, s6]);
        });
        tf.dispose([x, lengths]);
        layer.dispose();
      });
    }
  });
}

/**
 * float64 `ops.averageContextPrefill`, one step at a time as decoding does: the running sum
 * starts from the state's, the count from its position, and x[−1] is its last token where the
 * position is above 0.
 */
function averageContextPrefillOracle(
  xs: ArrayLike<number>, previous: ArrayLike<number>, sum: ArrayLike<number>, positions: number[],
  [B, T, D]: [number, number, number], combine: Combine,
): Float64Array {
  const y = new Float64Array(B * T * D);
  const C = (a: number, p: number, c: number) =>
    combine === 'max' ? Math.max(a, p, c) : combine === 'min' ? Math.min(a, p, c) : (a + p + c) / 3;
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) {
      let run = sum[b * D + d]!;
      let before = positions[b]! > 0 ? previous[b * D + d]! : xs[b * T * D + d]!;
      for (let t = 0; t < T; t++) {
        const x = xs[(b * T + t) * D + d]!;
        run += x;
        y[(b * T + t) * D + d] = C(x, before, run / (positions[b]! + t + 1));
        before = x;
      }
    }
  }
  return y;
}

/**
 * Sizes for the op: B 1..3, T of 1, past a 16-step chunk, and (on webgpu) past 1024 steps, where
 * the levels scan has two levels; D a multiple of 4 or not; positions from 0 up, one row at 0.
 */
const opCases = fc.record({
  B: fc.integer({ min: 1, max: 3 }),
  T: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 70 })),
  D: fc.constantFrom(3, 8),
  seed: fc.nat(),
});

for (const backend of ['cpu', 'webgpu'] as const) {
  describeOn(backend, 'ops.averageContextPrefill', () => {
    const runs: Array<[Implementation, string]> = backend === 'webgpu'
      ? [['webgpu', 'walk'], ['webgpu', 'levels'], ['webgpu', 'lookback'], ['reference', 'auto']] : [['reference', 'auto']];
    for (const combine of ['max', 'min', 'mean'] as Combine[]) {
      it(`combine ${combine}: matches the float64 step-by-step oracle, the kernel (every scan) within the derived tolerance`, async () => {
        const long = backend === 'webgpu' ? [{ B: 1, T: 1100, D: 8, seed: 5 }] : [];
        const samples = [...fc.sample(opCases, { numRuns: backend === 'webgpu' ? 4 : 8, seed: 11 }), ...long];
        for (const c of samples) {
          const shape: [number, number, number] = [c.B, c.T, c.D];
          const next = mulberry32(c.seed);
          const positions = Array.from({ length: c.B }, (_, b) => (b === 0 ? 0 : Math.floor(next() * 50)));
          const xs = seededUniform(c.seed + 1, c.B * c.T * c.D, -2, 2);
          const previous = seededUniform(c.seed + 2, c.B * c.D, -2, 2);
          // the sum of `position` tokens in [−2, 2]: |sum| ≤ 2·position
          const sum = seededUniform(c.seed + 3, c.B * c.D, -2, 2).map((v, i) => v * positions[Math.floor(i / c.D)]!);
          const oracle = averageContextPrefillOracle(xs, previous, sum, positions, shape, combine);
          const got: Record<string, Float64Array> = {};
          for (const [implementation, scan] of runs) {
            tf.env().set(SCAN_FLAG, scan);
            const y = tf.tidy(() => averageContextPrefill(tf.tensor3d(xs, shape), tf.tensor2d(previous, [c.B, c.D]),
              tf.tensor2d(sum, [c.B, c.D]), tf.tensor1d(positions, 'int32'), { combine, implementation }));
            got[`${implementation} ${scan}`] = await values(y);
            y.dispose();
          }
          tf.env().set(SCAN_FLAG, 'auto');
          // docs/testing.md's bound for AverageContext: (T + 4)·ε·4·max|x| (each c[t] sums t + 2
          // terms whose |Σ| over the count is at most 2, then divides and combines)
          const reference = got['reference auto']!;
          expect(maxAbsDiff(reference, oracle)).toBeLessThanOrEqual((c.T + 4) * EPS32 * 4 * Math.max(1, maxAbs(xs)));
          // the kernel sums in its own order: the floor is the sum's γ bound, 2(T + 1)·ε with |c| ≤ 2
          for (const scan of ['walk', 'levels', 'lookback']) {
            if (got[`webgpu ${scan}`]) expectWithinDerivedTolerance(got[`webgpu ${scan}`]!, reference, oracle, `${scan} scan`, 2 * (c.T + 1) + 4);
          }
        }
      });
    }

    it('a negative position reads as 0, as the step\'s does: the state\'s previous token and sum are not read', async () => {
      const x = tf.randomNormal([2, 9, 8]) as tf.Tensor3D;
      const state = tf.randomNormal([2, 8]) as tf.Tensor2D;
      const zeros = tf.zeros([2, 8]) as tf.Tensor2D;
      const [negative, fresh] = [tf.tensor1d([-3, -1], 'int32'), tf.zeros([2], 'int32') as tf.Tensor1D];
      for (const [implementation, scan] of runs) {
        tf.env().set(SCAN_FLAG, scan);
        const a = averageContextPrefill(x, state, zeros, negative, { combine: 'max', implementation });
        const b = averageContextPrefill(x, zeros, zeros, fresh, { combine: 'max', implementation });
        expect(Array.from(await a.data()), `${implementation} ${scan}`).toEqual(Array.from(await b.data()));
        tf.dispose([a, b]);
      }
      tf.env().set(SCAN_FLAG, 'auto');
      tf.dispose([x, state, zeros, negative, fresh]);
    });

    it('with a zero state it is averageContext, and it leaks no tensors', async () => {
      const x = tf.randomNormal([2, 21, 8]) as tf.Tensor3D;
      const zeros = tf.zeros([2, 8]) as tf.Tensor2D;
      const start = tf.zeros([2], 'int32') as tf.Tensor1D;
      const implementation = backend === 'webgpu' ? 'webgpu' : 'reference';
      await expectNoLeaks(async () => {
        const a = averageContextPrefill(x, zeros, zeros, start, { combine: 'max', implementation });
        const b = ops.averageContext(x, { combine: 'max', implementation });
        const none = tf.zeros([2, 0, 8]) as tf.Tensor3D;
        const empty = averageContextPrefill(none, zeros, zeros, start);
        expect(empty.shape).toEqual([2, 0, 8]);
        none.dispose();
        // one running sum each, in the same order on each path
        expect(maxAbsDiff(await values(a), await values(b))).toBeLessThanOrEqual(21 * 2 * EPS32 * Math.max(1, maxAbs(await values(x))));
        tf.dispose([a, b, empty]);
      });
      tf.dispose([x, zeros, start]);
    });
  });
}

describeOn('cpu', 'recurrent prefill input checks', () => {
  for (const subject of subjects) {
    it(`${subject.name}: bad lengths, x and states are named in the error`, () => {
      const D = subject.widths[1]!;
      const layer = built(subject, D);
      const name = subject.name;
      const x = tf.zeros([2, 4, D]) as tf.Tensor3D;
      expect(() => layer.prefill(x, undefined, { lengths: [1] }))
        .toThrow(`${name}.prefill: option 'lengths' must hold 2 integers (one per row of x) from 0 to T = 4; received [1 (a number)].`);
      expect(() => layer.prefill(x, undefined, { lengths: [1, 5] })).toThrow(`${name}.prefill: option 'lengths' must hold 2 integers`);
      expect(() => layer.prefill(x, undefined, { lengths: [1, 1.5] })).toThrow(`${name}.prefill: option 'lengths' must hold 2 integers`);
      const floats = tf.tensor1d([1, 2]);
      expect(() => layer.prefill(x, undefined, { lengths: floats as tf.Tensor1D }))
        .toThrow(`${name}.prefill: option 'lengths' must be number[] or an int32 tensor of shape [2]; received a float32 tensor`);
      expect(() => layer.prefill(x, undefined, { length: [1, 1] } as PrefillOptions)).toThrow(`${name}.prefill: unknown option 'length'`);
      expect(() => layer.prefill(tf.zeros([2, 4, D + 1]) as tf.Tensor3D))
        .toThrow(`${name}.prefill: argument 'x' must have shape [B, T, D] = [2, 4, ${D}]; received [2, 4, ${D + 1}].`);
      expect(() => layer.prefill(tf.zeros([2, D]) as unknown as tf.Tensor3D)).toThrow(`${name}.prefill: argument 'x' must be a float32 tensor of rank 3`);
      const state = layer.initState(2);
      const { positions, ...rest } = state;
      expect(() => layer.prefill(x, rest))
        .toThrow(`${name}.prefill: argument 'state.positions' must be an int32 tensor of shape [2] (one position per row, as initState() makes it); received undefined.`);
      expect(() => layer.step(tf.zeros([2, D]) as tf.Tensor2D, { ...rest, positions: tf.zeros([2]) }))
        .toThrow(`${name}.step: argument 'state.positions' must be an int32 tensor of shape [2]`);
      const three = layer.initState(3);
      // the lengths made before the state is checked are disposed
      const before = tf.memory().numTensors;
      expect(() => layer.prefill(x, three, { lengths: [1, 2] }))
        .toThrow(new RegExp(`^${name}\\.prefill: argument 'state\\.\\w+' must have shape \\[B, .*\\] = \\[2, `));
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, floats, state, positions, three]);
      layer.dispose();
    });
  }

  it('ops.averageContextPrefill names a bad argument', () => {
    const x = tf.zeros([2, 3, 4]) as tf.Tensor3D;
    const state = tf.zeros([2, 4]) as tf.Tensor2D;
    const floats = tf.zeros([2]) as tf.Tensor1D;
    expect(() => averageContextPrefill(x, state, state, floats))
      .toThrow("averageContextPrefill: argument 'positions' must be an int32 tensor of shape [2]; received a float32 tensor of shape [2].");
    expect(() => averageContextPrefill(x, tf.zeros([2, 5]) as tf.Tensor2D, state, floats))
      .toThrow("averageContextPrefill: argument 'previous' must have shape [B, D] = [2, 4]; received [2, 5].");
    const ints = tf.zeros([2], 'int32') as tf.Tensor1D;
    expect(() => averageContextPrefill(x, state, state, ints, { combine: 'sum' as Combine }))
      .toThrow(/averageContextPrefill: option 'combine' must be one of 'max', 'min', 'mean'/);
    tf.dispose([x, state, floats, ints]);
  });

  it('AverageContext with causal: false has no prefill', () => {
    const layer = averageContext({ causal: false });
    tf.dispose(layer.apply(tf.zeros([1, 1, 4])) as tf.Tensor);
    expect(() => layer.prefill(tf.zeros([1, 2, 4]) as tf.Tensor3D)).toThrow(/AverageContext\.prefill: a layer with causal: false .* cannot decode/);
    layer.dispose();
  });
});
