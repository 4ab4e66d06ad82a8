import * as tf from '@tensorflow/tfjs';
import { broadcast, copy, swapMiddleAxes } from '../../cpu-host.js';
import { inChunkGrads, inChunkOutput, subChunkCache, GLA_SUB_CHUNK, type SubChunks } from './in-chunk.js';
import { chunksAlong, expNonPositive, finiteOnly, matMul, nonFiniteCount, poisonWhere, reverseCumsum, zeroWhereNotFinite } from '../../tensors.js';

/** The resolved inputs of one gated linear attention call, checked by the op. */
export interface GlaArgs {
  /** `[B, T, H, K]` */
  q: tf.Tensor4D;
  /** `[B, T, H, K]` */
  k: tf.Tensor4D;
  /** `[B, T, H, V]` */
  v: tf.Tensor4D;
  /** `[B, T, H, K]`, ≤ 0: the log forget gate. */
  g: tf.Tensor4D;
  /** Multiplies q; 1/sqrt(K) unless the caller chose another. */
  scale: number;
  /** `[B, H, K, V]`; absent means zeros. */
  initialState?: tf.Tensor4D;
}

/**
 * Tokens per chunk. A chunk's own terms (in-chunk.ts) cost O(c·(s + c/s)·K) elementwise work
 * and memory in sub-chunks of s, and its products with the values O(c²·(K + V)); the state
 * carried between chunks a product, O(K·V) per token, and a few dozen tfjs ops per chunk each way.
 * 64 would halve the launches for twice the products' work (measured alike on wasm and cpu at
 * T = 1024), 16 the reverse.
 */
export const GLA_CHUNK = 32;

/** `[B, T, H, X]` → `[B, H, T, X]`, and back. */
export const headsFirst = (x: tf.Tensor) => swapMiddleAxes(x as tf.Tensor4D);

/**
 * The running sum of `x` along its last axis. tfjs 4.22's Cumsum gradient transposes its result
 * when the axis is not the last one (a shape error under tf.grad), so every cumsum here that is
 * differentiated runs on the last axis.
 */
const cumsumLast = (x: tf.Tensor) => tf.cumsum(x, x.rank - 1);

/**
 * The chunk lengths of T tokens: GLA_CHUNK, then the remainder, cut in two where it exceeds a
 * sub-chunk without filling whole ones (its whole sub-chunks, then the rest as one).
 */
function chunkSizes(T: number): number[] {
  const sizes: number[] = [];
  for (let t0 = 0; t0 < T; t0 += GLA_CHUNK) {
    const L = Math.min(GLA_CHUNK, T - t0);
    const rest = L > GLA_SUB_CHUNK ? L % GLA_SUB_CHUNK : 0;
    sizes.push(...(rest ? [L - rest, rest] : [L]));
  }
  return sizes;
}

/**
 * The pieces of `x` along `axis`, x itself when there is one; a cut x is disposed (it is a
 * temporary here), so that the whole and its pieces are not both held.
 */
function pieces(x: tf.Tensor, sizes: number[], axis: number): tf.Tensor[] {
  if (sizes.length === 1) return [x];
  let t0 = 0;
  const out = chunksAlong(x, sizes.map((n): [number, number] => [t0, (t0 += n)]), axis);
  x.dispose();
  return out;
}

/** `[B, H, L, X]` as `[B·H, L, X]`, the rows the in-chunk terms take, and back. */
const rows = (x: tf.Tensor) => x.reshape([x.shape[0]! * x.shape[1]!, x.shape[2]!, x.shape[3]!]);
const unrows = (x: tf.Tensor, [B, H]: number[]) => x.reshape([B!, H!, x.shape[1]!, x.shape[2]!]);

/**
 * One chunk's decays, shared by the forward and the backward's recomputation, from its gates
 * `[B, H, K, L]`: G `[B, H, L, K]` the cumulative gate from the chunk's start, `decayG` = exp(G_t),
 * `toEnd` = exp(G_last − G_j), every exponent ≤ 0.
 */
function chunkDecays(g: tf.Tensor) {
  const [B, H, K, L] = g.shape as [number, number, number, number];
  const G = tf.transpose(cumsumLast(g), [0, 1, 3, 2]);                      // [B, H, L, K]
  const Glast = copy.slice(G, [0, 0, L - 1, 0], [B, H, 1, K]);
  return { G, Glast, decayG: expNonPositive(G), toEnd: expNonPositive(broadcast.sub(Glast, G)) };
}

