import * as tf from '@tensorflow/tfjs';
import { broadcast, copy, sumAlong } from '../../cpu-host.js';
import { expNonPositive, matMul } from '../../tensors.js';

// A chunk's own terms, Σ_{j ≤ t} (Σ_K q_t ⊙ k_j ⊙ exp(G_t − G_j)) · v_j, in sub-chunks: pairs of
// tokens in one sub-chunk take the pairwise `[s, s, K]` decays, and pairs across sub-chunks a
// matrix product, each side decayed to the boundary between them (gated-linear-attention.md).

/**
 * Tokens per sub-chunk. A chunk of c = m·s tokens forms `[s, s, K]` pairwise decays per
 * sub-chunk and `[m, s, K]` keys decayed to each sub-chunk's boundary: (s + m)·K numbers a token,
 * least near s = m = √c, where forming all `[c, c, K]` pairs took c·K.
 */
export const GLA_SUB_CHUNK = 8;

/** How a chunk of L tokens is cut: m sub-chunks of s tokens, and the masks of their pairs. */
export interface SubChunks {
  m: number;
  s: number;
  /** `[s, s, 1]`: 1 where u ≤ t (row t, column u) within a sub-chunk. */
  pairs: tf.Tensor;
  /** `[m, m, 1, 1]`: 1 where sub-chunk j precedes sub-chunk i (row i, column j); absent when m = 1. */
  blocks?: tf.Tensor;
}

/**
 * `[n, n]`: 1 where the column's index is at most the row's, or below it if `strict`. L·x is the
 * running sum of x over its rows, Lᵀ·x the one from the end. Uploaded from an array, where
 * tf.linalg.bandPart takes six launches.
 *
 * @example
 * ```ts
 * lowerOnes(2).print();         // [[1, 0], [1, 1]]
 * lowerOnes(2, true).print();   // [[0, 0], [1, 0]]
 * ```
 */
export function lowerOnes(n: number, strict = false): tf.Tensor2D {
  const ones = new Float32Array(n * n);
  for (let t = 0; t < n; t++) ones.fill(1, t * n, t * n + t + (strict ? 0 : 1));
  return tf.tensor2d(ones, [n, n]);
}

/**
 * The cuts into sub-chunks of `sub` tokens of the chunk lengths met in one call, built once each,
 * and their disposal. A length must be at most `sub` or a multiple of it (the reference's chunk
 * sizes are); one at most `sub` is a single sub-chunk.
 *
 * @example
 * ```ts
 * const cuts = subChunkCache();
 * const { m, s } = cuts.cutOf(32);
 * [m, s];   // [4, 8]
 * cuts.dispose();
 * ```
 */
export function subChunkCache(sub = GLA_SUB_CHUNK): { cutOf: (L: number) => SubChunks; dispose: () => void } {
  const cuts = new Map<number, SubChunks>();
  return {
    cutOf: (L) => {
      if (!cuts.has(L)) {
        const s = Math.min(sub, L);
        const m = L / s;
        if (!Number.isInteger(m)) throw new Error(`gatedLinearAttention: a chunk of ${L} tokens is neither at most ${sub} nor a multiple of it (internal).`);
        cuts.set(L, {
          m, s,
          pairs: tf.tidy(() => lowerOnes(s).reshape([s, s, 1])),
          blocks: m > 1 ? tf.tidy(() => lowerOnes(m, true).reshape([m, m, 1, 1])) : undefined,
        });
      }
      return cuts.get(L)!;
    },
    dispose: () => cuts.forEach((c) => tf.dispose([c.pairs, ...(c.blocks ? [c.blocks] : [])])),
  };
}

/**
 * Σ over an inner `axis` of x: on cpu {@link sumAlong} (a host loop), elsewhere a product with a
 * row of ones, where webgl's sum over an inner axis would transpose x first (a pass as long again
 * as the sum). wasm takes the product too (alike there), so that its tests run webgl's path.
 */
