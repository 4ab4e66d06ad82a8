import * as tf from '@tensorflow/tfjs';
import { DEFAULT_LAYOUT, mixers, ops, visibleKeys, type MixerCase, type MixerDescriptor } from '../src/index.js';
import { CASE_SIZES } from '../src/mixers/cases.js';

/** The two implementations a case compares, both on the webgpu backend. */
export type Side = 'webgpu' | 'reference';

/** What a case times: the op alone, or the op and its gradient. */
export type Pass = 'forward' | 'forward+backward';

/** A mixer under test: an op `[B, T, D] → [B, T, D]` with fixed options. */
export interface Mixer {
  /** Label in reports: the mixer's name and its case's options. */
  name: string;
  /** `y = op(x)` through the given implementation. */
  op(x: tf.Tensor3D, implementation: Side): tf.Tensor3D;
}

/**
 * A registered mixer's bench case at T = 1: its names, its wording with T for the length, and
 * `run`, which takes tensors of any length (the case's own inputs are freed here). Call it once
 * a backend is set: a case draws tensors.
 */
export function probe(m: MixerDescriptor): Pick<MixerCase, 'op' | 'about' | 'names' | 'run'> {
  const c = m.benchCase(1, 0);
  tf.dispose([...c.inputs, ...c.constants]);
  return { op: c.op, names: c.names, run: c.run, about: c.about.replace(/\[1, 1,/g, '[1, T,') };
}

/** The options part of a case's wording, after its inputs' shapes. */
const optionsOf = (about: string) => about.slice(about.indexOf('; ') + 2);

/**
 * The mixers the bandwidth table measures: every registered mixer whose bench case maps one
 * input x `[1, T, D]` to an output of its shape, so that 8·B·T·D bytes bound a forward.
 */
export function sequenceMixers(): Mixer[] {
  return mixers.map((m) => ({ m, c: probe(m) })).filter(({ c }) => c.names.join() === 'x')
    .map(({ m, c }) => ({ name: `${m.name} ${optionsOf(c.about)}`, op: (x, implementation) => c.run(implementation, [x]) as tf.Tensor3D }));
}

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
/** Batch and width of every case: the bench cases' own. */
export const BATCH = 1;
export const WIDTH = CASE_SIZES.D;

/** Every mixer of {@link sequenceMixers} × pass × length, in report order. */
export function benchCases(lengths: readonly number[]): BenchCase[] {
  const cases: BenchCase[] = [];
  for (const mixer of sequenceMixers()) {
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
export const ATTENTION = { B: 1, H: CASE_SIZES.H, Hkv: CASE_SIZES.H, K: CASE_SIZES.K } as const;
/**
 * Composed causal attention as a user writes it: q, k, v `[B, T, H, K]`, `bias` `[T, T]`
 * (0 on and below the diagonal, −1e9 above) → `[B, T, H, K]`, scale 1/√K. Its intermediates
 * are the caller's to free (it runs inside gradients).
 */
export function composedAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, bias: tf.Tensor2D): tf.Tensor {
  const heads = (x: tf.Tensor) => x.transpose([0, 2, 1, 3]);
  const scores = tf.add(tf.mul(tf.matMul(heads(q), heads(k), false, true), 1 / Math.sqrt(q.shape[3]!)), bias);
  return tf.matMul(tf.softmax(scores), heads(v)).transpose([0, 2, 1, 3]);
}

/** The causal bias of composed attention, built once per length. */
export function causalBias(T: number): tf.Tensor2D {
  return tf.tidy(() => {
    const i = tf.range(0, T, 1, 'int32');
    const above = tf.greater(i.reshape([1, T]), i.reshape([T, 1]));
    return tf.mul(tf.cast(above, 'float32'), -1e9) as tf.Tensor2D;
  });
}

/**
 * Tolerance of two float32 causal attentions at length T against each other (composed or a
 * peer's against flashAttention), relative to max|reference|: four chained float32 sums (q·k
 * over K, the softmax row over T, p·v over T, and the backward's over T) each within the
 * recursive-summation bound n·u, u = 2⁻²⁴. A wrong mask, scale or layout errs by 1e-2 to 1.
 */
export const attentionTolerance = (T: number) => 4 * (T + ATTENTION.K) * 2 ** -24;

/** Attention sequence lengths of a full run and of `--quick`. */
export const ATTENTION_LENGTHS = { full: [128, 256, 1024, 4096, 16384], quick: [128, 256] } as const;

/**
 * An attention op under test: a registered mixer's bench case `ops.<op>(q, k, v)`, causal,
 * through the WGSL kernel or the tfjs-ops reference.
 */
export interface AttentionOp {
  /** The `ops.*` name, the label in reports. */
  name: string;
  /** The case in words, for the report. */
  about: string;
  /** How {@link AttentionOp.pairs} counts, for the report. */
  pairsFormula: string;
  /** The (query, key) pairs the op counts at T = Tq = Tk; the kernel's time is predicted in proportion. */
  pairs(T: number): number;
  /**
   * The tokens of a shorter problem whose last S queries (and, forward+backward, last S keys)
   * give exactly the full problem's last S: `q` the query tokens, `kv` the key/value tokens,
   * each ending with the last S tokens.
   */
  tail(T: number, S: number): { q: Int32Array; kv: Int32Array };
  /** The case's op on these q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]` through `implementation`. */
  apply(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, implementation: Side): tf.Tensor4D;
}

const range = (start: number, end: number) => Int32Array.from({ length: end - start }, (_, i) => start + i);

/** Causal over all keys: T²/2 pairs; the last S queries against all T keys (bottom-right aligned). */
const causal = {
  pairsFormula: 'T²/2 (causal; the exact T(T+1)/2 differs by under 1% at T ≥ 128)',
  pairs: (T: number) => (T * T) / 2,
  tail: (T: number, S: number) => ({ q: range(T - S, T), kv: range(0, T) }),
};

const layoutPairsAt = new Map<number, number>();

/** The token pairs of the default block-sparse layout at T, Σ_i |visibleKeys(i)|; counted once per T. */
function layoutPairs(T: number): number {
  let n = layoutPairsAt.get(T);
  if (n === undefined) {
    n = 0;
    for (let i = 0; i < T; i++) n += visibleKeys(i, DEFAULT_LAYOUT).length;
    layoutPairsAt.set(T, n);
  }
  return n;
}

/**
 * The last S queries of a block-sparse layout with the tokens they see, in order: a sequence
 * in which those queries see the same tokens as in the full one (checked here, as this holds
 * for whole blocks and a layout without stride, such as the default).
 */
function layoutTail(T: number, S: number): { q: Int32Array; kv: Int32Array } {
  const seen = new Set<number>();
  for (let i = T - S; i < T; i++) for (const j of visibleKeys(i, DEFAULT_LAYOUT)) seen.add(j);
  for (let i = T - S; i < T; i++) seen.add(i);
  const tokens = Int32Array.from([...seen].sort((a, b) => a - b));
  const n = tokens.length;
  for (let r = n - S; r < n; r++) {
    const short = Array.from(visibleKeys(r, DEFAULT_LAYOUT), (j) => tokens[j]!).join();
    if (short !== visibleKeys(tokens[r]!, DEFAULT_LAYOUT).join()) {
      throw new Error(`bench: the block-sparse tail of T = ${T} does not keep the layout of query ${tokens[r]}.`);
    }
  }
  return { q: tokens, kv: tokens };
}

/** How the pairs of an op that is not causal over every key are counted, by its `ops` name. */
const PAIR_COUNTS: Record<string, Pick<AttentionOp, 'pairs' | 'pairsFormula' | 'tail'>> = {
  blockSparseAttention: { pairsFormula: 'Σ_i |visibleKeys(i)|, the pairs the layout lets through (O(T))', pairs: layoutPairs, tail: layoutTail },
};

/**
 * The attention ops the bench measures, in the registry's order: every registered mixer that
 * decodes from a key/value cache, through its bench case (q, k, v, causal or its layout's
 * visibility). Its references hold `[B, H, T, T]` scores or chunks of them.
 */
export function attentionOps(): AttentionOp[] {
  return mixers.filter((m) => m.decode === 'cache').map((m) => {
    const c = probe(m);
    if (c.names.join() !== 'q,k,v') {
      throw new Error(`bench: the attention section expects ${m.name}'s bench case to take q, k, v; it takes ${c.names.join(', ')}.`);
    }
    return {
      name: c.op, about: `layers.${m.name}'s op; ${c.about} (docs/${m.guide}.md)`, ...(PAIR_COUNTS[c.op] ?? causal),
      apply: (q, k, v, implementation) => c.run(implementation, [q, k, v]) as tf.Tensor4D,
    };
  });
}

/**
 * Flops of each pass in units of the forward, and how they are counted (the numerator of
 * GFLOP/s; the same count for kernel and reference, whatever each actually computes).
 */
export const ATTENTION_PASSES: Record<Pass, { forwards: number; formula: string }> = {
  forward: {
    forwards: 1,
    formula: '4·B·H·K·P, P the (query, key) pairs counted per op (q·kᵀ and p·v, 2·K flops per pair each, per head); ' +
      'causal full attention: P = T²/2, so 2·B·H·T²·K',
  },
  'forward+backward': {
    forwards: 3.5,
    formula: '3.5 × the forward (a backward counted as 2.5 forwards: five matmuls ' +
      'against two, as FlashAttention-2\'s benchmarks count it)',
  },
};

/** One row of an attention table: an op, a pass and a length. */
export interface AttentionCase {
  op: AttentionOp;
  pass: Pass;
  T: number;
  /** Flops the pass counts (see {@link ATTENTION_PASSES}), the numerator of GFLOP/s. */
  flops: number;
}

/** Every pass × length of an op, each pass by increasing T, so that a run predicts the next. */
export function attentionCases(op: AttentionOp, lengths: readonly number[]): AttentionCase[][] {
  const { B, H, K } = ATTENTION;
  return (Object.keys(ATTENTION_PASSES) as Pass[]).map((pass) =>
    lengths.map((T) => ({ op, pass, T, flops: ATTENTION_PASSES[pass].forwards * 4 * B * H * K * op.pairs(T) })));
}

/** The tensors of an attention case: q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`, dO like q. */
export interface AttentionInputs {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  dO: tf.Tensor4D;
}

/**
 * Runs an attention op once: `[o]` for the forward, `[dq, dk, dv]` of `⟨op(q, k, v), dO⟩` for
 * forward+backward (the vector-Jacobian product). Intermediates are freed.
 */
export function runAttention(op: AttentionOp, pass: Pass, side: Side, x: AttentionInputs): tf.Tensor4D[] {
  const attention = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => op.apply(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, side);
  return tf.tidy(() => (pass === 'forward'
    ? [attention(x.q, x.k, x.v)]
    : tf.grads(attention)([x.q, x.k, x.v], x.dO))) as tf.Tensor4D[];
}

/**
 * Decode: one query `[B, 1, H, K]` against a key/value cache `[B, Tk, Hkv, K]` (every key
 * visible), through `ops.flashAttention`'s split-K kernels, its unsplit kernel and its reference.
 */
export const DECODE_CACHES = { full: [4096, 16384, 65536], quick: [4096, 16384] } as const;

/** The three ways a decode step runs. */
export type DecodeSide = 'split' | 'unsplit' | 'reference';

/** One decode step: `ops.flashAttention(q, k, v)` with one query, through `side`. */
export function runDecode(side: DecodeSide, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
  if (side === 'reference') return ops.flashAttention(q, k, v, { causal: true, implementation: 'reference' });
  return ops.flashAttention(q, k, v, { causal: true, split: side === 'split' ? 'always' : 'never', implementation: 'webgpu' });
}