/** One chunk forward from the state S before it: its output `[B, H, L, V]` and the state after it. */
function chunkForward(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, S: tf.Tensor, cut: SubChunks) {
  return tf.tidy(() => {
    const { G, Glast, decayG, toEnd } = chunkDecays(g);
    const [B, H, , K] = q.shape;
    const own = unrows(inChunkOutput(rows(q), rows(k), rows(v), rows(G), cut), q.shape);
    const out = broadcast.add(matMul(broadcast.mul(q, decayG), S), own);
    const next = broadcast.add(broadcast.mul(expNonPositive(Glast).reshape([B!, H!, K!, 1]), S), matMul(broadcast.mul(k, toEnd), v, true, false));
    return { out, next };
  });
}

/**
 * The gradients of one chunk from those of its output (dO `[B, H, L, V]`) and of the state after
 * it (dNext `[B, H, K, V]`), recomputing its terms from the state S before it. The chunk's own
 * terms' are {@link inChunkGrads}'; by the chain rule through the rest of {@link chunkForward}:
 * ```
 * dq += (dO·Sᵀ) ⊙ exp(G)        dk += (v·dNextᵀ) ⊙ toEnd        dv += (k ⊙ toEnd)·dNext
 * dS = (q ⊙ exp(G))ᵀ·dO + exp(G_last) ⊙ dNext
 * dG += (dO·Sᵀ) ⊙ q ⊙ exp(G) − Z,   Z = (v·dNextᵀ) ⊙ k ⊙ toEnd
 * dG_last += Σ_j Z + exp(G_last) ⊙ Σ_V dNext ⊙ S      dg = reverse cumsum of dG over the chunk
 * ```
 */
function chunkBackward(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, S: tf.Tensor, cut: SubChunks,
  dO: tf.Tensor, dNext: tf.Tensor): tf.Tensor[] {
  return tf.tidy(() => {
    const [B, H, L, K] = q.shape as [number, number, number, number];
    const { G, Glast, decayG, toEnd } = chunkDecays(g);
    const own = inChunkGrads(rows(q), rows(k), rows(v), rows(G), rows(dO), cut);
    const decay = expNonPositive(Glast).reshape([B, H, K, 1]);
    const qDecayed = broadcast.mul(q, decayG);
    const kToEnd = broadcast.mul(k, toEnd);
    const dqDecayed = matMul(dO, S, false, true);                                // [B, H, L, K]
    const dkToEnd = matMul(v, dNext, false, true);                               // [B, H, L, K]
    const Z = broadcast.mul(dkToEnd, kToEnd);
    const dGlast = broadcast.add(tf.sum(Z, 2, true), tf.sum(broadcast.mul(broadcast.mul(dNext, S), decay), 3).reshape([B, H, 1, K]));
    const dG = broadcast.add(broadcast.sub(broadcast.add(unrows(own.dG, q.shape), broadcast.mul(dqDecayed, qDecayed)), Z),
      copy.pad(dGlast, [[0, 0], [0, 0], [L - 1, 0], [0, 0]]));
    return [
      broadcast.add(unrows(own.dq, q.shape), broadcast.mul(dqDecayed, decayG)),         // dq
      broadcast.add(unrows(own.dk, q.shape), broadcast.mul(dkToEnd, toEnd)),            // dk
      broadcast.add(unrows(own.dv, q.shape), matMul(kToEnd, dNext)),                    // dv
      reverseCumsum(tf.transpose(dG, [0, 1, 3, 2]), 3),                                 // dg [B, H, K, L]
      broadcast.add(matMul(qDecayed, dO, true, false), broadcast.mul(decay, dNext)),    // dS
    ];
  });
}

/** The finite parts of the inputs, heads first as the chunks read them: scaled q, k `[B, H, T, K]`, v `[B, H, T, V]`, g `[B, H, K, T]`. */
function headsFirstFinite(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, scale: number) {
  return [
    finiteLaidOut(q, (f) => headsFirst(tf.mul(f, scale))), finiteLaidOut(k, headsFirst), finiteLaidOut(v, headsFirst),
    finiteLaidOut(g, (f) => tf.transpose(f, [0, 2, 3, 1])),
  ];
}

/** x's finite part laid out by `layout`, in a scope of its own: one input's temporaries are live at a time. */
export const finiteLaidOut = (x: tf.Tensor, layout: (f: tf.Tensor) => tf.Tensor) => tf.tidy(() => layout(finiteOnly(x)));

/**
 * Which outputs see a non-finite input: a NaN or ±∞ in k, v or g at token t reaches the
 * outputs at t' ≥ t of its batch row and head and the final state, one in q only its own output.
 * Returns counts, `outputSees` `[B, T, H, 1]` and `stateSees` `[B, H, 1, 1]`, non-zero where seen
 * (on webgpu the kernels find them in one launch: seen.wgsl).
 */
