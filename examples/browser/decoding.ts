/**
 * Every layer that decodes, run through its decode calls on whichever tfjs backend is active:
 * the cases and their check, shared by `test/backend-decoding.test.ts` (cpu and wasm, in Node)
 * and the training page `train.html` (webgl, in headless Chromium, driven by
 * `scripts/browser-test.mjs`). Off webgpu the decode calls run the tfjs-ops references, whose
 * per-row gathers, clamps and masks each backend's kernels compute (tfjs-wasm 4.22 got two of them
 * wrong: docs/backends.md).
 *
 * A case builds its layer at D = 8 with seeded weights, then runs a ragged batch of three rows
 * ({@link decodeCase}): a prefill from a fresh state (lengths 6, 2, 0 of 6 tokens), a second
 * prefill continuing it (lengths 3, 6, 1), and two steps; then each row alone, a batch of one,
 * through the same calls. Every real output of the batch must equal the row's own within
 * {@link decodeBound}, and nothing may leak.
 *
 * @example
 * ```ts
 * await tf.setBackend('webgl');
 * for (const c of DECODING_CASES) {
 *   const result = await decodeCase(c);
 *   if (result.problems.length > 0) console.log(c.name, result.problems);
 * }
 * ```
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { layers } from '../../src/index.js';
import { mulberry32 } from '../shared/random.js';

/** The decode calls a case runs; every decoding layer has them. */
export interface Decoding {
  initState(batch: number, options?: { capacity?: number }): tf.TensorContainer;
  prefill(x: tf.Tensor3D, state?: tf.TensorContainer, options?: { lengths?: number[] }): [tf.Tensor3D, tf.TensorContainer];
  step(x: tf.Tensor2D, state: tf.TensorContainer): [tf.Tensor2D, tf.TensorContainer];
}

/** One case: a layer that decodes, and whether its state is a preallocated key/value cache (given a capacity). */
export interface DecodingCase {
  name: string;
  make(): tf.layers.Layer & Decoding;
  cache: boolean;
}

/** What {@link decodeCase} found. */
export interface DecodingResult {
  name: string;
  /** `tf.getBackend()` during the case. */
  backend: string;
  /** max |batch − row alone| over every real output. */
  error: number;
  /** {@link decodeBound} at the case's outputs. */
  bound: number;
  /** Empty when the case passes. */
  problems: string[];
  ms: number;
}

const D = 8;
/** Tokens per prefill, the real ones of each row in the first and the second, and the steps. */
const T = 6;
const FIRST = [6, 2, 0];
const SECOND = [3, 6, 1];
const STEPS = 2;

/** Every decoding layer of the library; the cache layers' states are preallocated (capacity), and one is also concatenating. */
export const DECODING_CASES: DecodingCase[] = [
  { name: 'causalGeneration', make: () => layers.causalGeneration({ reduce: 'min' }), cache: false },
  { name: 'averageContext', make: () => layers.averageContext({ combine: 'max' }), cache: false },
  { name: 'selectiveSSM', make: () => layers.selectiveSSM({ stateSize: 4, convKernel: 3 }), cache: false },
  { name: 'aaren', make: () => layers.aaren({ numHeads: 2 }), cache: false },
  { name: 'gatedLinearAttention', make: () => layers.gatedLinearAttention({ numHeads: 2 }), cache: false },
  { name: 'expressiveAttention (recurrent)', make: () => layers.expressiveAttention({ numHeads: 2, decode: 'recurrent' }), cache: false },
  { name: 'expressiveAttention (cache)', make: () => layers.expressiveAttention({ numHeads: 2 }), cache: true },
  { name: 'flashStyleTiledAttention', make: () => layers.flashStyleTiledAttention({ numHeads: 2, numKvHeads: 1 }), cache: true },
  // its cache without a capacity, which grows by concatenation (on webgl by powers of two)
  {
    name: 'flashStyleTiledAttention (concatenating)',
    make: () => layers.flashStyleTiledAttention({ numHeads: 2, numKvHeads: 1 }), cache: false,
  },
  // blocks of 2 tokens, so that 14 tokens cross several of them
  { name: 'blockSparse', make: () => layers.blockSparse({ numHeads: 2, layout: { blockSize: 2, localBlocks: 2, globalBlocks: 1 } }), cache: true },
];

