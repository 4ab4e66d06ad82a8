import * as tf from '@tensorflow/tfjs';
import { broadcast, copy, sumAlong, swapMiddleAxes } from '../../cpu-host.js';
import { chunksAlong, expNonPositive, finiteOnly, hiddenScore, matMul, noScore, nonFiniteCount, poisonWhere, zeroWhereNotFinite } from '../../tensors.js';

/**
 * Aaren's scan state per head: the running max m of the scores, the mass
 * u = Σ e^{s_j − m} and the weighted values w = Σ e^{s_j − m}·v_j, so that o = w/u. A type,
 * not an interface, so that it is a `tf.TensorContainer` (`tf.tidy` can return it).
 */
export type AarenState = {
  /** `[B, H]`: the largest score so far; −∞ in the empty state. */
  m: tf.Tensor2D;
  /** `[B, H]`: Σ e^{s_j − m}; 0 in the empty state. */
  u: tf.Tensor2D;
  /** `[B, H, K]`: Σ e^{s_j − m}·v_j; 0 in the empty state. */
  w: tf.Tensor3D;
};

/** The resolved inputs of one Aaren call, checked by the op; B and T are at least 1. */
export interface AarenArgs {
  /** `[H, K]`: the learned query of each head. */
  q: tf.Tensor2D;
  /** `[B, T, H, K]`. */
  k: tf.Tensor4D;
  /** `[B, T, H, K]`. */
  v: tf.Tensor4D;
  scale: number;
  /** The scan's first element; absent: the empty state. */
  initialState?: AarenState;
  /**
   * `[B, T]` float32, 1 for a real token and 0 for padding; absent: every token is real. A padded
   * token is the merge's identity (−∞, 0, 0): it leaves the state as it was, and its output is
   * the state's so far (0 before any real token). The layers' ragged prefill reads the final state
   * through it.
   */
  real?: tf.Tensor2D;
}

/**
 * The tokens per chunk of the reference. Within a chunk the running max and the weights come
 * from one `[c, c]` masked matrix per head, so a chunk costs B·H·c² numbers and c²·K
 * multiply-adds per head, c times the scan's own work; across chunks a loop carries the state.
 * 64 keeps that matrix (4096 numbers per head) no larger than 64 tokens of a 64-wide head and the
 * loop at T/64 iterations of some twenty tfjs ops each, which is what costs time on cpu and wasm.
 */
export const AAREN_CHUNK = 64;

/** `[n, n]`: 0 where token j ≤ t of a chunk is visible from row t, the hidden score ({@link hiddenScore}) where not. */
function futureMask(n: number): tf.Tensor2D {
  return tf.tidy(() => {
    const t = tf.range(0, n, 1, 'int32').reshape([n, 1]);
    const j = tf.range(0, n, 1, 'int32').reshape([1, n]);
    return tf.where(tf.lessEqual(j, t), tf.zeros([n, n]), tf.fill([n, n], hiddenScore())) as tf.Tensor2D;
  });
}

/** The chunks `[t0, t1)` of T tokens. */
function chunkBounds(T: number): [number, number][] {
  return Array.from({ length: Math.ceil(T / AAREN_CHUNK) }, (_, n) => [n * AAREN_CHUNK, Math.min(T, (n + 1) * AAREN_CHUNK)]);
}

/** The masks of every chunk size among `bounds` (at most two: the full one and the last). */
function masksFor(bounds: [number, number][]): Map<number, tf.Tensor2D> {
  const masks = new Map<number, tf.Tensor2D>();
  for (const [t0, t1] of bounds) if (!masks.has(t1 - t0)) masks.set(t1 - t0, futureMask(t1 - t0));
  return masks;
}

/** s = scale·q_h·k_t of every token, `[B, H, T]`. */
function scores(q: tf.Tensor2D, k: tf.Tensor4D, scale: number): tf.Tensor3D {
  return tf.mul(tf.sum(tf.mul(k, q), -1), scale).transpose([0, 2, 1]) as tf.Tensor3D;
}