export function nonFiniteSeen(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor) {
  const [B, T, H] = q.shape as [number, number, number];
  const bad = (x: tf.Tensor) => nonFiniteCount(x, 3);
  const entering = tf.add(tf.add(bad(k), bad(g)), bad(v));
  const seen = tf.transpose(cumsumLast(tf.transpose(entering, [0, 2, 1])), [0, 2, 1]);
  return {
    outputSees: tf.add(seen, bad(q)).expandDims(3),
    stateSees: copy.slice(seen, [0, T - 1, 0], [B, 1, H]).reshape([B, H, 1, 1]),
  };
}

/**
 * The loop over chunks as a {@link PackedRecurrence}. The chunks run on the inputs' finite parts,
 * heads first, and the outputs that see a non-finite input are made NaN; the backward
 * runs them in reverse, recomputing each from the state saved at its start, so it keeps the
 * inputs and T/c states, O(B·H·(T·(K+V) + T/c·K·V)), and one chunk's `[c, c, K]` terms at a
 * time. The gradients at non-finite inputs are 0.
 */
const recurrence: PackedRecurrence = (scale) => tf.customGrad(((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, S0: tf.Tensor, save: tf.GradSaveFunc) => {
  const [B, T, H, K] = q.shape as [number, number, number, number];
  const V = v.shape[3]!;
  const sizes = chunkSizes(T);
  const { cutOf, dispose } = subChunkCache();
  const starts: tf.Tensor[] = [S0];
  const value = tf.tidy(() => {
    const [qh, kh, vh, gh] = headsFirstFinite(q, k, v, g, scale);
    const [qs, ks, vs, gs] = [pieces(qh!, sizes, 2), pieces(kh!, sizes, 2), pieces(vh!, sizes, 2), pieces(gh!, sizes, 3)];
    const outs: tf.Tensor[] = [];
    for (let c = 0; c < sizes.length; c++) {
      const { out, next } = chunkForward(qs[c]!, ks[c]!, vs[c]!, gs[c]!, starts[c]!, cutOf(sizes[c]!));
      outs.push(out);
      // the states the backward restarts from outlive this scope; the final one goes into the value
      starts.push(c < sizes.length - 1 ? tf.keep(next) : next);
    }
    const { outputSees, stateSees } = nonFiniteSeen(q, k, v, g);
    const output = broadcast.add(headsFirst(tf.concat(outs, 2)), poisonWhere(outputSees));   // [B, T, H, V]
    const state = broadcast.add(starts.pop()!, poisonWhere(stateSees));
    return copy.concat([output.reshape([B, T * H * V]), state.reshape([B, H * K * V])], 1);
  });
  dispose();
  save([q, k, v, g, ...starts]);
  tf.dispose(starts.slice(1));
  return {
    value,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sq, sk, sv, sg, ...states] = saved;
      const { cutOf, dispose: disposeCuts } = subChunkCache();
      const grads = tf.tidy(() => {
        const [dOut, dState] = copy.split(dy, [T * H * V, H * K * V], 1);
        const [qh, kh, vh, gh] = headsFirstFinite(sq!, sk!, sv!, sg!, scale);
        const [qc, kc, vc, gc, dOc] = [pieces(qh!, sizes, 2), pieces(kh!, sizes, 2), pieces(vh!, sizes, 2), pieces(gh!, sizes, 3),
          pieces(headsFirst(dOut!.reshape([B, T, H, V])), sizes, 2)];
        const perChunk: tf.Tensor[][] = [];
        let dNext = dState!.reshape([B, H, K, V]);
        for (let c = sizes.length - 1; c >= 0; c--) {
          const [dq, dk, dv, dg, dS] = chunkBackward(qc[c]!, kc[c]!, vc[c]!, gc[c]!, states[c]!, cutOf(sizes[c]!), dOc[c]!, dNext);
          // this chunk's pieces are read no more
          if (sizes.length > 1) tf.dispose([qc[c]!, kc[c]!, vc[c]!, gc[c]!, dOc[c]!, dNext]);
          dNext = dS!;
          perChunk.unshift([dq!, dk!, dv!, dg!]);
        }
        // one input at a time, freeing its chunks' gradients: joined, back to [B, T, H, ·], and 0
        // where the input was not finite (finitePart's select); q's carries the scale's factor
        const gradOf = (i: number, x: tf.Tensor, layout: (d: tf.Tensor) => tf.Tensor) => tf.tidy(() => {
          const parts = perChunk.map((r) => r[i]!);
          const axis = i === 3 ? 3 : 2;
          const joined = parts.length === 1 ? parts[0]! : copy.concat(parts, axis);
          tf.dispose(parts.filter((p) => p !== joined));
          const d = layout(joined);
          return zeroWhereNotFinite(x, d);
        });
        return [
          gradOf(0, sq!, (d) => tf.mul(headsFirst(d), scale)), gradOf(1, sk!, headsFirst), gradOf(2, sv!, headsFirst),
          gradOf(3, sg!, (d) => tf.transpose(d, [0, 3, 1, 2])), dNext,
        ];
      });
      disposeCuts();
      return grads;
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as ReturnType<PackedRecurrence>;

/**
 * A whole GLA op as one `tf.customGrad` for a given scale, so that tfjs's tape holds one node
 * and not the gradients of every op around the recurrence (the tape keeps each intermediate
 * gradient until the end of the backward); nothing inside is taped. q, k, g `[B, T, H, K]`, v
 * `[B, T, H, V]` and the initial state `[B, H, K, V]` to the output and the final state, flattened
 * and joined, `[B, T·H·V + H·K·V]` (a customGrad returns one tensor).
 */
export type PackedRecurrence = (scale: number) => (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, S0: tf.Tensor) => tf.Tensor;

/** Runs a {@link PackedRecurrence} on checked arguments (zeros for an absent initial state) and unpacks its result. */
export function runPacked(packed: PackedRecurrence, args: GlaArgs): { output: tf.Tensor4D; state: tf.Tensor4D } {
  return tf.tidy(() => {
    const [B, T, H, K] = args.q.shape;
    const V = args.v.shape[3];
    const [output, state] = copy.split(packed(args.scale)(args.q, args.k, args.v, args.g, args.initialState ?? tf.zeros([B, H, K, V])),
      [T * H * V, H * K * V], 1);
    return { output: output!.reshape([B, T, H, V]) as tf.Tensor4D, state: state!.reshape([B, H, K, V]) as tf.Tensor4D };
  });
}
/**
 * GatedLinearAttention in tfjs ops, float32, differentiable: the ground truth on
 * every backend.
 * ```
 * S_t = diag(exp(g_t)) · S_{t−1} + k_tᵀ v_t        o_t = scale · q_t · S_t
 * ```
 * T is cut into chunks of {@link GLA_CHUNK} tokens with the state `[B, H, K, V]` carried between
 * them. Within a chunk, with G the cumulative sum of g from the chunk's start (G_t ≤ G_j ≤ 0 for
 * j ≤ t, since g ≤ 0):
 * ```
 * o_t  = scale · (q_t ⊙ exp(G_t)) · S_prev                                     (inter-chunk)
 *      + scale · Σ_{j ≤ t} (Σ_K q_t ⊙ k_j ⊙ exp(G_t − G_j)) · v_j                 (intra-chunk)
 * S    = diag(exp(G_last)) · S_prev + Σ_j (k_j ⊙ exp(G_last − G_j))ᵀ v_j
 * ```
 * Every exponent is ≤ 0, so nothing overflows however strong the gates; the product
 * exp(G_t)·exp(−G_j) would overflow for strong ones. The in-chunk sum takes pairs within a
 * sub-chunk of {@link GLA_SUB_CHUNK} tokens one by one and pairs across sub-chunks as a matrix
 * product, each side decayed to the boundary between them (in-chunk.ts). No `[T, T]` matrix is
 * formed: the live memory is O(B·H·(T·(K+V) + c·(s + c/s)·K + K·V)). The backward is a `tf.customGrad` that recomputes
 * each chunk from the state saved at its start, so the gradient's memory is of the same order
 * (plus T/c saved states), not the O(B·H·T·c·K) that autodiff through the loop would keep.
 *
 * The recurrence runs on the inputs with their NaN and ±∞ replaced by 0; the outputs that see
 * one are made NaN at the end (a bad k, v or g at token t: the outputs at t' ≥ t of that batch
 * row and head, and its final state; a bad q at t: the output at t). Otherwise a later token's
 * NaN would reach earlier tokens' gradients through 0 · NaN in the backward pass.
 *
 * @returns the output `[B, T, H, V]` and the final state `[B, H, K, V]`; T ≥ 1 and B ≥ 1.
 */
export function gatedLinearAttentionReference(args: GlaArgs): { output: tf.Tensor4D; state: tf.Tensor4D } {
  return runPacked(recurrence, args);
}
