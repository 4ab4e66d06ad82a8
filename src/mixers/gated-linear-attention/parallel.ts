import * as tf from '@tensorflow/tfjs';
import { chunkAt, enteringStates, expNonPositive, matMul, poisonWhere, zeroWhereNotFinite } from '../../tensors.js';
import { inChunkGrads, inChunkOutput, lowerOnes, subChunkCache, type SubChunks } from './in-chunk.js';
import { finiteLaidOut, headsFirst, nonFiniteSeen, runPacked, type GlaArgs, type PackedRecurrence } from './reference.js';

// GatedLinearAttention with every chunk at once, for webgl, which launches a shader per tfjs op:
// the reference's loop over chunks takes ~20 launches a chunk forward and ~60 backward.

/**
 * Tokens per chunk. Every chunk's `[c, c, K]` decayed q·k terms are formed together, c times the
 * inputs' size (in-chunk.ts's terms of one sub-chunk the length of the chunk), so 16 holds them
 * at half the memory and arithmetic of the reference's 32, while the states across chunks cost
 * one more doubling round each way. Sub-chunks of 8 here measured within the noise on
 * SwiftShader, for 14–80 % more kernels (2026-12-07, gated-linear-attention.md).
 */
export const PARALLEL_CHUNK = 16;

/** Floats in one group's `[r, c, c, K]` terms (4 MiB): more chunks than that are taken a group at a time. */
const GROUP_FLOATS = 1 << 20;

/**
 * How the tokens are cut: B·H·n rows of c tokens (the last chunk of each row padded with zeros,
 * which neither decay the state nor add to it), in groups of `group` rows for the `[c, c, K]`
 * terms, `sub` each row as one sub-chunk.
 */
interface Cut { B: number; T: number; H: number; K: number; V: number; c: number; n: number; rows: number; group: number; sub: SubChunks }

/** The cut of a call's inputs, in groups of at most `groupRows` rows; `sub` holds masks, which the caller disposes. */
function cutOf([B, T, H, K]: number[], V: number, cutsOf: (L: number) => SubChunks, groupRows?: number): Cut {
  const c = Math.min(PARALLEL_CHUNK, T!);
  const n = Math.ceil(T! / c);
  const group = Math.min(groupRows ?? Infinity, Math.max(1, Math.floor(GROUP_FLOATS / (c * c * K!))));
  return { B: B!, T: T!, H: H!, K: K!, V, c, n, rows: B! * H! * n, group, sub: cutsOf(c) };
}

/** The {@link SubChunks} of this path's chunks: each one sub-chunk, all its pairs decayed elementwise. */
const wholeChunks = () => subChunkCache(PARALLEL_CHUNK);

/** `[B, T, H, X]` → `[B·H·n, c, X]`: heads first, zeros past T, a row per chunk. */
function rowsOf(x: tf.Tensor, { B, T, H, c, n }: Cut): tf.Tensor {
  return tf.tidy(() => {
    const X = x.shape[3]!;
    const h = headsFirst(x);
    const padded = n * c === T ? h : tf.pad(h, [[0, 0], [0, 0], [0, n * c - T], [0, 0]]);
    return tf.reshape(padded, [B * H * n, c, X]);
  });
}

/** The inverse of {@link rowsOf}: `[B·H·n, c, X]` → `[B, T, H, X]`. */
function fromRows(x: tf.Tensor, { B, T, H, c, n }: Cut): tf.Tensor {
  return tf.tidy(() => {
    const X = x.shape[2]!;
    const h = tf.reshape(x, [B, H, n * c, X]);
    return headsFirst(n * c === T ? h : tf.slice(h, [0, 0, 0, 0], [B, H, T, X]));
  });
}

/** The finite parts of the inputs as rows: scaled q, k, g `[B·H·n, c, K]`, v `[B·H·n, c, V]`. */
function finiteRows(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, scale: number, cut: Cut): tf.Tensor[] {
  return [
    finiteLaidOut(q, (f) => rowsOf(tf.mul(f, scale), cut)), finiteLaidOut(k, (f) => rowsOf(f, cut)),
    finiteLaidOut(v, (f) => rowsOf(f, cut)), finiteLaidOut(g, (f) => rowsOf(f, cut)),
  ];
}

/**
 * The chunks' decays, from their inputs as rows: G the running sum of g from each chunk's start
 * (L·g, one product where a cumsum takes log₂ c passes), `decayG` = exp(G_t), `toEnd` =
 * exp(G_last − G_t), `decay` = exp(G_last) `[rows, K, 1]` and `kToEnd` = k ⊙ toEnd.
 */