/**
 * How far a row's outputs in the batch may be from its own: both are the same float32 function
 * of the row, but a backend may sum in another order at another batch size (a matMul's tiling
 * follows its row count). The longest sum in these layers has n ≤ T_all + D = 22 terms (a
 * query's 14 keys, a scan's 14 steps, a projection's 8 channels, SelectiveSSM's 16); reordering it
 * moves it by at most n·ε of its terms' magnitudes, which the three stages (in projection,
 * mixing, out projection) keep within a few times the output scale: 3·n·ε·max(1, max|y|)
 * (≈ 8e-6 at the outputs' scale here). A row reading another row's state, token or length is
 * wrong by the size of the outputs (0.1 to 1).
 */
export function decodeBound(scale: number): number {
  const n = 2 * T + STEPS + D;
  return 3 * n * 2 ** -23 * Math.max(1, scale);
}

/** Seeded values in −1..1. */
function seeded(seed: number, n: number): Float32Array {
  const draw = mulberry32(seed);
  return Float32Array.from({ length: n }, () => 2 * draw() - 1);
}

/**
 * The outputs of the decode calls for `rows` (of the three), as host arrays: each prefill's
 * outputs at each row's real tokens, then each step's.
 */
async function decodeRows(layer: Decoding, cache: boolean, rows: number[]): Promise<Float32Array[][]> {
  const B = rows.length;
  const tokens = (seed: number, n: number) => tf.tensor3d(rows.flatMap((r) => Array.from(seeded(seed + r, n * D))), [B, n, D]);
  const outputs: Float32Array[][] = rows.map(() => []);
  const keepReal = async (y: tf.Tensor, lengths: number[], steps: number) => {
    const values = await y.data() as Float32Array;
    rows.forEach((_, b) => outputs[b]!.push(values.slice(b * steps * D, (b * steps + lengths[b]!) * D)));
  };
  let state = layer.initState(B, cache ? { capacity: 2 * T + STEPS } : undefined);
  const advance = (next: tf.TensorContainer) => {
    // a preallocated cache is updated in place and returned; any other state is a new one
    if (next !== state) tf.dispose(state);
    state = next;
  };
  for (const [seed, lengths] of [[10, FIRST], [20, SECOND]] as const) {
    const x = tokens(seed, T);
    const mine = rows.map((r) => lengths[r]!);
    const [y, next] = layer.prefill(x, state, { lengths: mine });
    await keepReal(y, mine, T);
    tf.dispose([x, y]);
    advance(next);
  }
  for (let s = 0; s < STEPS; s++) {
    const x = tf.tidy(() => tokens(30 + 10 * s, 1).squeeze([1]) as tf.Tensor2D);
    const [y, next] = layer.step(x, state);
    await keepReal(y, rows.map(() => 1), 1);
    tf.dispose([x, y]);
    advance(next);
  }
  tf.dispose(state);
  return outputs;
}

/**
 * {@link concatenatingSteps}'s prompt and steps (past the 64 slots the cache first takes), and
 * the first step it counts compiles in.
 */
const PROMPT = 56;
const CONCATENATED_STEPS = 24;
const WARM_STEPS = 2;

/** What {@link concatenatingSteps} found. */
export interface ConcatenatingRun {
  /**
   * Per step from the 3rd: the shader programs webgl compiled during it. A shape met once
   * compiles once (a packed transpose; BlockSparse's list of the keys it sees, growing to its
   * layout's size); a cache one slot longer a token made about 22 compile in every step.
   */
  programs: number[];
  /** Per step from the 3rd: whether the cache's slots grew in it. */
  grew: boolean[];
  /** max |step − forward| over the prompt's and every step's outputs. */
  error: number;
  /** {@link decodeBound}-like bound at those outputs, for the 80 tokens. */
  bound: number;
}

/**
 * `c`'s layer decoding one row from a cache that grows by concatenation on webgl: a 56-token
 * prefill from a fresh state, then 24 steps (80 tokens, past the 64 slots the cache first takes),
 * each step's compiled shader programs counted from the 3rd, and every output checked against
 * the layer's forward over all 80 tokens. `null` on another backend. webgl compiles a program for
 * each tensor shape it meets, so a cache that grew by a slot a token compiled every op that reads
 * it each token; the layer's growth (`growthOf` in src/attention/kv-cache.ts) keeps the tokens in
 * one shape until they no longer fit. Reads the backend's program cache, a private member of
 * tfjs 4.22's webgl backend.
 */
