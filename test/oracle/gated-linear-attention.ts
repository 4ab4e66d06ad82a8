// float64 oracle for GatedLinearAttention (MIXERS.md §10), written from the recurrence, not from
// the reference: one sequential loop over t per (b, h) on a K×V state, no chunks, no cumulative
// gates, no tfjs. The gradient is the reverse-time adjoint of that same loop, taken term by term
// from the chain rule, so it is an independent check of the reference's backward.
//
//   S_t = diag(exp(g_t)) · S_{t−1} + k_tᵀ v_t        S_{−1} = initialState or 0
//   o_t = (scale · q_t) · S_t                         scale = 1/sqrt(K) by default
//
// Layout is channels-last and row-major: q, k, g are [B, T, H, K]; v and out are [B, T, H, V];
// initialState and state are [B, H, K, V].

/** Sizes of one call: per-head tensors `[B, T, H, K]` and values `[B, T, H, V]`. */
export interface GlaDims { B: number; T: number; H: number; K: number; V: number }

/**
 * Inputs of one call. `q`, `k`, `g`: `[B, T, H, K]` (g ≤ 0, the log forget gate); `v`:
 * `[B, T, H, V]`; `initialState`: `[B, H, K, V]`, absent meaning zeros; `scale` defaults to
 * 1/sqrt(K).
 */
export interface GlaInputs {
  q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number>; g: ArrayLike<number>;
  initialState?: ArrayLike<number>; scale?: number;
}

/** Gradients of the loss, same shapes as the inputs; `initialState` only when it was given. */
export type GlaGrads = { q: Float64Array; k: Float64Array; v: Float64Array; g: Float64Array; initialState?: Float64Array };

function check(x: GlaInputs, dims: GlaDims, extra: [string, ArrayLike<number> | undefined, number][] = []): void {
  for (const [name, n] of Object.entries(dims)) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`gated linear attention oracle: ${name} must be an integer ≥ 0, got ${n}`);
  }
  const { B, T, H, K, V } = dims;
  const expected: [string, ArrayLike<number> | undefined, number][] = [
    ['q', x.q, B * T * H * K], ['k', x.k, B * T * H * K], ['g', x.g, B * T * H * K], ['v', x.v, B * T * H * V],
    ['initialState', x.initialState, B * H * K * V], ...extra,
  ];
  for (const [name, a, n] of expected) {
    if (a !== undefined && a.length !== n) {
      throw new Error(`gated linear attention oracle: ${name} has ${a.length} values, expected ${n} for ${JSON.stringify(dims)}`);
    }
  }
}

/**
 * Every state of the recurrence, `[B, H, T + 1, K, V]`: entry t + 1 holds S_t, entry 0 holds
 * S_{−1} (the initial state or zeros), so the backward can read S_{t−1} at entry t.
 */
function states(x: GlaInputs, dims: GlaDims): Float64Array {
  const { B, T, H, K, V } = dims;
  const KV = K * V;
  const S = new Float64Array(B * H * (T + 1) * KV);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const base = (b * H + h) * (T + 1) * KV;
    for (let n = 0; n < KV; n++) S[base + n] = x.initialState?.[(b * H + h) * KV + n] ?? 0;
    for (let t = 0; t < T; t++) {
      const qk = ((b * T + t) * H + h) * K;
      const qv = ((b * T + t) * H + h) * V;
      for (let i = 0; i < K; i++) {
        const decay = Math.exp(x.g[qk + i]!);
        for (let j = 0; j < V; j++) {
          const prev = S[base + t * KV + i * V + j]!;
          S[base + (t + 1) * KV + i * V + j] = decay * prev + x.k[qk + i]! * x.v[qv + j]!;
        }
      }
    }
  }
  return S;
}

/** The output `[B, T, H, V]` from the states: o_t = scale · q_t · S_t. */
function outputs(x: GlaInputs, dims: GlaDims, S: Float64Array, scale: number): Float64Array {
  const { B, T, H, K, V } = dims;
  const out = new Float64Array(B * T * H * V);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
    const s = ((b * H + h) * (T + 1) + t + 1) * K * V;
    const qk = ((b * T + t) * H + h) * K;
    for (let j = 0; j < V; j++) {
      let acc = 0;
      for (let i = 0; i < K; i++) acc += x.q[qk + i]! * S[s + i * V + j]!;
      out[((b * T + t) * H + h) * V + j] = scale * acc;
    }
  }
  return out;
}

/** The final state `[B, H, K, V]`: S_{T−1}, or the initial state (or zeros) when T = 0. */
function finalState(dims: GlaDims, S: Float64Array): Float64Array {
  const { B, T, H, K, V } = dims;
  const KV = K * V;
  const state = new Float64Array(B * H * KV);
  for (let bh = 0; bh < B * H; bh++) state.set(S.subarray((bh * (T + 1) + T) * KV, (bh * (T + 1) + T + 1) * KV), bh * KV);
  return state;
}

/**
 * GatedLinearAttention in float64: the output `[B, T, H, V]` and the final state `[B, H, K, V]`.
 *
 * @example
 * const dims = { B: 1, T: 2, H: 1, K: 1, V: 1 };
 * const { out, state } = gatedLinearAttentionOracle(
 *   { q: [1, 2], k: [1, 1], v: [3, 5], g: [0, -Math.LN2], scale: 1 }, dims);
 * // S₀ = 3, S₁ = 3/2 + 5 = 6.5: out = [3, 13], state = [6.5]
 */
