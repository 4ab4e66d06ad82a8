/**
 * Every op and layer of the library, trained for a few steps on whichever tfjs backend is
 * active: the cases and their checks, shared by `test/backend-training.test.ts` (cpu and wasm,
 * in Node) and the training page `train.html` (webgl, in headless Chromium, driven by
 * `scripts/browser-test.mjs`). Off webgpu every op runs its tfjs-ops reference, so this is
 * what a user of the cpu, wasm or webgl backend trains through.
 *
 * Each case makes its trainable weights (an op's float inputs, or a layer's weights) from
 * seeded values and a loss, the mean squared error against a seeded target of the output's
 * shape. {@link trainCase} then takes {@link STEPS} Adam steps and checks ({@link judge}):
 *
 * - every gradient is finite, and non-zero beyond rounding ({@link ZERO_GRADIENT_RATIO}) for every
 *   weight but those whose gradient is 0 in exact arithmetic (softmax attention's key bias),
 *   which must be 0 to rounding;
 * - the loss falls by at least half of what the gradient predicts: Armijo's sufficient-decrease
 *   condition with c = ½, `L(θ) − L(θ + Δ) ≥ ½·(−g·Δ)` for the step Δ Adam actually took, on the
 *   first step and summed over all of them. A wrong or missing gradient term breaks it; a step
 *   too small for curvature to matter cannot fail it by chance (see {@link FIRST_STEP_FRACTION});
 * - no tensor leaks: as many tensors after every step as after the first (which creates Adam's
 *   slots), and as many after disposal as before the case.
 *
 * @example
 * ```ts
 * await tf.setBackend('wasm');
 * for (const c of TRAINING_CASES) {
 *   const result = await trainCase(c);
 *   if (result.problems.length > 0) console.log(c.name, result.problems);
 * }
 * ```
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { layers, ops } from '../../src/index.js';
import { mulberry32 } from '../shared/random.js';

/** Adam steps per case. */
export const STEPS = 4;

/**
 * Adam's learning rate η is chosen per case so that its first step, to first order, lowers the
 * loss by this fraction of it: Adam's first step is Δ = −η·g/(|g| + ε) per entry, whose
 * first-order decrease is η·Σ g²/(|g| + ε) ≈ η·‖g‖₁, so η = 0.005·L₀/‖g‖₁. A 0.5 % decrease
 * stands far above the float32 rounding of a loss that is a mean of at most a few hundred
 * squares (about n·2⁻²⁴ ≈ 2e-5 relative, worst case), so the Armijo checks cannot pass or
 * fail by rounding, and the step is small enough for the loss to be nearly linear along it:
 * over the steps, the loss fell by 0.89 to 1.07 times the prediction in every case on cpu, wasm
 * and webgl, where 1 % steps let ExpressiveAttention's curvature (s²/(ε + Σ s²) is steep where
 * Σ s² is small) bring it down to 0.60.
 */
export const FIRST_STEP_FRACTION = 0.005;

/**
 * Armijo's constant: the loss must fall by at least this share of the first-order decrease
 * −g·Δ. ½ leaves the second-order term (curvature) half of the predicted decrease, while a
 * gradient that is wrong in sign, in scale by 2× or more, or missing a term large enough to
 * matter, predicts a decrease the loss does not make.
 */
export const ARMIJO = 0.5;

/**
 * What separates a zero gradient from a real one, relative to the case's largest gradient
 * entry. A gradient that is 0 in exact arithmetic (softmax attention's key bias) comes out as a
 * float32 sum of at most B·T·T = 128 cancelling terms, each about the size of a gradient entry,
 * so its rounding is at most about 128·2⁻²⁴ ≈ 8e-6 of the largest (1e-8 observed): it must stay
 * below 1e-5 of it. Every other weight's gradient must reach above it, so that a weight cut off
 * from the loss cannot pass on rounding noise: the smallest real ones, SelectiveSSM's dtProj and
 * ALog (small because its initial step sizes Δ are 1e-3 to 1e-1), are 2e-4 of the largest.
 */
export const ZERO_GRADIENT_RATIO = 1e-5;

/** The ops and layer factories, by name, that a case trains. */
export type OpName = keyof typeof ops;
export type LayerName = keyof typeof layers;

/** What one case sets up: its trainable weights and its loss. */
export interface TrainingSetup {
  /** The weights to train, by name. */
  weights: Array<{ name: string; variable: tf.Variable }>;
  /** The loss, a scalar, read from the weights. */
  loss: () => tf.Scalar;
  /** Weights whose gradient is exactly 0 in exact arithmetic, by name, with the reason. */
  zeroGradient: Map<string, string>;
  /** Frees the weights, targets and constants. */
  dispose: () => void;
}

/** One op or layer, with its options, to train. */
export interface TrainingCase {
  /** e.g. `flashAttention: kvLengths and window`. */
  name: string;
  /** The export it trains: `ops.<name>` or `layers.<name>`. */
  covers: { ops: OpName } | { layers: LayerName };
  /** Builds the weights and the loss; {@link trainCase} calls it with `Math.random` seeded. */
  setup: () => TrainingSetup;
}

/** A gradient's summary for one weight, at the first step. */
export interface GradientSummary {
  weight: string;
  /** max |g| over the weight's entries (NaN when any entry is not finite). */
  maxAbs: number;
  finite: boolean;
}