export async function concatenatingSteps(c: DecodingCase): Promise<ConcatenatingRun | null> {
  const programs = (tf.backend() as unknown as { binaryCache?: Record<string, unknown> }).binaryCache;
  if (tf.getBackend() !== 'webgl' || !programs) return null;
  const layer = c.make() as tf.layers.Layer & Decoding;
  const total = PROMPT + CONCATENATED_STEPS;
  const run: ConcatenatingRun = { programs: [], grew: [], error: 0, bound: 0 };
  try {
    tf.tidy(() => void layer.apply(tf.zeros([1, 1, D])));
    const tokens = tf.tensor3d(seeded(40, total * D), [1, total, D]);
    const forward = layer.apply(tokens) as tf.Tensor;
    const want = await forward.data();
    const got: number[] = [];
    const [empty, prompt] = [layer.initState(1), tf.slice(tokens, [0, 0, 0], [1, PROMPT, D]) as tf.Tensor3D];
    const [y, first] = layer.prefill(prompt, empty);
    got.push(...await y.data());
    tf.dispose([forward, prompt, y, empty]);
    let state = first as { keys: tf.Tensor };
    for (let s = 0; s < CONCATENATED_STEPS; s++) {
      const before = Object.keys(programs).length;
      const x = tf.tidy(() => tf.slice(tokens, [0, PROMPT + s, 0], [1, 1, D]).reshape([1, D]) as tf.Tensor2D);
      const [out, next] = layer.step(x, state);
      got.push(...await out.data());
      if (s >= WARM_STEPS) {
        run.programs.push(Object.keys(programs).length - before);
        run.grew.push((next as { keys: tf.Tensor }).keys.shape[1] !== state.keys.shape[1]);
      }
      tf.dispose([x, out, state]);
      state = next as { keys: tf.Tensor };
    }
    tf.dispose([tokens, state]);
    let scale = 0;
    got.forEach((v, n) => {
      run.error = Math.max(run.error, Math.abs(v - want[n]!));
      scale = Math.max(scale, Math.abs(want[n]!));
    });
    // the forward and the steps are the same float32 function summed in another order: sums of
    // at most 80 keys and D channels, as decodeBound's
    run.bound = 3 * (total + D) * 2 ** -23 * Math.max(1, scale);
  } finally {
    layer.dispose();
  }
  return run;
}

/** Runs `c` (the batch, then each row alone) and checks it; see the module's description. */
export async function decodeCase(c: DecodingCase): Promise<DecodingResult> {
  const started = performance.now();
  const problems: string[] = [];
  const before = tf.memory().numTensors;
  const layer = c.make();
  let error = 0;
  let scale = 0;
  try {
    tf.tidy(() => void layer.apply(tf.zeros([1, 1, D])));
    // seeded weights, the same for every run
    tf.tidy(() => layer.setWeights(layer.getWeights().map((w, i) => tf.tensor(seeded(100 + i, w.size), w.shape))));
    const rows = [0, 1, 2];
    const batch = await decodeRows(layer, c.cache, rows);
    for (const r of rows) {
      const [alone] = await decodeRows(layer, c.cache, [r]);
      batch[r]!.forEach((got, k) => {
        const want = alone![k]!;
        for (let n = 0; n < got.length; n++) {
          error = Math.max(error, Math.abs(got[n]! - want[n]!));
          scale = Math.max(scale, Math.abs(want[n]!));
        }
      });
    }
  } catch (e) {
    problems.push(`threw: ${String(e)}`);
  } finally {
    layer.dispose();
  }
  const bound = decodeBound(scale);
  if (!(error <= bound)) problems.push(`a row in the batch is ${error} from the row alone (bound ${bound.toExponential(2)})`);
  const leaked = tf.memory().numTensors - before;
  if (leaked !== 0) problems.push(`${leaked} tensors left behind`);
  return { name: c.name, backend: tf.getBackend(), error, bound, problems, ms: performance.now() - started };
}
