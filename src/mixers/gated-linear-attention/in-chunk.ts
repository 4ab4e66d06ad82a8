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
 * The cuts of the chunk lengths met in one call, built once each, and their disposal. A length
 * must be at most s or a multiple of it (the reference's chunk sizes are).
 *
 * @example
 * ```ts
 * const cuts = subChunkCache();
 * const { m, s } = cuts.cutOf(32);
 * [m, s];   // [4, 8]
 * cuts.dispose();
 * ```
 */
export function subChunkCache(): { cutOf: (L: number) => SubChunks; dispose: () => void } {
  const cuts = new Map<number, SubChunks>();
  return {
    cutOf: (L) => {
      if (!cuts.has(L)) {
        const s = Math.min(GLA_SUB_CHUNK, L);
        const m = L / s;
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
 * The decayed products of a chunk's rows: q, k and G `[R, L, K]` (G the running sum of the gates
 * from the chunk's start, so G_t ≤ G_j ≤ 0 for j ≤ t). Within sub-chunk i, `weights`
 * `[R·m, s, s, K]` = exp(G_t − G_u) for u ≤ t and 0 above (the exponent masked to 0 before the
 * exp, so no ∞ is formed) and `near` `[R·m, s, s]` = Σ_K q_t ⊙ k_u ⊙ weights. Across them, with
 * b_i the G entering sub-chunk i (0 for the first, else G at the last token of sub-chunk i − 1):
 * `qToStart` = q ⊙ `fromStart`, `fromStart` = exp(G_t − b_i) `[R, m, s, K]`; `kToStart`
 * `[R, m, m, s, K]` = k_u ⊙ `toStart`, `toStart` = exp(b_i − G_u) for u in a sub-chunk j < i and 0
 * otherwise; `far` `[R·m, s, L]` = qToStart_i · kToStart_iᵀ. Every exponent is ≤ 0.
 */
function pairTerms(q: tf.Tensor, k: tf.Tensor, G: tf.Tensor, { m, s, pairs, blocks }: SubChunks) {
  const [R, L, K] = q.shape as [number, number, number];
  const [qs, ks, Gs] = [q, k, G].map((x) => x.reshape([R * m, s, K]));
  const weights = broadcast.mul(expNonPositive(broadcast.mul(broadcast.sub(Gs!.expandDims(2), Gs!.expandDims(1)), pairs)), pairs);
  const near = tf.sum(tf.mul(broadcast.mul(qs!.expandDims(2), ks!.expandDims(1)), weights), 3);
  if (!blocks) return { weights, near };
  const G4 = G.reshape([R, m, s, K]);
  const start = copy.pad(copy.slice(G4, [0, 0, s - 1, 0], [R, m - 1, 1, K]), [[0, 0], [1, 0], [0, 0], [0, 0]]);   // b, [R, m, 1, K]
  const fromStart = expNonPositive(broadcast.sub(G4, start));
  const qToStart = tf.mul(q.reshape([R, m, s, K]), fromStart);
  const toStart = broadcast.mul(expNonPositive(broadcast.mul(broadcast.sub(start.expandDims(2), G4.expandDims(1)), blocks)), blocks);
  const kToStart = broadcast.mul(toStart, k.reshape([R, 1, m, s, K]));
  const far = matMul(qToStart.reshape([R * m, s, K]), kToStart.reshape([R * m, L, K]), false, true);
  return { weights, near, fromStart, qToStart, toStart, kToStart, far };
}

/**
 * A chunk's own part of its output, `[R, L, V]`: Σ_{j ≤ t} (Σ_K q_t ⊙ k_j ⊙ exp(G_t − G_j)) · v_j,
 * from q, k, G `[R, L, K]` (see {@link pairTerms}) and v `[R, L, V]`.
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
    const { near, far } = pairTerms(q, k, G, cut);
    const own = matMul(near, v.reshape([R * cut.m, cut.s, V])).reshape([R, L, V]);
    return far ? tf.add(own, matMul(far.reshape([R, L, L]), v)) : own;
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
    const { weights, near, fromStart, qToStart, kToStart, toStart, far } = pairTerms(q, k, G, cut);
    const [vs, dOs] = [v, dO].map((x) => x.reshape([R * m, s, V]));
    const P = broadcast.mul(matMul(dOs!, vs!, false, true).expandDims(3), weights);                   // [R·m, s, s, K]
    let dq = sumAlong(broadcast.mul(P, k.reshape([R * m, 1, s, K])), 2).reshape([R, L, K]);
    let dk = sumAlong(broadcast.mul(P, q.reshape([R * m, s, 1, K])), 1).reshape([R, L, K]);
    let dv = matMul(near, dOs!, true, false).reshape([R, L, V]);
    if (far) {
      const dFar = matMul(dO, v, false, true).reshape([R * m, s, L]);
      dv = tf.add(dv, matMul(far.reshape([R, L, L]), dO, true, false));
      dq = tf.add(dq, tf.mul(matMul(dFar, kToStart!.reshape([R * m, L, K])).reshape([R, m, s, K]), fromStart!).reshape([R, L, K]));
      const perQuery = matMul(dFar, qToStart!.reshape([R * m, s, K]), true, false).reshape([R, m, m, s, K]);
      dk = tf.add(dk, sumAlong(tf.mul(perQuery, toStart!), 1).reshape([R, L, K]));
    }
    return { dq, dk, dv, dG: tf.sub(tf.mul(q, dq), tf.mul(k, dk)) };
  });
}