/** What {@link trainCase} measured, and the checks it failed. */
export interface TrainingResult {
  name: string;
  /** `ops.<name>` or `layers.<name>`. */
  covers: string;
  backend: string;
  /** The loss before the steps and after each: {@link STEPS} + 1 values. */
  losses: number[];
  /** −g·Δ of each step: the decrease that the gradient predicts for the step Adam took. */
  predicted: number[];
  learningRate: number;
  gradients: GradientSummary[];
  /** Tensors alive after each step (after the first: Adam's slots are made then). */
  tensorsPerStep: number[];
  /** Tensors alive after the case minus before (0: nothing leaked). */
  leakedTensors: number;
  ms: number;
  /** The error the case threw, if it did. */
  error?: string;
  /** Every check the case failed, in words; empty when it trains. */
  problems: string[];
}

/** Uniform values in [lo, hi) from `seed`. */
function uniform(seed: number, shape: number[], lo = -1, hi = 1): tf.Tensor {
  const next = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => lo + (hi - lo) * next()), shape, 'float32');
}

/** Σ over outputs of mean((y − target)²). */
function meanSquaredError(ys: tf.Tensor[], targets: tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => tf.addN(ys.map((y, i) => tf.mean(tf.square(tf.sub(y, targets[i]!))))) as tf.Scalar);
}

/** Seeded targets, one per output, of the outputs' shapes. */
function targetsFor(outputs: () => tf.Tensor[], seed: number): tf.Tensor[] {
  const shapes = tf.tidy(() => outputs().map((y) => y.shape));
  return shapes.map((shape, i) => uniform(seed + i, shape));
}

/** An input of an op, trained: its shape and the range of its seeded values. */
type Input = [shape: number[], lo?: number, hi?: number];
type Outputs = tf.Tensor | tf.Tensor[] | { output: tf.Tensor; state: tf.Tensor };
/** Keeps a constant (an int32 option) for the case's lifetime. */
type Keep = <T extends tf.Tensor>(t: T) => T;

function listOutputs(o: Outputs): tf.Tensor[] {
  if (o instanceof tf.Tensor) return [o];
  if (Array.isArray(o)) return o;
  return [o.output, o.state];
}

/**
 * A case that trains `ops.<op>` in all its float inputs: `build` makes the constants (kept
 * with `keep`) and returns the call, which reads the inputs by name.
 */
function opCase(
  name: string, op: OpName, inputs: Record<string, Input>,
  build: (keep: Keep) => (w: Record<string, tf.Tensor>) => Outputs,
): TrainingCase {
  return {
    name: `${op}: ${name}`,
    covers: { ops: op },
    setup() {
      const constants: tf.Tensor[] = [];
      const call = build((t) => (constants.push(t), t));
      const weights = Object.entries(inputs).map(([input, [shape, lo, hi]], i) => {
        const init = uniform(100 + i, shape, lo, hi);
        const variable = tf.variable(init);
        init.dispose();
        return { name: input, variable };
      });
      const named = () => Object.fromEntries(weights.map((w) => [w.name, w.variable as tf.Tensor]));
      const outputs = () => listOutputs(call(named()));
      const targets = targetsFor(outputs, 200);
      return {
        weights,
        loss: () => tf.tidy(() => meanSquaredError(outputs(), targets)),
        zeroGradient: new Map(),
        dispose: () => tf.dispose([...weights.map((w) => w.variable), ...targets, ...constants]),
      };
    },
  };
}

/** What a layer is applied to. */
interface LayerInputs {
  inputs: tf.Tensor | tf.Tensor[];
  kwargs?: Record<string, unknown>;
}

/** Softmax is unchanged when every score of a row moves by one constant: q·(k + b) = q·k + q·b. */
const SOFTMAX_SHIFT = 'softmax attention does not depend on a bias added to every key (each query\'s scores all move by q·b)';

/**
 * A case that trains the layer `make()` returns in all its trainable weights, applied to the
 * inputs `input` makes (kept for the case's lifetime); `zero` names the weights whose gradient
 * is 0 in exact arithmetic.
 */
function layerCase(
  name: string, factory: LayerName, make: () => tf.layers.Layer, input: (keep: Keep) => LayerInputs,
  zero: Record<string, string> = {},
): TrainingCase {
  return {
    name: `${factory}: ${name}`,
    covers: { layers: factory },
    setup() {
      const constants: tf.Tensor[] = [];
      const { inputs, kwargs } = input((t) => (constants.push(t), t));
      const layer = make();
      const outputs = () => listOutputs(layer.apply(inputs, kwargs) as tf.Tensor | tf.Tensor[]);
      // the first call builds the layer, drawing its initial weights
      const targets = targetsFor(outputs, 200);
      const weights = layer.trainableWeights.map((w) => ({ name: w.originalName, variable: w.read() as tf.Variable }));
      const zeroGradient = new Map(weights.flatMap((w) => {
        const reason = Object.entries(zero).find(([suffix]) => w.name.endsWith(suffix));
        return reason ? [[w.name, reason[1]] as const] : [];
      }));
      return {
        weights,
        loss: () => tf.tidy(() => meanSquaredError(outputs(), targets)),
        zeroGradient,
        dispose: () => {
          layer.dispose();
          tf.dispose([...targets, ...constants]);
        },
      };
    },
  };
}

