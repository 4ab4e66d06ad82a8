import * as tf from '@tensorflow/tfjs';
import { ops } from '../src/index.js';

/** The two implementations a case compares, both on the webgpu backend. */
export type Side = 'webgpu' | 'reference';

/** What a case times: the op alone, or the op and its gradient. */
export type Pass = 'forward' | 'forward+backward';

/** A mixer under test: an op `[B, T, D] → [B, T, D]` with fixed options. */
export interface Mixer {
  /** Label in reports. */
  name: string;
  /** `y = op(x)` through the given implementation. */
  op(x: tf.Tensor3D, implementation: Side): tf.Tensor3D;
}

/** The mixers the bench measures. */
export const MIXERS: readonly Mixer[] = [
  {
    name: "causalGeneration reduce='min'",
    op: (x, implementation) => ops.causalGeneration(x, { reduce: 'min', implementation }),
  },
  {
    name: "averageContext combine='max' causal",
    op: (x, implementation) => ops.averageContext(x, { combine: 'max', causal: true, implementation }),
  },
];

/** How each pass runs and the bytes it must move at least, per element of x. */
export const PASSES: Record<Pass, { bytesPerElement: number; formula: string }> = {
  forward: { bytesPerElement: 8, formula: '8·B·T·D (read x, write y; float32)' },
  'forward+backward': {
    bytesPerElement: 20,
    formula: '20·B·T·D (forward: read x, write y; backward: read x, dy, write dx; float32)',
  },
};

/** One row of the report: a mixer, a pass and a shape; timed for both sides. */
export interface BenchCase {
  mixer: Mixer;
  pass: Pass;
  /** `[B, T, D]`. */
  shape: [number, number, number];
  /** Bytes the pass moves at least (see {@link PASSES}), the numerator of GB/s. */
  bytes: number;
}

/** Sequence lengths of a full run and of `--quick`. */
export const LENGTHS = { full: [256, 1024, 4096, 16384], quick: [256, 1024] } as const;
/** Batch and width of every case. */
export const BATCH = 1;
export const WIDTH = 256;

/** Every mixer × pass × length, in report order. */
export function benchCases(lengths: readonly number[]): BenchCase[] {
  const cases: BenchCase[] = [];
  for (const mixer of MIXERS) {
    for (const pass of Object.keys(PASSES) as Pass[]) {
      for (const T of lengths) {
        cases.push({ mixer, pass, shape: [BATCH, T, WIDTH], bytes: PASSES[pass].bytesPerElement * BATCH * T * WIDTH });
      }
    }
  }
  return cases;
}

/**
 * Runs a case once: `y` for the forward, `dx` of `⟨op(x), dy⟩` for forward+backward (the
 * vector-Jacobian product, so no extra multiply or sum is timed). Intermediates are freed.
 */
export function runCase(c: BenchCase, side: Side, x: tf.Tensor3D, dy: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => {
    if (c.pass === 'forward') return c.mixer.op(x, side);
    return tf.grad((input: tf.Tensor) => c.mixer.op(input as tf.Tensor3D, side))(x, dy);
  }) as tf.Tensor3D;
}

/**
 * Attention cases: the shape of the peer comparison in ARCHITECTURE.md ("The peer to beat"),
 * causal, T = Tq = Tk. Q is `[B, T, H, K]`, K and V `[B, T, Hkv, K]`.
 */
export const ATTENTION = { B: 1, H: 4, Hkv: 4, K: 64 } as const;
/** Attention sequence lengths of a full run and of `--quick`. */
export const ATTENTION_LENGTHS = { full: [128, 256, 1024, 4096, 16384], quick: [128, 256] } as const;

/**
 * Flops of each pass in units of the causal forward, and how they are counted (the numerator
 * of GFLOP/s; the same count for kernel and reference, whatever each actually computes).
 */
export const ATTENTION_PASSES: Record<Pass, { forwards: number; formula: string }> = {
  forward: {
    forwards: 1,
    formula: '2·B·H·T²·K (q·kᵀ and p·v, 2·T²·K flops each per head, halved by the causal mask)',
  },
  'forward+backward': {
    forwards: 3.5,
    formula: '3.5 × 2·B·H·T²·K (the forward, plus a backward counted as 2.5 forwards: five matmuls ' +
      'against two, as FlashAttention-2\'s benchmarks count it)',
  },
};

/** One row of the attention table: a pass and a length. */
export interface AttentionCase {
  pass: Pass;
  T: number;
  /** Flops the pass counts (see {@link ATTENTION_PASSES}), the numerator of GFLOP/s. */
  flops: number;
}

/** Every pass × length, in report order: each pass by increasing T, so a run predicts the next. */
export function attentionCases(lengths: readonly number[]): AttentionCase[] {
  const { B, H, K } = ATTENTION;
  return (Object.keys(ATTENTION_PASSES) as Pass[]).flatMap((pass) =>
    lengths.map((T) => ({ pass, T, flops: ATTENTION_PASSES[pass].forwards * 2 * B * H * T * T * K })));
}

/** The tensors of an attention case: q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`, dO like q. */
export interface AttentionInputs {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  dO: tf.Tensor4D;
}

/**
 * Runs causal attention once: `[o]` for the forward, `[dq, dk, dv]` of `⟨attention(q, k, v), dO⟩`
 * for forward+backward (the vector-Jacobian product). Intermediates are freed.
 */
export function runAttention(pass: Pass, side: Side, x: AttentionInputs): tf.Tensor4D[] {
  const attention = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
    ops.flashAttention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, { causal: true, implementation: side });
  return tf.tidy(() => (pass === 'forward'
    ? [attention(x.q, x.k, x.v)]
    : tf.grads(attention)([x.q, x.k, x.v], x.dO))) as tf.Tensor4D[];
}