function sumInner(x: tf.Tensor, axis: number): tf.Tensor {
  if (tf.getBackend() === 'cpu') return sumAlong(x, axis);
  const shape = x.shape;
  const n = shape[axis]!;
  const runs = x.reshape([tf.util.sizeFromShape(shape.slice(0, axis)), n, tf.util.sizeFromShape(shape.slice(axis + 1))]);
  return matMul(tf.ones([1, n]), runs).reshape(shape.filter((_, i) => i !== axis));
}

/**
 * The pairs within each sub-chunk of a chunk's rows: q, k and G `[R, L, K]` (G the running sum
 * of the gates from the chunk's start, so G_t ≤ G_u ≤ 0 for u ≤ t). `weights` `[R·m, s, s, K]` =
 * exp(G_t − G_u) for u ≤ t and 0 above (the exponent masked to 0 before the exp, so no ∞ is
 * formed) and `near` `[R·m, s, s]` = Σ_K q_t ⊙ k_u ⊙ weights. Each in a scope of its own, so that
 * no temporary of the size of `weights` outlives it.
 */
function nearTerms(q: tf.Tensor, k: tf.Tensor, G: tf.Tensor, { m, s, pairs }: SubChunks) {
  const [R, , K] = q.shape as [number, number, number];
  const [qs, ks, Gs] = [q, k, G].map((x) => x.reshape([R * m, s, K]));
  const weights = tf.tidy(() => broadcast.mul(expNonPositive(broadcast.mul(broadcast.sub(Gs!.expandDims(2), Gs!.expandDims(1)), pairs)), pairs));
  const near = tf.tidy(() => tf.sum(broadcast.mul(broadcast.mul(qs!.expandDims(2), ks!.expandDims(1)), weights), 3));
  return { weights, near };
}

/**
 * The pairs across sub-chunks (m > 1), with b_i the G entering sub-chunk i (0 for the first,
 * else G at the last token of sub-chunk i − 1): `qToStart` = q ⊙ `fromStart`, `fromStart` =
 * exp(G_t − b_i) `[R, m, s, K]`; `kToStart` = k ⊙ `toStart` `[R, m, m, s, K]`, `toStart` =
 * exp(b_i − G_u) for u in a sub-chunk j < i and 0 otherwise; `far` `[R·m, s, L]` =
 * qToStart_i · kToStart_iᵀ. Every exponent is ≤ 0.
 */
function farTerms(q: tf.Tensor, k: tf.Tensor, G: tf.Tensor, { m, s, blocks }: SubChunks) {
  const [R, L, K] = q.shape as [number, number, number];
  const G4 = G.reshape([R, m, s, K]);
  const start = copy.pad(copy.slice(G4, [0, 0, s - 1, 0], [R, m - 1, 1, K]), [[0, 0], [1, 0], [0, 0], [0, 0]]);   // b, [R, m, 1, K]
  const fromStart = expNonPositive(broadcast.sub(G4, start));
  const qToStart = broadcast.mul(q.reshape([R, m, s, K]), fromStart);
  const toStart = tf.tidy(() => broadcast.mul(expNonPositive(broadcast.mul(broadcast.sub(start.expandDims(2), G4.expandDims(1)), blocks!)), blocks!));
  const kToStart = broadcast.mul(toStart, k.reshape([R, 1, m, s, K]));
  const far = matMul(qToStart.reshape([R * m, s, K]), kToStart.reshape([R * m, L, K]), false, true);
  return { fromStart, qToStart, toStart, kToStart, far };
}

/**
 * A chunk's own part of its output, `[R, L, V]`: Σ_{j ≤ t} (Σ_K q_t ⊙ k_j ⊙ exp(G_t − G_j)) · v_j,
 * from q, k, G `[R, L, K]` (see {@link nearTerms} and {@link farTerms}) and v `[R, L, V]`.
 *
 * @example
 * ```ts
 * // two tokens, the second's gate halving the first's term: 1, then 0.5·1 + 2
 * const cuts = subChunkCache();
 * const ones = tf.ones([1, 2, 1]);
 * inChunkOutput(ones, ones, tf.tensor3d([[[1], [2]]]), tf.tensor3d([[[0], [-Math.LN2]]]), cuts.cutOf(2)).print();   // [[[1], [2.5]]]
 * cuts.dispose();
 * ```
 */