// the sizes: B rows of T tokens, H query heads over Hkv key/value heads of width K; layers D wide
const [B, T, H, K, D] = [2, 8, 2, 4, 8];
const int = (values: number[][] | number[], shape: number[]) => tf.tensor(values.flat(), shape, 'int32');
/** Two packed rows: segments of 3, 4 and 1 tokens, and of 5 and 3. */
const SEGMENTS = [[0, 0, 0, 1, 1, 1, 1, 2], [0, 0, 0, 0, 0, 1, 1, 1]];
/** Row 0 right-padded after 5 tokens, row 1 whole. */
const LENGTHS = [5, 8];
const PADDING = LENGTHS.map((n) => Array.from({ length: T }, (_, t) => (t < n ? 1 : 0)));
/** ExpressiveAttention's decode state over K = 4: P = K(K + 1)/2 entries of x⊗x. */
const P = (K * (K + 1)) / 2;

/** φ(x): x_a², then √2·x_a·x_b for a < b, as ExpressiveAttention's recurrent decode packs x⊗x. */
function phi(x: number[]): number[] {
  const out = x.map((a) => a * a);
  for (let a = 0; a < x.length; a++) for (let b = a + 1; b < x.length; b++) out.push(Math.SQRT2 * x[a]! * x[b]!);
  return out;
}

/**
 * A recurrent decode state that three seeded tokens made, `M = Σ φ(k)·vᵀ` and `z = Σ φ(k)`,
 * per (row, kv head): with it, φ(q)·z = Σ (q·k)² ≥ 0, as in a real decode.
 */
function recurrentState(): { M: number[]; z: number[] } {
  const next = mulberry32(7);
  const M: number[] = [];
  const z: number[] = [];
  for (let bh = 0; bh < B * H; bh++) {
    const m = Array.from({ length: P * K }, () => 0);
    const s = Array.from({ length: P }, () => 0);
    for (let token = 0; token < 3; token++) {
      const k = Array.from({ length: K }, () => 2 * next() - 1);
      const v = Array.from({ length: K }, () => 2 * next() - 1);
      phi(k).forEach((f, p) => {
        s[p]! += f;
        v.forEach((x, c) => { m[p * K + c]! += f * x; });
      });
    }
    M.push(...m);
    z.push(...s);
  }
  return { M, z };
}

const q: Input = [[B, T, H, K]];
const kv: Input = [[B, T, H, K]];
const qkv = { q, k: kv, v: kv };
type QKV = Record<string, tf.Tensor>;
const attention = (w: QKV) => [w.q as tf.Tensor4D, w.k as tf.Tensor4D, w.v as tf.Tensor4D] as const;
/** SelectiveSSM's scan inputs over E = 4 channels and N = 3 states: A < 0, as −exp(ALog) is. */
const [E, N] = [4, 3];
const scanInputs: Record<string, Input> = {
  u: [[B, T, E]], delta: [[B, T, E]], A: [[E, N], -1.5, -0.2], B: [[B, T, N]], C: [[B, T, N]],
};
const scanOptions: Record<string, Input> = { D: [[E]], z: [[B, T, E]], deltaBias: [[E]] };
const scanArgs = (w: QKV) => [w.u, w.delta, w.A, w.B, w.C] as [tf.Tensor3D, tf.Tensor3D, tf.Tensor2D, tf.Tensor3D, tf.Tensor3D];
const blockLayout = { blockSize: 2, localBlocks: 1, globalBlocks: 1, stride: 2 };