function decays(k: tf.Tensor, g: tf.Tensor, lower: tf.Tensor, { rows, c, K }: Cut) {
  const G = matMul(lower, g);
  const Glast = tf.slice(G, [0, c - 1, 0], [rows, 1, K]);
  const toEnd = expNonPositive(tf.sub(Glast, G));
  const kToEnd = tf.mul(k, toEnd);
  return {
    G, decayG: expNonPositive(G), kToEnd, toEnd,
    decay: tf.reshape(expNonPositive(Glast), [rows, K, 1]),
  };
}

/** A `[rows, ...]` tensor seen as `[B·H, n, ...]`, the chunks of a head in order, and back. */
const perHead = (x: tf.Tensor, { n }: Cut) => tf.reshape(x, [x.shape[0]! / n, n, ...x.shape.slice(1)]);
const perRow = (x: tf.Tensor, { rows }: Cut) => tf.reshape(x, [rows, ...x.shape.slice(2)]);

/** x at the first chunk of every head, `[B·H, ...]`, or the last. */
const firstOfHead = (x: tf.Tensor, cut: Cut) => chunkAt(perHead(x, cut), 0);
const lastOfHead = (x: tf.Tensor, cut: Cut) => chunkAt(perHead(x, cut), cut.n - 1);

/**
 * `fn` on groups of at most `cut.group` rows of `xs` (each `[rows, ...]`), its results joined
 * along the rows: the `[c, c, K]` terms of one group live at a time.
 */
function byGroups(xs: tf.Tensor[], cut: Cut, fn: (...group: tf.Tensor[]) => tf.Tensor[]): tf.Tensor[] {
  if (cut.rows <= cut.group) return fn(...xs);
  const parts: tf.Tensor[][] = [];
  for (let r0 = 0; r0 < cut.rows; r0 += cut.group) {
    const r = Math.min(cut.group, cut.rows - r0);
    parts.push(tf.tidy(() => fn(...xs.map((x) => tf.slice(x, [r0, ...x.shape.slice(1).map(() => 0)], [r, ...x.shape.slice(1)])))));
  }
  return parts[0]!.map((_, i) => {
    const joined = tf.concat(parts.map((p) => p[i]!), 0);
    tf.dispose(parts.map((p) => p[i]!));
    return joined;
  });
}

/**
 * The recurrence with every chunk at once, packed as the reference's: the chunks' decays and own
 * contributions in a few batched launches, the states entering them by {@link enteringStates}
 * (⌈log₂ n⌉ doubling rounds across chunks), then every chunk's output from its entering state
 * and its `[c, c, K]` terms (in-chunk.ts), a group of chunks at a time. The backward runs the
 * same stages on the state's adjoint from the end, recomputing the decays from the saved inputs
 * and entering states. O(CHUNK + log T) rounds of launches in all where the reference's loop
 * takes O(T / 32).
 */
