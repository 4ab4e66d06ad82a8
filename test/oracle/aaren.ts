// float64 oracle for Aaren (MIXERS.md §9), written from the definition, not from the reference:
// one sequential scan over t per (b, h) with the merge ⊕ of §9, no chunks, no tfjs. The gradient
// is §9's backward written out term by term, with P_tj = exp(s_j − m_t)/u_t formed for every pair
// j ≤ t (O(T²), plainly), so it is an independent check of a reverse scan.
//
// Layout is channels-last and row-major: q is [H, K]; k, v and o are [B, T, H, K]; a state is
// { m: [B, H], u: [B, H], w: [B, H, K] }.
//
// Conventions (the reference follows them):
// - The empty state is (m, u, w) = (−∞, 0, 0), the identity of ⊕. A merge weighs a part by
//   e^{m_i − m}, taken as 1 when m_i = m (so that the empty state merged with itself is the empty
//   state, not e^{−∞ + ∞} = NaN) and as 0 when m_i = −∞ < m.
// - The final m is a max, so the gradient in it is defined almost everywhere. The state is
//   redundant: (m, u, w) and (m', u·e^{m−m'}, w·e^{m−m'}) give every output and every later merge
//   the same values, so a loss that uses the state only through them has ∂L/∂m − u·∂L/∂u −
//   w·∂L/∂w = 0. A loss that reads m itself (dm·m + du·u + dw·w) has g_m = dm − du·u − dw·w along
//   that direction, and g_m is routed to the maximiser of m = max(m_init, s_0, …, s_{T−1}): on a
//   tie, to the first in that order. Tests compare gradients only where the max is not tied.

/** Sizes of one call: q `[H, K]`, k and v `[B, T, H, K]`. */
export interface AarenDims { B: number; T: number; H: number; K: number }

/** A state `{ m: [B, H], u: [B, H], w: [B, H, K] }` (or its cotangent). */
export interface AarenState<A extends ArrayLike<number> = Float64Array> { m: A; u: A; w: A }

/**
 * Inputs of one call. `q`: `[H, K]`; `k`, `v`: `[B, T, H, K]`; `initialState`: the scan's first
 * element (default the empty state); `scale`: multiplies q·k (default 1/√K).
 */
export interface AarenInputs {
  q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number>;
  initialState?: AarenState<ArrayLike<number>>; scale?: number;
}

/** Gradients of the loss: q `[H, K]`, k and v `[B, T, H, K]`, and initialState's parts when it was given. */
export interface AarenGrads { q: Float64Array; k: Float64Array; v: Float64Array; initialState?: AarenState }

/** One head's state: m and u scalars, w `[K]`. */
export interface HeadState { m: number; u: number; w: Float64Array }

/** e^{x − m} with the conventions above: 1 when x = m (−∞ included), 0 when x = −∞ < m. */
export function weight(x: number, m: number): number {
  return x === m ? 1 : Math.exp(x - m);
}

/** §9's associative merge `a ⊕ b`. */
export function merge(a: HeadState, b: HeadState): HeadState {
  const m = Math.max(a.m, b.m);
  const ea = weight(a.m, m);
  const eb = weight(b.m, m);
  return { m, u: ea * a.u + eb * b.u, w: a.w.map((wa, n) => ea * wa + eb * b.w[n]!) };
}

/** The empty state of K channels, (−∞, 0, 0). */
export function emptyHead(K: number): HeadState {
  return { m: -Infinity, u: 0, w: new Float64Array(K) };
}

// ---------------------------------------------------------------------------------------------
// shared plumbing

function check(x: AarenInputs, dims: AarenDims, extra: [string, ArrayLike<number> | undefined, number][] = []): void {
  for (const [name, n] of Object.entries(dims)) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`aaren oracle: ${name} must be an integer ≥ 0, got ${n}`);
  }
  const { B, T, H, K } = dims;
  const s = x.initialState;
  const expected: [string, ArrayLike<number> | undefined, number][] = [
    ['q', x.q, H * K], ['k', x.k, B * T * H * K], ['v', x.v, B * T * H * K],
    ['initialState.m', s?.m, B * H], ['initialState.u', s?.u, B * H], ['initialState.w', s?.w, B * H * K], ...extra,
  ];
  for (const [name, a, n] of expected) {
    if (a !== undefined && a.length !== n) {
      throw new Error(`aaren oracle: ${name} has ${a.length} values, expected ${n} for ${JSON.stringify(dims)}`);
    }
  }
}