/** Every exported op, each with its usual options and the visibility and padding variants. */
const OP_CASES: TrainingCase[] = [
  ...(['min', 'max', 'mean'] as const).map((reduce) =>
    opCase(`reduce ${reduce}`, 'causalGeneration', { x: [[B, T, D]] }, () => (w) => ops.causalGeneration(w.x as tf.Tensor3D, { reduce }))),
  opCase('reduce min', 'causalGenerationStep', { x: [[B, D]], previous: [[B, D]] },
    () => (w) => ops.causalGenerationStep(w.x as tf.Tensor2D, w.previous as tf.Tensor2D, { reduce: 'min' })),
  ...(['max', 'min', 'mean'] as const).map((combine) =>
    opCase(`combine ${combine}`, 'averageContext', { x: [[B, T, D]] }, () => (w) => ops.averageContext(w.x as tf.Tensor3D, { combine }))),
  opCase('causal: false', 'averageContext', { x: [[B, T, D]] }, () => (w) => ops.averageContext(w.x as tf.Tensor3D, { causal: false })),
  opCase('rows at positions 3 and 0', 'averageContextPrefill', { x: [[B, T, D]], previous: [[B, D]], sum: [[B, D]] },
    (keep) => {
      const positions = keep(int([3, 0], [B]) as tf.Tensor1D);
      return (w) => ops.averageContextPrefill(w.x as tf.Tensor3D, w.previous as tf.Tensor2D, w.sum as tf.Tensor2D, positions, { combine: 'mean' });
    }),
  opCase('rows at positions 2 and 0', 'averageContextStep', { x: [[B, D]], previous: [[B, D]], sum: [[B, D]] },
    (keep) => {
      const positions = keep(int([2, 0], [B]) as tf.Tensor1D);
      return (w) => ops.averageContextStep(w.x as tf.Tensor2D, w.previous as tf.Tensor2D, w.sum as tf.Tensor2D, positions, { combine: 'mean' });
    }),
  opCase('x', 'causalMean', { x: [[B, T, D]] }, () => (w) => ops.causalMean(w.x as tf.Tensor3D)),

  opCase('causal', 'flashAttention', qkv, () => (w) => ops.flashAttention(...attention(w))),
  opCase('grouped-query, 4 heads over 2', 'flashAttention', { q: [[B, T, 4, K]], k: [[B, T, 2, K]], v: [[B, T, 2, K]] },
    () => (w) => ops.flashAttention(...attention(w))),
  opCase('causal: false, Tq = 3 over Tk = 8', 'flashAttention', { q: [[B, 3, H, K]], k: kv, v: kv },
    () => (w) => ops.flashAttention(...attention(w), { causal: false })),
  opCase('kvLengths (right-padded) and window 3', 'flashAttention', qkv,
    () => (w) => ops.flashAttention(...attention(w), { kvLengths: LENGTHS, window: 3 })),
  opCase('segmentIds (packed)', 'flashAttention', qkv, (keep) => {
    const segmentIds = keep(int(SEGMENTS, [B, T]) as tf.Tensor2D);
    return (w) => ops.flashAttention(...attention(w), { segmentIds });
  }),
  opCase('mask [B, 1, Tk] and queryOffsets', 'flashAttention', { q: [[B, 4, H, K]], k: kv, v: kv }, (keep) => {
    const mask = keep(int(PADDING, [B, 1, T]));
    return (w) => ops.flashAttention(...attention(w), { mask, queryOffsets: [4, 2] });
  }),
  opCase('dropout 0.2', 'flashAttention', qkv, () => (w) => ops.flashAttention(...attention(w), { dropout: 0.2, seed: 11 })),

  opCase('layout of 2-token blocks', 'blockSparseAttention', qkv, () => (w) => ops.blockSparseAttention(...attention(w), blockLayout)),
  opCase('grouped-query and kvLengths', 'blockSparseAttention', { q: [[B, T, 4, K]], k: [[B, T, 2, K]], v: [[B, T, 2, K]] },
    () => (w) => ops.blockSparseAttention(...attention(w), { ...blockLayout, kvLengths: LENGTHS })),
  opCase('segmentIds and dropout 0.2', 'blockSparseAttention', qkv, (keep) => {
    const segmentIds = keep(int(SEGMENTS, [B, T]) as tf.Tensor2D);
    return (w) => ops.blockSparseAttention(...attention(w), { ...blockLayout, segmentIds, dropout: 0.2, seed: 5 });
  }),

  opCase('causal', 'expressiveAttention', qkv, () => (w) => ops.expressiveAttention(...attention(w))),
  opCase('grouped-query, causal: false, Tq = 3 over Tk = 8', 'expressiveAttention', { q: [[B, 3, 4, K]], k: [[B, T, 2, K]], v: [[B, T, 2, K]] },
    () => (w) => ops.expressiveAttention(...attention(w), { causal: false })),
  opCase('kvLengths (right-padded) and window 3', 'expressiveAttention', qkv,
    () => (w) => ops.expressiveAttention(...attention(w), { kvLengths: LENGTHS, window: 3 })),
  opCase('segmentIds (packed) and mask', 'expressiveAttention', qkv, (keep) => {
    const segmentIds = keep(int(SEGMENTS, [B, T]) as tf.Tensor2D);
    const mask = keep(int(PADDING, [B, 1, T]));
    return (w) => ops.expressiveAttention(...attention(w), { segmentIds, mask });
  }),
  opCase('a state of three tokens', 'expressiveAttentionRecurrentStep',
    { q: [[B, H, K]], k: [[B, H, K]], v: [[B, H, K]], M: [[B, H, P, K], -0.05, 0.05], z: [[B, H, P], -0.05, 0.05] },
    () => {
      // the trained M and z are small offsets of a real state, so that φ(q)·z stays near Σ (q·k)² > 0
      const state = recurrentState();
      return (w) => {
        const M = tf.add(w.M!, tf.tensor(state.M, [B, H, P, K])) as tf.Tensor4D;
        const z = tf.add(w.z!, tf.tensor(state.z, [B, H, P])) as tf.Tensor3D;
        return ops.expressiveAttentionRecurrentStep(w.q as tf.Tensor3D, w.k as tf.Tensor3D, w.v as tf.Tensor3D, M, z);
      };
    }),

  opCase('u, delta, A, B, C', 'selectiveScan', scanInputs, () => (w) => ops.selectiveScan(...scanArgs(w))),
  opCase('D, z, deltaBias, initialState', 'selectiveScan', { ...scanInputs, ...scanOptions, initialState: [[B, E, N]] },
    () => (w) => ops.selectiveScan(...scanArgs(w), {
      D: w.D as tf.Tensor1D, z: w.z as tf.Tensor3D, deltaBias: w.deltaBias as tf.Tensor1D, initialState: w.initialState as tf.Tensor3D,
    })),
  opCase('output and final state, deltaSoftplus: false', 'selectiveScanWithState', { ...scanInputs, delta: [[B, T, E], 0.05, 0.5] },
    () => (w) => ops.selectiveScanWithState(...scanArgs(w), { deltaSoftplus: false })),
  opCase('D, z, deltaBias', 'selectiveScanStep',
    { u: [[B, E]], delta: [[B, E]], A: [[E, N], -1.5, -0.2], B: [[B, N]], C: [[B, N]], state: [[B, E, N]], D: [[E]], z: [[B, E]], deltaBias: [[E]] },
    () => (w) => ops.selectiveScanStep(w.u as tf.Tensor2D, w.delta as tf.Tensor2D, w.A as tf.Tensor2D, w.B as tf.Tensor2D,
      w.C as tf.Tensor2D, w.state as tf.Tensor3D, { D: w.D as tf.Tensor1D, z: w.z as tf.Tensor2D, deltaBias: w.deltaBias as tf.Tensor1D })),

  opCase('learned queries', 'aaren', { q: [[H, K]], k: kv, v: kv },
    () => (w) => ops.aaren(w.q as tf.Tensor2D, w.k as tf.Tensor4D, w.v as tf.Tensor4D)),
  opCase('output and final state, from an initial state', 'aarenWithState',
    // u is a sum of weights e^{s − m} > 0 in any state that has seen a token
    { q: [[H, K]], k: kv, v: kv, m: [[B, H]], u: [[B, H], 0.5, 1.5], w: [[B, H, K]] },
    () => (w) => {
      const r = ops.aarenWithState(w.q as tf.Tensor2D, w.k as tf.Tensor4D, w.v as tf.Tensor4D, {
        initialState: { m: w.m as tf.Tensor2D, u: w.u as tf.Tensor2D, w: w.w as tf.Tensor3D },
      });
      return [r.output, r.state.m, r.state.u, r.state.w];
    }),

  // log gates well below 0, so that Adam's small steps keep them ≤ 0
  opCase('log gates in [−1, −0.2]', 'gatedLinearAttention', { q, k: kv, v: [[B, T, H, 3]], g: [[B, T, H, K], -1, -0.2] },
    () => (w) => ops.gatedLinearAttention(...attention(w), w.g as tf.Tensor4D)),
  opCase('output and final state, from an initial state', 'gatedLinearAttentionWithState',
    { q, k: kv, v: [[B, T, H, 3]], g: [[B, T, H, K], -1, -0.2], initialState: [[B, H, K, 3]] },
    () => (w) => ops.gatedLinearAttentionWithState(...attention(w), w.g as tf.Tensor4D, { initialState: w.initialState as tf.Tensor4D })),

  opCase('positions 0..T−1', 'rotary', { x: [[B, T, H, K]] }, () => (w) => ops.rotary(w.x as tf.Tensor4D)),
  opCase('rotaryDim 2, interleaved, per-row offsets', 'rotary', { x: [[B, T, H, K]] }, (keep) => {
    const offset = keep(int([5, 40], [B]) as tf.Tensor1D);
    return (w) => ops.rotary(w.x as tf.Tensor4D, { rotaryDim: 2, interleaved: true, offset });
  }),
  opCase('packed positions', 'rotary', { x: [[B, T, H, K]] }, (keep) => {
    const positions = keep(int(SEGMENTS.map((row) => row.map((_, t) => t - row.indexOf(row[t]!))), [B, T]) as tf.Tensor2D);
    return (w) => ops.rotary(w.x as tf.Tensor4D, { positions });
  }),
  opCase('x, kernel and bias, D = 8 to 12', 'dense', { x: [[B, T, D]], kernel: [[D, 12]], bias: [[12]] },
    () => (w) => ops.dense(w.x as tf.Tensor3D, w.kernel as tf.Tensor2D, { bias: w.bias as tf.Tensor1D })),
  opCase('width 5, no bias', 'dense', { x: [[B, T, 5]], kernel: [[5, 3]] }, () => (w) => ops.dense(w.x as tf.Tensor3D, w.kernel as tf.Tensor2D)),
  opCase('x, gamma and beta', 'layerNorm', { x: [[B, T, D]], gamma: [[D], 0.5, 1.5], beta: [[D]] },
    () => (w) => ops.layerNorm(w.x as tf.Tensor3D, w.gamma as tf.Tensor1D, w.beta as tf.Tensor1D)),
  opCase('the sum and its norm', 'addLayerNorm', { x: [[B, T, D]], residual: [[B, T, D]], gamma: [[D], 0.5, 1.5], beta: [[D]] },
    () => (w) => ops.addLayerNorm(w.x as tf.Tensor3D, w.residual as tf.Tensor3D, w.gamma as tf.Tensor1D, w.beta as tf.Tensor1D)),
];

