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