const scaleOf = (x: AarenInputs, K: number) => x.scale ?? 1 / Math.sqrt(K);

/** The initial state of head (b, h): the given one, or the empty state. */
function initialHead(x: AarenInputs, dims: AarenDims, b: number, h: number): HeadState {
  const { H, K } = dims;
  const s = x.initialState;
  if (!s) return emptyHead(K);
  const bh = b * H + h;
  return { m: s.m[bh]!, u: s.u[bh]!, w: Float64Array.from({ length: K }, (_, n) => s.w[bh * K + n]!) };
}

/** Everything about head (b, h) that the backward reads: s_t, and m_t, u_t, o_t after each token. */
type HeadTrace = { s: Float64Array; m: Float64Array; u: Float64Array; o: Float64Array[]; init: HeadState; final: HeadState };

function scanHead(x: AarenInputs, dims: AarenDims, b: number, h: number): HeadTrace {
  const { T, H, K } = dims;
  const scale = scaleOf(x, K);
  const init = initialHead(x, dims, b, h);
  const s = new Float64Array(T);
  const m = new Float64Array(T);
  const u = new Float64Array(T);
  const o: Float64Array[] = [];
  let state = init;
  for (let t = 0; t < T; t++) {
    const at = ((b * T + t) * H + h) * K;
    let dot = 0;
    for (let n = 0; n < K; n++) dot += x.q[h * K + n]! * x.k[at + n]!;
    s[t] = scale * dot;
    // the leaf of token t is (s_t, 1, v_t)
    state = merge(state, { m: s[t]!, u: 1, w: Float64Array.from({ length: K }, (_, n) => x.v[at + n]!) });
    m[t] = state.m;
    u[t] = state.u;
    o.push(state.w.map((wn) => wn / state.u));
  }
  return { s, m, u, o, init, final: state };
}

// ---------------------------------------------------------------------------------------------
// the oracles

/**
 * Aaren in float64: o `[B, T, H, K]`, o_t = w_t/u_t of the scan's state after token t, and the
 * final state (the initial state, or the empty state, when T = 0).
 *
 * @example
 * // one head, K = 1, scale 1: s = (0, ln 2); o_1 = (3·½ + 6·1)/(½ + 1) = 5
 * const { o, state } = aarenOracle({ q: [1], k: [0, Math.LN2], v: [3, 6], scale: 1 }, { B: 1, T: 2, H: 1, K: 1 });
 * // o = [3, 5], state = { m: [ln 2], u: [1.5], w: [7.5] }
 */
export function aarenOracle(x: AarenInputs, dims: AarenDims): { o: Float64Array; state: AarenState } {
  check(x, dims);
  const { B, T, H, K } = dims;
  const o = new Float64Array(B * T * H * K);
  const state: AarenState = { m: new Float64Array(B * H), u: new Float64Array(B * H), w: new Float64Array(B * H * K) };
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const tr = scanHead(x, dims, b, h);
    for (let t = 0; t < T; t++) o.set(tr.o[t]!, ((b * T + t) * H + h) * K);
    state.m[b * H + h] = tr.final.m;
    state.u[b * H + h] = tr.final.u;
    state.w.set(tr.final.w, (b * H + h) * K);
  }
  return { o, state };
}

/**
 * Gradients of L = Σ dOut·o + Σ dState.m·m + Σ dState.u·u + Σ dState.w·w (each part of dState
 * optional, absent meaning 0) with respect to q, k, v and, when it was given, each part of
 * initialState, by §9's backward (see the conventions at the top for m's gradient):
 * ```
 * P_tj  = e^{s_j − m_t}/u_t                (j ≤ t)      P_t,init = e^{m_init − m_t}/u_t
 * dv_j  = Σ_{t≥j} P_tj·do_t + e^{s_j − m}·dw
 * ds_j  = Σ_{t≥j} P_tj·(do_t·v_j − do_t·o_t) + e^{s_j − m}·(du + dw·v_j) + [j maximises m]·g_m
 * dq_h  = scale·Σ_{b,j} ds_j·k_j              dk_j = scale·ds_j·q_h
 * dw_init = Σ_t P_t,init·do_t + e^{m_init − m}·dw      du_init = −Σ_t P_t,init·do_t·o_t + e^{m_init − m}·du
 * dm_init = w_init·dw_init + u_init·du_init + [init maximises m]·g_m       g_m = dm − du·u − dw·w
 * ```
 * where (m, u, w) is the final state. `dOut` is `[B, T, H, K]`.
 *
 * @example
 * const g = aarenGradOracle(inputs, dims, dOut, { m: dm });   // no du, dw
 * g.q;                 // [H, K], summed over batch and time
 * g.initialState;      // undefined unless inputs.initialState was given
 */