export function gatedLinearAttentionOracle(x: GlaInputs, dims: GlaDims): { out: Float64Array; state: Float64Array } {
  check(x, dims);
  const S = states(x, dims);
  return { out: outputs(x, dims, S, x.scale ?? 1 / Math.sqrt(dims.K)), state: finalState(dims, S) };
}

/**
 * Gradients of L = Σ dOut·out + Σ dState·state with respect to q, k, v, g and, when it was
 * given, initialState. `dOut` is `[B, T, H, V]`, `dState` `[B, H, K, V]` (absent: zeros).
 *
 * The adjoint of the state, dS_t = ∂L/∂S_t, runs backwards from dS_{T−1} = dState:
 * ```
 * dS_t     += scale · q_tᵀ dOut_t                 (o_t reads S_t)
 * dq_t      = scale · S_t · dOut_tᵀ
 * dk_t      = dS_t · v_tᵀ,   dv_t = k_t · dS_t
 * dg_t      = exp(g_t) ⊙ rowsum(dS_t ⊙ S_{t−1})
 * dS_{t−1}  = diag(exp(g_t)) · dS_t               dInitialState = dS_{−1}
 * ```
 *
 * @example
 * const grads = gatedLinearAttentionGradOracle(inputs, dims, dOut, dState);
 * grads.g;             // [B, T, H, K]
 * grads.initialState;  // undefined unless inputs.initialState was given
 */
export function gatedLinearAttentionGradOracle(
  x: GlaInputs, dims: GlaDims, dOut: ArrayLike<number>, dState?: ArrayLike<number>,
): GlaGrads {
  const { B, T, H, K, V } = dims;
  const KV = K * V;
  check(x, dims, [['dOut', dOut, B * T * H * V], ['dState', dState, B * H * KV]]);
  const scale = x.scale ?? 1 / Math.sqrt(K);
  const S = states(x, dims);
  const g: GlaGrads = {
    q: new Float64Array(B * T * H * K), k: new Float64Array(B * T * H * K),
    v: new Float64Array(B * T * H * V), g: new Float64Array(B * T * H * K),
  };
  if (x.initialState) g.initialState = new Float64Array(B * H * KV);
  const dS = new Float64Array(KV);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const bh = b * H + h;
    for (let n = 0; n < KV; n++) dS[n] = dState?.[bh * KV + n] ?? 0;
    for (let t = T - 1; t >= 0; t--) {
      const qk = ((b * T + t) * H + h) * K;
      const qv = ((b * T + t) * H + h) * V;
      const now = (bh * (T + 1) + t + 1) * KV;   // S_t
      const prev = (bh * (T + 1) + t) * KV;      // S_{t−1}
      for (let i = 0; i < K; i++) {
        let dq = 0;
        for (let j = 0; j < V; j++) {
          dq += S[now + i * V + j]! * dOut[qv + j]!;
          dS[i * V + j] += scale * x.q[qk + i]! * dOut[qv + j]!;
        }
        g.q[qk + i] = scale * dq;
      }
      for (let i = 0; i < K; i++) {
        const decay = Math.exp(x.g[qk + i]!);
        let dk = 0;
        let dDecay = 0;
        for (let j = 0; j < V; j++) {
          const d = dS[i * V + j]!;
          dk += d * x.v[qv + j]!;
          g.v[qv + j] += d * x.k[qk + i]!;
          dDecay += d * S[prev + i * V + j]!;
          dS[i * V + j] = d * decay;
        }
        g.k[qk + i] = dk;
        g.g[qk + i] = dDecay * decay;
      }
    }
    if (g.initialState) g.initialState.set(dS, bh * KV);
  }
  return g;
}

/**
 * The oracle and grad oracle run on |q|, |k|, |v|, |initialState|, |dOut|, |dState| with the
 * same gates: every term of every sum is then counted with its absolute value, so each entry
 * is Σ |terms| of the same entry of the signed run, the magnitude that float32 rounding errors
 * scale with (a γ_n bound is n·ε times it).
 *
 * @example
 * const mag = gatedLinearAttentionMagnitudes(inputs, dims, dOut);
 * mag.out;      // [B, T, H, V], ≥ |out| entry by entry
 * mag.grads.q;  // [B, T, H, K], ≥ |dq|
 */
export function gatedLinearAttentionMagnitudes(
  x: GlaInputs, dims: GlaDims, dOut: ArrayLike<number>, dState?: ArrayLike<number>,
): { out: Float64Array; state: Float64Array; grads: GlaGrads } {
  const abs = (a: ArrayLike<number>) => Float64Array.from(a, Math.abs);
  const ax: GlaInputs = {
    q: abs(x.q), k: abs(x.k), v: abs(x.v), g: x.g, scale: x.scale,
    ...(x.initialState ? { initialState: abs(x.initialState) } : {}),
  };
  const { out, state } = gatedLinearAttentionOracle(ax, dims);
  return { out, state, grads: gatedLinearAttentionGradOracle(ax, dims, abs(dOut), dState && abs(dState)) };
}