/** `[B, H, n]` → `[B, H, n, n]`, row t holding s_j for j ≤ t and the hidden score after. */
function visibleScores(s: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor4D {
  return broadcast.add(s.expandDims(2), mask);
}

/** The last entry of `x` along `axis`, which is dropped: e.g. `[B, H, n]` → `[B, H]` and `[B, H, n, K]` → `[B, H, K]` along axis 2. */
function last(x: tf.Tensor, axis: number): tf.Tensor {
  const n = x.shape[axis]!;
  return tf.squeeze(copy.slice(x, x.shape.map((_, a) => (a === axis ? n - 1 : 0)), x.shape.map((d, a) => (a === axis ? 1 : d))), [axis]);
}

/**
 * `E` `[B, H, n, n]` with its padded columns (tokens j with real 0, `real` `[B, 1, n]`) zeroed:
 * a padded token's score is the hidden score, below every real one, but where no real token is
 * visible yet it is the row's max and would weigh 1. Without padding, E itself.
 */
function realColumns(E: tf.Tensor, real: tf.Tensor3D | null): tf.Tensor {
  return real ? broadcast.mul(E, real.expandDims(2)) : E;
}

/**
 * One chunk's forward from the carried state (M `[B, H]`, U `[B, H]`, W `[B, H, K]`): the
 * running max m_t and mass u_t `[B, H, n]` and the weighted values w_t `[B, H, n, K]` after
 * each of its n tokens, by the merge of the carried state with the chunk's prefix.
 */
function chunkForward(s: tf.Tensor3D, v: tf.Tensor4D, mask: tf.Tensor2D, M: tf.Tensor2D, U: tf.Tensor2D, W: tf.Tensor3D,
  real: tf.Tensor3D | null) {
  return tf.tidy(() => {
    const S = visibleScores(s, mask);
    // the diagonal is always visible, so the row max is a score and the weights are finite
    const m = tf.maximum(tf.max(S, -1), M.expandDims(2)) as tf.Tensor3D;
    const E = realColumns(expNonPositive(broadcast.sub(S, m.expandDims(3))), real);
    // the carried state's weight e^{M − m_t}: 0 when M = −∞ (the empty state), never NaN since m_t is finite
    const carried = expNonPositive(tf.sub(M.expandDims(2), m));
    const u = tf.add(tf.mul(carried, U.expandDims(2)), tf.sum(E, -1)) as tf.Tensor3D;
    const w = tf.add(broadcast.mul(carried.expandDims(3), W.expandDims(2)), matMul(E, v)) as tf.Tensor4D;
    return { m, u, w };
  });
}

/**
 * The backward over the chunks in reverse, never a T×T matrix. What flows between chunks is the
 * gradient in the carried (U, W): for the state carried into chunk k, with running max M_k,
 * `dW_k = Σ_{t in k} e^{M_k − m_t}·a_t + e^{M_k − M_{k+1}}·dW_{k+1}` where a_t = do_t/u_t (and dU
 * alike with −b_t, b_t = do_t·o_t/u_t), starting from the final state's (dw, du). Within a chunk,
 * with E_tj = e^{s_j − m_t} (j ≤ t): `dv_j = Σ_t E_tj·a_t + e^{s_j − M_{k+1}}·dW_{k+1}` and
 * `ds_j = v_j·dv_j − Σ_t E_tj·b_t + e^{s_j − M_{k+1}}·dU_{k+1}`, plus g_m at the first maximiser of
 * the final m (see {@link aarenReference}). `m`, `a`, `b` and the scores come per chunk; returns
 * ds `[B, H, T]`, dv `[B, H, T, K]` and the initial state's gradients.
 */
function backward(
  chunks: { s: tf.Tensor3D; v: tf.Tensor4D; m: tf.Tensor3D; a: tf.Tensor4D; b: tf.Tensor3D; real: tf.Tensor3D | null }[],
  masks: Map<number, tf.Tensor2D>,
  init: AarenState, finalM: tf.Tensor2D, gm: tf.Tensor2D, du: tf.Tensor2D, dw: tf.Tensor3D,
): { ds: tf.Tensor3D; dv: tf.Tensor4D; state: AarenState } {
  return tf.tidy(() => {
    // the running max carried into each chunk, and after the last one
    const maxes = [init.m, ...chunks.map((c) => last(c.m, 2) as tf.Tensor2D)];
    const ds: tf.Tensor3D[] = [];
    const dv: tf.Tensor4D[] = [];
    let [dU, dW] = [du, dw];
    for (let n = chunks.length - 1; n >= 0; n--) {
      const { s, v, m, a, b, real } = chunks[n]!;
      const [before, after] = [maxes[n]!, maxes[n + 1]!];
      const next = tf.tidy(() => {
        const E = realColumns(expNonPositive(broadcast.sub(visibleScores(s, masks.get(s.shape[2])!), m.expandDims(3))), real);
        // the chunk's tokens as the later outputs and the final state see them, through the carry
        const later = real ? tf.mul(expNonPositive(tf.sub(s, after.expandDims(2))), real) : expNonPositive(tf.sub(s, after.expandDims(2)));
        const Gw = tf.add(matMul(E, a, true), broadcast.mul(later.expandDims(3), dW.expandDims(2))) as tf.Tensor4D;
        const Gu = tf.sub(tf.mul(later, dU.expandDims(2)), tf.squeeze(matMul(E, b.expandDims(3), true), [3]));
        // the first maximiser of the final m is where the running max first reaches it
        const prev = copy.concat([before.expandDims(2), copy.slice(m, [0, 0, 0], [-1, -1, m.shape[2] - 1])], 2);
        const target = tf.mul(finalM.expandDims(2), tf.onesLike(m));
        const reaches = tf.logicalAnd(tf.equal(m, target), tf.less(prev, target));
        // a padded token is never the maximiser (it reaches the max only where no real token is: an empty state)
        const first = real ? tf.logicalAnd(reaches, tf.greater(real, 0)) : reaches;
        const routed = tf.where(first, tf.mul(gm.expandDims(2), tf.onesLike(m)), tf.zerosLike(m));
        const dsN = tf.add(tf.add(tf.sum(tf.mul(v, Gw), -1), Gu), routed) as tf.Tensor3D;
        // the state carried into this chunk reaches its outputs with e^{before − m_t}, the next carry with e^{before − after}
        const carried = expNonPositive(tf.sub(before.expandDims(2), m));
        const through = expNonPositive(tf.sub(before, after));
        const dUBefore = tf.sub(tf.mul(through, dU), tf.sum(tf.mul(carried, b), -1)) as tf.Tensor2D;
        const dWBefore = tf.add(tf.mul(through.expandDims(2), dW), sumAlong(broadcast.mul(carried.expandDims(3), a), 2)) as tf.Tensor3D;
        return { dsN, Gw, dUBefore, dWBefore };
      });
      ds.unshift(next.dsN);
      dv.unshift(next.Gw);
      if (dU !== du) tf.dispose([dU, dW]);
      [dU, dW] = [next.dUBefore, next.dWBefore];
    }
    const dm = tf.add(tf.add(tf.sum(tf.mul(init.w, dW), -1), tf.mul(init.u, dU)),
      tf.where(tf.equal(init.m, finalM), gm, tf.zerosLike(gm))) as tf.Tensor2D;
    return { ds: copy.concat(ds, 2) as tf.Tensor3D, dv: copy.concat(dv, 2) as tf.Tensor4D, state: { m: dm, u: dU, w: dW } };
  });
}

/**
 * `[B, T, H]`: NaN at every token of a head from the first NaN or ±∞ in its k or v on, 0 before;
 * added to the outputs (and, at the last token, the final state), it poisons what sees one. The
 * running count runs along the last axis: tfjs 4.22's Cumsum gradient fails on another, and the
 * kernels' path is taped.
 */
export function poisonAfterNonFinite(k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const bad = tf.add(nonFiniteCount(k, -1), nonFiniteCount(v, -1)).transpose([0, 2, 1]);
    return poisonWhere(tf.cumsum(bad, 2).transpose([0, 2, 1])) as tf.Tensor3D;
  });
}