export function aarenGradOracle(
  x: AarenInputs, dims: AarenDims, dOut: ArrayLike<number>, dState: Partial<AarenState<ArrayLike<number>>> = {},
): AarenGrads {
  const { B, T, H, K } = dims;
  check(x, dims, [['dOut', dOut, B * T * H * K], ['dState.m', dState.m, B * H], ['dState.u', dState.u, B * H],
    ['dState.w', dState.w, B * H * K]]);
  const scale = scaleOf(x, K);
  const g: AarenGrads = { q: new Float64Array(H * K), k: new Float64Array(B * T * H * K), v: new Float64Array(B * T * H * K) };
  if (x.initialState) g.initialState = { m: new Float64Array(B * H), u: new Float64Array(B * H), w: new Float64Array(B * H * K) };
  const dot = (a: ArrayLike<number>, ai: number, c: ArrayLike<number>, ci: number) => {
    let sum = 0;
    for (let n = 0; n < K; n++) sum += a[ai + n]! * c[ci + n]!;
    return sum;
  };
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const tr = scanHead(x, dims, b, h);
    const bh = b * H + h;
    const dm = dState.m?.[bh] ?? 0;
    const du = dState.u?.[bh] ?? 0;
    const dw = Float64Array.from({ length: K }, (_, n) => dState.w?.[bh * K + n] ?? 0);
    const { m, u, w } = tr.final;
    const gm = dm - du * u - dot(dw, 0, w, 0);
    // the first maximiser of m among (init, s_0, …, s_{T−1}); −1 is the initial state
    let first = tr.init.m === m ? -1 : 0;
    while (first >= 0 && first < T && tr.s[first] !== m) first++;
    const tok = (t: number) => ((b * T + t) * H + h) * K;
    // do_t·o_t per token
    const doo = Float64Array.from({ length: T }, (_, t) => dot(dOut, tok(t), tr.o[t]!, 0));
    for (let j = 0; j < T; j++) {
      const vj = tok(j);
      const eT = weight(tr.s[j]!, m);
      let ds = eT * (du + dot(dw, 0, x.v, vj)) + (j === first ? gm : 0);
      for (let n = 0; n < K; n++) g.v[vj + n] = eT * dw[n]!;
      for (let t = j; t < T; t++) {
        const P = weight(tr.s[j]!, tr.m[t]!) / tr.u[t]!;
        ds += P * (dot(dOut, tok(t), x.v, vj) - doo[t]!);
        for (let n = 0; n < K; n++) g.v[vj + n] += P * dOut[tok(t) + n]!;
      }
      for (let n = 0; n < K; n++) {
        g.k[vj + n] = scale * ds * x.q[h * K + n]!;
        g.q[h * K + n] += scale * ds * x.k[vj + n]!;
      }
    }
    if (g.initialState) {
      const init = tr.init;
      const eT = weight(init.m, m);
      let du0 = eT * du;
      const dw0 = dw.map((d) => eT * d);
      for (let t = 0; t < T; t++) {
        const P = weight(init.m, tr.m[t]!) / tr.u[t]!;
        du0 -= P * doo[t]!;
        for (let n = 0; n < K; n++) dw0[n] += P * dOut[tok(t) + n]!;
      }
      g.initialState.u[bh] = du0;
      g.initialState.w.set(dw0, bh * K);
      g.initialState.m[bh] = dot(init.w, 0, dw0, 0) + init.u * du0 + (first === -1 ? gm : 0);
    }
  }
  return g;
}