export function inChunkOutput(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, G: tf.Tensor, cut: SubChunks): tf.Tensor {
  return tf.tidy(() => {
    const [R, L] = q.shape as [number, number];
    const V = v.shape[2]!;
    const own = tf.tidy(() => matMul(nearTerms(q, k, G, cut).near, v.reshape([R * cut.m, cut.s, V])).reshape([R, L, V]));
    return cut.blocks ? tf.add(own, tf.tidy(() => matMul(farTerms(q, k, G, cut).far.reshape([R, L, L]), v))) : own;
  });
}

/**
 * The gradients of {@link inChunkOutput} from dO `[R, L, V]`: dq, dk `[R, L, K]`, dv `[R, L, V]`
 * and dG `[R, L, K]`. Within a sub-chunk, with P = (dO·vᵀ) ⊙ weights: dq = Σ_u P·k_u,
 * dk = Σ_t P·q_t. Across sub-chunks, with dFar = dO·vᵀ: dq = (dFar·kToStart) ⊙ fromStart and
 * dk = Σ_i (dFarᵀ·qToStart)_i ⊙ toStart_i. Each pair's exponent is G_t − G_u (a boundary b_i
 * enters one factor with + and the other with −, so it cancels and has no gradient): G_t enters
 * as q's factor, G_u as k's, and dG = q ⊙ dq − k ⊙ dk.
 *
 * @example
 * ```ts
 * // inChunkOutput's example under Σ out: the first value reaches both outputs, 1 + 0.5
 * const cuts = subChunkCache();
 * const ones = tf.ones([1, 2, 1]);
 * const { dv } = inChunkGrads(ones, ones, tf.tensor3d([[[1], [2]]]), tf.tensor3d([[[0], [-Math.LN2]]]), ones, cuts.cutOf(2));
 * dv.print();   // [[[1.5], [1]]]
 * cuts.dispose();
 * ```
 */
export function inChunkGrads(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, G: tf.Tensor, dO: tf.Tensor, cut: SubChunks) {
  return tf.tidy(() => {
    const { m, s } = cut;
    const [R, L, K] = q.shape as [number, number, number];
    const V = v.shape[2]!;
    // within sub-chunks, then across them: one part's [·, s, K]-sized terms live at a time
    let [dq, dk, dv] = tf.tidy(() => {
      const { weights, near } = nearTerms(q, k, G, cut);
      const [vs, dOs] = [v, dO].map((x) => x.reshape([R * m, s, V]));
      const P = broadcast.mul(matMul(dOs!, vs!, false, true).expandDims(3), weights);                 // [R·m, s, s, K]
      return [
        tf.tidy(() => sumInner(broadcast.mul(P, k.reshape([R * m, 1, s, K])), 2).reshape([R, L, K])),
        tf.tidy(() => sumInner(broadcast.mul(P, q.reshape([R * m, s, 1, K])), 1).reshape([R, L, K])),
        matMul(near, dOs!, true, false).reshape([R, L, V]),
      ];
    });
    if (cut.blocks) {
      [dq, dk, dv] = tf.tidy(() => {
        const { fromStart, qToStart, toStart, kToStart, far } = farTerms(q, k, G, cut);
        const dFar = matMul(dO, v, false, true).reshape([R * m, s, L]);
        return [
          broadcast.add(dq!, broadcast.mul(matMul(dFar, kToStart.reshape([R * m, L, K])).reshape([R, m, s, K]), fromStart).reshape([R, L, K])),
          broadcast.add(dk!, tf.tidy(() => sumInner(broadcast.mul(matMul(dFar, qToStart.reshape([R * m, s, K]), true, false).reshape([R, m, m, s, K]), toStart), 1)).reshape([R, L, K])),
          broadcast.add(dv!, matMul(far.reshape([R, L, L]), dO, true, false)),
        ];
      });
    }
    return { dq: dq!, dk: dk!, dv: dv!, dG: broadcast.sub(broadcast.mul(q, dq!), broadcast.mul(k, dk!)) };
  });
}