/**
 * The empty state of B·H heads of K channels: (−∞, 0, 0), the identity of the merge (m is
 * {@link noScore}), or with its max at `m`.
 */
export function emptyState(B: number, H: number, K: number, m = noScore()): AarenState {
  return { m: tf.fill([B, H], m) as tf.Tensor2D, u: tf.zeros([B, H]), w: tf.zeros([B, H, K]) };
}

/**
 * Aaren in tfjs ops, float32, on every backend: chunks of {@link AAREN_CHUNK} tokens carrying the
 * state (m, u, w) between them. Within a chunk the running max comes from a `[c, c]` masked max
 * (future tokens get an added −10³⁰, whose weight e^{−10³⁰ − m} is exactly 0: no 0·∞ can arise),
 * the weights e^{s_j − m_t} from the same matrix, and the carried state is merged in by the merge rule
 * with weight e^{M − m_t}. Live memory O(B·H·(T·K + c²)): the outputs, the per-token m_t and u_t
 * saved for the backward, and one chunk's matrices; never a T×T matrix.
 *
 * The gradient is a `tf.customGrad` running the reverse scan chunk by chunk (see `backward`
 * above), not tfjs's autodiff through the loop. The final m is a max, so its gradient is defined
 * almost everywhere: g_m = dm − du·u − dw·w (zero whenever the loss reads the state only through
 * outputs or later merges, which do not depend on how (m, u, w) is represented) goes to the
 * maximiser of m = max(m_init, s_0, …, s_{T−1}), the first one on a tie.
 *
 * Non-finite inputs, as the selective scan: the scan runs on k and v with their NaN and ±∞
 * replaced by 0, and the outputs of head h at every t' ≥ t, and the final state of head h, are
 * made NaN when token t's k or v of head h held one; the earlier outputs, and with a loss on them
 * every gradient, stay finite (the replaced entries' gradients are 0). A non-finite q or initial
 * state (other than the empty state's m = −∞) reaches every output of its head, as it should.
 *
 * @returns o `[B, T, H, K]` and the final state; B and T must be positive (the op answers the
 *   empty calls itself).
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([4, 16]) as tf.Tensor2D;
 * const k = tf.randomNormal([2, 100, 4, 16]) as tf.Tensor4D;
 * const { output, state } = aarenReference({ q, k, v: k, scale: 0.25 });   // [2, 100, 4, 16]; m, u [2, 4], w [2, 4, 16]
 * ```
 */