const parallel = (groupRows?: number): PackedRecurrence => (scale) => tf.customGrad(((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, g: tf.Tensor, S0: tf.Tensor,
  save: tf.GradSaveFunc) => {
  const cuts = wholeChunks();
  const cut = cutOf(q.shape, v.shape[3]!, cuts.cutOf, groupRows);
  const { B, T, H, K, V, c } = cut;
  const [value, entering] = tf.tidy(() => {
    const [qr, kr, vr, gr] = finiteRows(q, k, v, g, scale, cut);
    const { G, decayG, decay, kToEnd } = decays(kr!, gr!, lowerOnes(c), cut);
    // each chunk's own contribution to the state after it, (k ⊙ toEnd)ᵀ·v `[rows, K, V]`
    const own = matMul(kToEnd, vr!, true, false);
    const entering = perRow(enteringStates(perHead(own, cut), perHead(decay, cut), tf.reshape(S0, [B * H, K, V])), cut);
    const state = tf.add(tf.mul(lastOfHead(decay, cut), lastOfHead(entering, cut)), lastOfHead(own, cut));
    own.dispose();
    const [intra] = byGroups([qr!, kr!, vr!, G], cut, (qg, kg, vg, Gg) => [inChunkOutput(qg!, kg!, vg!, Gg!, cut.sub)]);
    const out = tf.add(matMul(tf.mul(qr!, decayG), entering), intra!);
    const { outputSees, stateSees } = nonFiniteSeen(q, k, v, g);
    const output = tf.add(fromRows(out, cut), poisonWhere(outputSees));                        // [B, T, H, V]
    const final = tf.add(tf.reshape(state, [B, H, K, V]), poisonWhere(stateSees));
    return [tf.concat([tf.reshape(output, [B, T * H * V]), tf.reshape(final, [B, H * K * V])], 1), entering];
  });
  cuts.dispose();
  save([q, k, v, g, entering!]);
  return {
    value: value!,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const gradCuts = wholeChunks();
      const grads = tf.tidy(() => parallelGrad(dy, saved, scale, cutOf(q.shape, V, gradCuts.cutOf, groupRows)));
      gradCuts.dispose();
      return grads;
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as ReturnType<PackedRecurrence>;

/**
 * {@link parallel}'s gradients in q, k, v, g and S0, by the chain rule through its stages (the
 * reference's chunkBackward for every chunk at once), with D_i the gradient of the state after
 * chunk i: D_last = dState and D_i = exp(G_last, i+1) ⊙ D_{i+1} + (q ⊙ exp(G))ᵀ_{i+1}·dO_{i+1},
 * the forward's scan run from the end.
 */
function parallelGrad(dy: tf.Tensor, [q, k, v, g, entering]: tf.Tensor[], scale: number, cut: Cut): tf.Tensor[] {
  const { B, T, H, K, V, c } = cut;
  const [dOut, dState] = tf.split(dy, [T * H * V, H * K * V], 1);
  const [qr, kr, vr, gr] = finiteRows(q!, k!, v!, g!, scale, cut);
  const dO = rowsOf(tf.reshape(dOut!, [B, T, H, V]), cut);
  const lower = lowerOnes(c);
  const { G, decayG, toEnd, kToEnd, decay } = decays(kr!, gr!, lower, cut);
  const qDecayed = tf.mul(qr!, decayG);
  const [D, dS0] = tf.tidy(() => {
    const fromOutput = matMul(qDecayed, dO, true, false);                                 // [rows, K, V]
    const D = perRow(enteringStates(perHead(fromOutput, cut), perHead(decay, cut), tf.reshape(dState!, [B * H, K, V]), true), cut);
    return [D, tf.add(firstOfHead(fromOutput, cut), tf.mul(firstOfHead(decay, cut), firstOfHead(D, cut)))];
  });
  const [dqIntra, dkIntra, dvIntra, dGIntra] = byGroups([qr!, kr!, vr!, G, dO], cut, (qg, kg, vg, Gg, dOg) => {
    const { dq, dk, dv, dG } = inChunkGrads(qg!, kg!, vg!, Gg!, dOg!, cut.sub);
    return [dq, dk, dv, dG];
  });
  // each gradient in a scope of its own, and the [rows, K, V] adjoints freed once read
  const gradOf = (x: tf.Tensor, d: () => tf.Tensor) => tf.tidy(() => zeroWhereNotFinite(x, fromRows(d(), cut)));
  const dv = gradOf(v!, () => tf.add(dvIntra!, matMul(kToEnd, D!)));
  const dkToEnd = matMul(vr!, D!, false, true);                                             // [rows, c, K]
  const Z = tf.mul(dkToEnd, kToEnd);
  const dGlast = tf.tidy(() => tf.add(tf.sum(Z, 1, true), tf.reshape(tf.mul(tf.sum(tf.mul(D!, entering!), 2, true), decay), [cut.rows, 1, K])));
  D!.dispose();
  const dqDecayed = matMul(dO, entering!, false, true);
  return [
    gradOf(q!, () => tf.mul(tf.add(dqIntra!, tf.mul(dqDecayed, decayG)), scale)),
    gradOf(k!, () => tf.add(dkIntra!, tf.mul(dkToEnd, toEnd))),
    dv,
    // dG_last reaches every G of its chunk through the running sum
    gradOf(g!, () => tf.add(matMul(lower, tf.sub(tf.add(dGIntra!, tf.mul(dqDecayed, qDecayed)), Z), true, false), dGlast)),
    tf.reshape(dS0!, [B, H, K, V]),
  ];
}

/**
 * GatedLinearAttention with every chunk at once: the reference's maths and results (to
 * rounding) in O(CHUNK + log T) rounds of tfjs launches instead of O(T), for webgl, where each op
 * is a shader launch. Chunks of {@link PARALLEL_CHUNK} tokens; their `[c, c, K]` terms are formed
 * for up to 4 MiB of them at once, so memory stays linear in T. Inputs and results as
 * {@link gatedLinearAttentionReference}.
 *
 * @param groupRows at most this many chunks' terms at once, where 4 MiB of them would be more (a
 *   test sets it low to exercise the groups).
 * @returns the output `[B, T, H, V]` and the final state `[B, H, K, V]`; T ≥ 1 and B ≥ 1.
 *
 * @example
 * ```ts
 * const [b, t, h, k] = [1, 256, 4, 16];
 * const x = () => tf.randomNormal([b, t, h, k]) as tf.Tensor4D;
 * const { output, state } = gatedLinearAttentionParallel({ q: x(), k: x(), v: x(),
 *   g: tf.logSigmoid(x()) as tf.Tensor4D, scale: 0.25 });   // [1, 256, 4, 16], [1, 4, 16, 16]
 * ```
 */
export function gatedLinearAttentionParallel(args: GlaArgs, groupRows?: number): { output: tf.Tensor4D; state: tf.Tensor4D } {
  return runPacked(parallel(groupRows), args);
}