const x = (keep: Keep) => keep(uniform(300, [B, T, D]));
/** A context of 5 tokens, 6 wide, for cross-attention; row 0 padded after 3 tokens. */
const context = (keep: Keep) => keep(uniform(301, [B, 5, 6]));
const CONTEXT_PADDING = [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]];
const softmaxKeyBias = { keyBias: SOFTMAX_SHIFT };

/** Every layer, with its usual options, and the attention layers padded and packed. */
const LAYER_CASES: TrainingCase[] = [
  ...(['min', 'max', 'mean'] as const).map((reduce) =>
    layerCase(`reduce ${reduce}`, 'causalGeneration', () => layers.causalGeneration({ reduce }), (keep) => ({ inputs: x(keep) }))),
  ...(['max', 'min', 'mean'] as const).map((combine) =>
    layerCase(`combine ${combine}`, 'averageContext', () => layers.averageContext({ combine }), (keep) => ({ inputs: x(keep) }))),
  layerCase('causal: false', 'averageContext', () => layers.averageContext({ causal: false }), (keep) => ({ inputs: x(keep) })),

  layerCase('2 heads', 'flashStyleTiledAttention', () => layers.flashStyleTiledAttention({ numHeads: 2 }),
    (keep) => ({ inputs: x(keep) }), softmaxKeyBias),
  layerCase('4 heads over 2, window 3, rotary', 'flashStyleTiledAttention',
    // rotary turns the key bias by each key's position, so the scores no longer all move by one constant
    () => layers.flashStyleTiledAttention({ numHeads: 4, numKvHeads: 2, window: 3, rotary: {} }), (keep) => ({ inputs: x(keep) })),
  layerCase('padding mask', 'flashStyleTiledAttention', () => layers.flashStyleTiledAttention({ numHeads: 2 }),
    (keep) => ({ inputs: x(keep), kwargs: { mask: keep(tf.tensor2d(PADDING)) } }), softmaxKeyBias),
  layerCase('packed segmentIds', 'flashStyleTiledAttention', () => layers.flashStyleTiledAttention({ numHeads: 2 }),
    (keep) => ({ inputs: x(keep), kwargs: { segmentIds: keep(int(SEGMENTS, [B, T])) } }), softmaxKeyBias),
  layerCase('cross-attention over a padded context', 'flashStyleTiledAttention', () => layers.flashStyleTiledAttention({ numHeads: 2 }),
    (keep) => ({ inputs: [x(keep), context(keep)], kwargs: { mask: [null, keep(tf.tensor2d(CONTEXT_PADDING))] } }),
    softmaxKeyBias),

  layerCase('2 heads, 2-token blocks', 'blockSparse', () => layers.blockSparse({ numHeads: 2, layout: blockLayout }),
    (keep) => ({ inputs: x(keep) }), softmaxKeyBias),
  layerCase('2 heads over 1, padding mask', 'blockSparse', () => layers.blockSparse({ numHeads: 2, numKvHeads: 1, layout: blockLayout }),
    (keep) => ({ inputs: x(keep), kwargs: { mask: keep(tf.tensor2d(PADDING)) } }), softmaxKeyBias),
  layerCase('packed segmentIds', 'blockSparse', () => layers.blockSparse({ numHeads: 2, layout: blockLayout }),
    (keep) => ({ inputs: x(keep), kwargs: { segmentIds: keep(int(SEGMENTS, [B, T])) } }), softmaxKeyBias),

  layerCase('2 heads', 'expressiveAttention', () => layers.expressiveAttention({ numHeads: 2 }), (keep) => ({ inputs: x(keep) })),
  layerCase('2 heads over 1, window 3', 'expressiveAttention', () => layers.expressiveAttention({ numHeads: 2, numKvHeads: 1, window: 3 }),
    (keep) => ({ inputs: x(keep) })),
  layerCase('padding mask', 'expressiveAttention', () => layers.expressiveAttention({ numHeads: 2 }),
    (keep) => ({ inputs: x(keep), kwargs: { mask: keep(tf.tensor2d(PADDING)) } })),
  layerCase('packed segmentIds', 'expressiveAttention', () => layers.expressiveAttention({ numHeads: 2 }),
    (keep) => ({ inputs: x(keep), kwargs: { segmentIds: keep(int(SEGMENTS, [B, T])) } })),
  layerCase('encoder (causal: false) with a padding mask', 'expressiveAttention', () => layers.expressiveAttention({ numHeads: 2, causal: false }),
    (keep) => ({ inputs: x(keep), kwargs: { mask: keep(tf.tensor2d(PADDING)) } })),

  layerCase('defaults (expand 2, stateSize 16)', 'selectiveSSM', () => layers.selectiveSSM(), (keep) => ({ inputs: x(keep) })),
  layerCase('stateSize 4, expand 1, convKernel 2', 'selectiveSSM', () => layers.selectiveSSM({ stateSize: 4, expand: 1, convKernel: 2 }),
    (keep) => ({ inputs: x(keep) })),

  layerCase('2 heads', 'aaren', () => layers.aaren({ numHeads: 2 }), (keep) => ({ inputs: x(keep) })),
  layerCase('2 heads, headDim 3', 'aaren', () => layers.aaren({ numHeads: 2, headDim: 3 }), (keep) => ({ inputs: x(keep) })),

  layerCase('2 heads (expandK 0.5, expandV 1)', 'gatedLinearAttention', () => layers.gatedLinearAttention({ numHeads: 2, gateLowRankDim: 4 }),
    (keep) => ({ inputs: x(keep) })),

  layerCase('self-attention', 'multiHeadAttention', () => layers.multiHeadAttention({ numHeads: 2, keyDim: 4 }),
    (keep) => { const q0 = x(keep); return { inputs: q0, kwargs: { value: q0 } }; }, { 'key/bias': SOFTMAX_SHIFT }),
  layerCase('useCausalMask', 'multiHeadAttention', () => layers.multiHeadAttention({ numHeads: 2, keyDim: 4 }),
    (keep) => { const q0 = x(keep); return { inputs: q0, kwargs: { value: q0, useCausalMask: true } }; }, { 'key/bias': SOFTMAX_SHIFT }),
  layerCase('cross-attention with a padded attentionMask', 'multiHeadAttention',
    () => layers.multiHeadAttention({ numHeads: 2, keyDim: 4, valueDim: 3 }),
    (keep) => ({
      inputs: x(keep),
      // every query of a row sees the same keys: the context's padding
      kwargs: { value: context(keep), attentionMask: keep(tf.tidy(() => tf.tensor2d(CONTEXT_PADDING).expandDims(1).tile([1, T, 1]))) },
    }),
    { 'key/bias': SOFTMAX_SHIFT }),
];