export function aarenReference(args: AarenArgs): { output: tf.Tensor4D; state: AarenState } {
  const [B, T, H, K] = args.k.shape;
  const { scale } = args;
  const bounds = chunkBounds(T);
  const sizes = bounds.map(([t0, t1]) => t1 - t0);
  const THK = T * H * K;
  // the real mask, where given, is saved with the inputs (the caller may dispose its own before a backward)
  const hasReal = args.real !== undefined;
  // padded tokens' scores are the hidden score, below every real one (they weigh 0 through realColumns too)
  const maskedScores = (q: tf.Tensor2D, k: tf.Tensor4D, real: tf.Tensor2D | undefined) => tf.tidy(() => {
    const s = scores(q, k, scale);
    return real ? tf.add(s, tf.mul(tf.sub(1, real), hiddenScore()).expandDims(1)) as tf.Tensor3D : s;
  });
  // real `[B, 1, n]` per chunk, or none
  const realPieces = (real: tf.Tensor2D | undefined) => (real ? chunksAlong(real.expandDims(1) as tf.Tensor3D, bounds, 2) : bounds.map(() => null));
  // with padding a row may have seen no real token (u = 0): its output is 0, and so are a and b
  const ratio = (x: tf.Tensor, y: tf.Tensor) => (hasReal ? tf.divNoNan(x, y) : broadcast.div(x, y));
  // the whole op is one customGrad, so that tfjs's tape holds one node (it keeps every taped op's
  // gradient, and on wasm copies of its saved inputs, until the backward ends); it returns one
  // tensor: o, m, u and w packed side by side, [B, T·H·K + 2H + H·K]
  return tf.tidy(() => {
    const run = tf.customGrad(((q: tf.Tensor2D, kRaw: tf.Tensor4D, vRaw: tf.Tensor4D, m0: tf.Tensor2D, u0: tf.Tensor2D,
      w0: tf.Tensor3D, save: tf.GradSaveFunc) => {
      const masks = masksFor(bounds);
      const kIn = finiteOnly(kRaw);
      const vIn = finiteOnly(vRaw);
      const sChunks = chunksAlong(maskedScores(q, kIn, args.real), bounds, 2);
      const realChunks = realPieces(args.real);
      const vChunks = tf.tidy(() => chunksAlong(swapMiddleAxes(vIn), bounds, 2));
      let carry: AarenState = { m: m0, u: u0, w: w0 };
      const ms: tf.Tensor3D[] = [];
      const us: tf.Tensor3D[] = [];
      const os: tf.Tensor4D[] = [];
      for (let n = 0; n < bounds.length; n++) {
        const { m, u, w } = chunkForward(sChunks[n]!, vChunks[n]!, masks.get(sizes[n]!)!, carry.m, carry.u, carry.w, realChunks[n]!);
        ms.push(m);
        us.push(u);
        os.push(ratio(w, u.expandDims(3)) as tf.Tensor4D);
        if (carry.m !== m0) tf.dispose([carry.m, carry.u, carry.w]);
        carry = { m: last(m, 2) as tf.Tensor2D, u: last(u, 2) as tf.Tensor2D, w: last(w, 2) as tf.Tensor3D };
        tf.dispose([sChunks[n]!, vChunks[n]!, w]);
      }
      const [m, u, o] = [copy.concat(ms, 2), copy.concat(us, 2), copy.concat(os, 2)];
      tf.dispose([ms, us, os]);
      // k and v as given (saved tensors are copies on wasm): the backward takes their finite parts again
      save([q, kRaw, vRaw, m0, u0, w0, m, u, o, carry.u, carry.w, ...(args.real ? [args.real] : [])]);
      // the outputs from a non-finite token on, and the final state after one, per head
      const poison = poisonAfterNonFinite(kRaw, vRaw);
      const poisonState = last(poison, 1);
      // an empty final state (no real token and no initial one) has m = −∞, as the empty state
      const finalM = hasReal ? tf.where(tf.equal(carry.u, 0), tf.fill(carry.m.shape, noScore()), carry.m) : carry.m;
      const value = copy.concat([
        broadcast.add(swapMiddleAxes(o as tf.Tensor4D), poison.expandDims(3)).reshape([B, THK]),
        tf.add(finalM, poisonState), tf.add(carry.u, poisonState),
        tf.add(carry.w, poisonState.expandDims(2)).reshape([B, H * K]),
      ], 1);
      return {
        value,
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
          const [sq, kRawSaved, vRawSaved, sm0, su0, sw0, sm, su, so, uT, wT, real] = saved as [tf.Tensor2D, tf.Tensor4D, tf.Tensor4D,
            tf.Tensor2D, tf.Tensor2D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor4D, tf.Tensor2D, tf.Tensor3D, tf.Tensor2D | undefined];
          const [sk, sv] = [finiteOnly(kRawSaved), finiteOnly(vRawSaved)];
          const dO = swapMiddleAxes(copy.slice(dy, [0, 0], [B, THK]).reshape([B, T, H, K]));
          const dm = copy.slice(dy, [0, THK], [B, H]) as tf.Tensor2D;
          const du = copy.slice(dy, [0, THK + H], [B, H]) as tf.Tensor2D;
          const dw = copy.slice(dy, [0, THK + 2 * H], [B, H * K]).reshape([B, H, K]) as tf.Tensor3D;
          const finalM = last(sm, 2) as tf.Tensor2D;
          const gm = tf.sub(tf.sub(dm, tf.mul(du, uT)), tf.sum(tf.mul(dw, wT), -1)) as tf.Tensor2D;
          // a_t = do_t/u_t and b_t = do_t·o_t/u_t, what every P_tj = e^{s_j − m_t}/u_t multiplies
          const a = ratio(dO, su.expandDims(3));
          const b = ratio(tf.sum(tf.mul(dO, so), -1), su);
          // the chunks of a temporary, which is freed once cut
          const cut = <X extends tf.Tensor>(x: X): X[] => {
            const pieces = chunksAlong(x, bounds, 2);
            x.dispose();
            return pieces;
          };
          const [sC, vC, mC, aC, bC] = [cut(maskedScores(sq, sk, real)), cut(swapMiddleAxes(sv)), chunksAlong(sm, bounds, 2),
            cut(a as tf.Tensor4D), cut(b as tf.Tensor3D)];
          const rC = realPieces(real);
          const chunks = sC.map((s, n) => ({ s, v: vC[n]!, m: mC[n]!, a: aC[n]!, b: bC[n]!, real: rC[n]! }));
          const g = backward(chunks, masksFor(bounds), { m: sm0, u: su0, w: sw0 }, finalM, gm, du, dw);
          const ds = tf.mul(g.ds, scale).expandDims(3);   // [B, H, T, 1]
          const dq = tf.sum(matMul(ds, swapMiddleAxes(sk), true), [0, 2]);
          // tokens first, and 0 where the input was not finite (the scan read 0 there), one at a time
          const zeroBad = (d: () => tf.Tensor, x: tf.Tensor) => tf.tidy(() => zeroWhereNotFinite(x, swapMiddleAxes(d() as tf.Tensor4D)));
          const dk = zeroBad(() => broadcast.mul(ds, sq.expandDims(1)), kRawSaved);
          const dv = zeroBad(() => g.dv, vRawSaved);
          g.dv.dispose();
          return [dq, dk, dv, g.state.m, g.state.u, g.state.w];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]) as (...x: tf.Tensor[]) => tf.Tensor2D;
    // without one, the empty state with its max at the hidden score, where the kernels' frame
    // floors it: the same outputs and final state, and no −∞ computed (which tfjs's debug mode
    // reports at every op it passes)
    const init = args.initialState ?? emptyState(B, H, K, hiddenScore());
    // a split: where its pieces are runs its gradient is one concat (slices' would be pads of the whole packed tensor)
    const [o, m, u, w] = copy.split(run(args.q, args.k, args.v, init.m, init.u, init.w), [THK, H, H, H * K], 1);
    return {
      output: o!.reshape([B, T, H, K]) as tf.Tensor4D,
      state: { m: m as tf.Tensor2D, u: u as tf.Tensor2D, w: w!.reshape([B, H, K]) as tf.Tensor3D },
    };
  });
}