/** Every case: each exported op and layer, with its variants. */
export const TRAINING_CASES: readonly TrainingCase[] = [...OP_CASES, ...LAYER_CASES];

/** `ops.<name>` or `layers.<name>`. */
export function coverName(c: TrainingCase): string {
  return 'ops' in c.covers ? `ops.${c.covers.ops}` : `layers.${c.covers.layers}`;
}

/** The exported ops and layer factories that no case trains (empty: everything is covered). */
export function uncovered(): string[] {
  const covered = new Set(TRAINING_CASES.map(coverName));
  return [...Object.keys(ops).map((n) => `ops.${n}`), ...Object.keys(layers).map((n) => `layers.${n}`)].filter((n) => !covered.has(n));
}

/** Runs `fn` with Math.random seeded, as tfjs's initialisers and the layers' own draws read it. */
function seeded<T>(seed: number, fn: () => T): T {
  const random = Math.random;
  Math.random = mulberry32(seed);
  try {
    return fn();
  } finally {
    Math.random = random;
  }
}

/**
 * The case's loss at its initial weights, with no step taken: the same seeded values on every
 * backend, so that the training page can hold webgl's first loss against the cpu's.
 */
export async function initialLoss(c: TrainingCase): Promise<number> {
  const setup = seeded(1, c.setup);
  try {
    const value = setup.loss();
    const [loss] = await value.data();
    value.dispose();
    return loss!;
  } finally {
    setup.dispose();
  }
}

/** A case's loss and gradients at its initial weights ({@link initialGradients}), and what is wrong with them. */
export interface InitialResult {
  name: string;
  backend: string;
  loss: number;
  gradients: GradientSummary[];
  /** Tensors alive after the case minus before (0: nothing leaked). */
  leakedTensors: number;
  ms: number;
  /** A non-finite loss or gradient, a leak, or the error the case threw; empty when all is finite. */
  problems: string[];
}

/**
 * The case's loss and gradients at its initial weights, with no step taken, checked finite: what
 * the training page runs on webgl's half-float textures (`train.html?halfFloat`), where tfjs's own
 * Adam cannot step (see train.ts).
 */
export async function initialGradients(c: TrainingCase): Promise<InitialResult> {
  const started = performance.now();
  const result: InitialResult = { name: c.name, backend: tf.getBackend(), loss: NaN, gradients: [], leakedTensors: 0, ms: 0, problems: [] };
  const before = tf.memory().numTensors;
  let setup: TrainingSetup | undefined;
  try {
    setup = seeded(1, c.setup);
    const { value, grads } = tf.variableGrads(setup.loss, setup.weights.map((w) => w.variable));
    try {
      result.gradients = await Promise.all(setup.weights.map(async (w) => summarise(w.name, (await grads[w.variable.name]!.data()) as Float32Array)));
      result.loss = (await value.data())[0]!;
    } finally {
      tf.dispose([value, grads]);
    }
  } catch (e) {
    result.problems.push(`threw: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    setup?.dispose();
  }
  result.leakedTensors = tf.memory().numTensors - before;
  result.ms = performance.now() - started;
  if (!Number.isFinite(result.loss)) result.problems.push(`the loss is ${result.loss}`);
  for (const g of result.gradients) if (!g.finite) result.problems.push(`the gradient of ${g.weight} is not finite`);
  if (result.leakedTensors !== 0) result.problems.push(`leaked ${result.leakedTensors} tensors`);
  return result;
}

/**
 * Trains one case on the active backend: {@link STEPS} Adam steps at the learning rate
 * {@link FIRST_STEP_FRACTION} sets, recording the losses, the decrease the gradient predicts
 * for each step, the gradients and the tensor counts; then {@link judge}s them.
 */
export async function trainCase(c: TrainingCase, steps = STEPS): Promise<TrainingResult> {
  const started = performance.now();
  const result: TrainingResult = {
    name: c.name, covers: coverName(c), backend: tf.getBackend(), losses: [], predicted: [], learningRate: NaN,
    gradients: [], tensorsPerStep: [], leakedTensors: 0, ms: 0, problems: [],
  };
  const before = tf.memory().numTensors;
  let setup: TrainingSetup | undefined;
  let optimizer: tf.Optimizer | undefined;
  try {
    setup = seeded(1, c.setup);
    const variables = setup.weights.map((w) => w.variable);
    for (let step = 0; step <= steps; step++) {
      const { value, grads } = tf.variableGrads(setup.loss, variables);
      let old: tf.Tensor[] = [];
      try {
        result.losses.push((await value.data())[0]!);
        if (step === steps) break;
        const g = variables.map((v) => {
          const grad = grads[v.name];
          if (!grad) throw new Error(`no gradient for weight ${v.name}`);
          return grad;
        });
        if (step === 0) {
          result.gradients = await Promise.all(setup.weights.map(async (w, i) => summarise(w.name, (await g[i]!.data()) as Float32Array)));
          const l1 = tf.tidy(() => tf.addN(g.map((gi) => tf.sum(tf.abs(gi)))));
          const norm = (await l1.data())[0]!;
          l1.dispose();
          // an all-zero or non-finite gradient gives no learning rate: judge reports it
          if (!(norm > 0) || !Number.isFinite(norm)) break;
          result.learningRate = FIRST_STEP_FRACTION * result.losses[0]! / norm;
          optimizer = tf.train.adam(result.learningRate);
        }
        // the step is computed on the device, and only −g·Δ, its first-order decrease, read back
        old = variables.map((v) => tf.clone(v));
        optimizer!.applyGradients(grads);
        const predicted = tf.tidy(() => tf.neg(tf.addN(g.map((gi, i) => tf.sum(tf.mul(gi, tf.sub(variables[i]!, old[i]!)))))));
        result.predicted.push((await predicted.data())[0]!);
        predicted.dispose();
      } finally {
        tf.dispose([value, grads, old]);
      }
      result.tensorsPerStep.push(tf.memory().numTensors);
    }
  } catch (e) {
    result.error = e instanceof Error ? e.message : String(e);
  } finally {
    optimizer?.dispose();
    setup?.dispose();
  }
  result.leakedTensors = tf.memory().numTensors - before;
  result.ms = performance.now() - started;
  result.problems = judge(result, setup?.zeroGradient ?? new Map(), steps);
  return result;
}

function summarise(weight: string, g: Float32Array): GradientSummary {
  let maxAbs = 0;
  let finite = true;
  for (const e of g) {
    if (!Number.isFinite(e)) finite = false;
    maxAbs = Math.max(maxAbs, Math.abs(e));
  }
  return { weight, maxAbs: finite ? maxAbs : NaN, finite };
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toPrecision(4) : String(v));

/** The checks of a finished case, in words; empty when it trains. */
export function judge(r: TrainingResult, zeroGradient: ReadonlyMap<string, string>, steps = STEPS): string[] {
  if (r.error !== undefined) return [`threw: ${r.error}`];
  const problems: string[] = [];
  const largest = Math.max(0, ...r.gradients.filter((g) => g.finite).map((g) => g.maxAbs));
  for (const g of r.gradients) {
    if (!g.finite) problems.push(`the gradient of ${g.weight} is not finite`);
    else if (zeroGradient.has(g.weight)) {
      if (g.maxAbs > ZERO_GRADIENT_RATIO * largest) {
        problems.push(`the gradient of ${g.weight} is ${fmt(g.maxAbs)} (max |g|), not 0 to rounding ` +
          `(≤ ${ZERO_GRADIENT_RATIO} × ${fmt(largest)}): ${zeroGradient.get(g.weight)}`);
      }
    } else if (!(g.maxAbs > ZERO_GRADIENT_RATIO * largest)) {
      problems.push(`the gradient of ${g.weight} is ${g.maxAbs === 0 ? '0 everywhere' : `${fmt(g.maxAbs)} (max |g|), ` +
        `0 to rounding (≤ ${ZERO_GRADIENT_RATIO} × ${fmt(largest)})`}`);
    }
  }
  if (problems.length > 0) return problems;
  if (r.losses.length !== steps + 1 || !r.losses.every(Number.isFinite)) {
    return [`losses ${r.losses.map(fmt).join(', ')}: expected ${steps + 1} finite values`];
  }
  const L = r.losses;
  const [p0] = r.predicted;
  if (!(p0! > 0)) problems.push(`Adam's first step does not go downhill along the gradient: −g·Δ = ${fmt(p0!)}`);
  else if (L[0]! - L[1]! < ARMIJO * p0!) {
    problems.push(`the first step lowered the loss by ${fmt(L[0]! - L[1]!)} (${fmt(L[0]!)} → ${fmt(L[1]!)}), ` +
      `less than ${ARMIJO} × the ${fmt(p0!)} its gradient predicts`);
  }
  const total = r.predicted.reduce((a, b) => a + b, 0);
  if (L[0]! - L[steps]! < ARMIJO * total) {
    problems.push(`${steps} steps lowered the loss by ${fmt(L[0]! - L[steps]!)} (losses ${L.map(fmt).join(', ')}), ` +
      `less than ${ARMIJO} × the ${fmt(total)} its gradients predict`);
  }
  const settled = r.tensorsPerStep.slice(1);
  if (settled.some((n) => n !== r.tensorsPerStep[0])) {
    problems.push(`the tensor count changes from step to step: ${r.tensorsPerStep.join(', ')}`);
  }
  if (r.leakedTensors !== 0) problems.push(`leaked ${r.leakedTensors} tensors`);
  return problems;
}
