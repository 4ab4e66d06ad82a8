/**
 * Float64 oracles of ExpressiveAttention's two decodes and the float32 error bounds they are
 * checked against (docs/expressive-attention.md, "Precision of the two decodes").
 *
 * Tokens are laid out `[T, B, heads, K]` (token-major, as decoding sees them). For query head h
 * at step t of row b, with kv head g = ⌊h·Hkv/H⌋ and the visible keys s ≤ t:
 *   s_s = scale·q·k_s,   c_s = scale·Σ_a |q_a·k_sa|   (so |s_s| ≤ c_s)
 *   D = ε + Σ_s s_s²,    N_c = Σ_s s_s²·v_sc,   o_c = N_c / D
 * The recurrent form computes the same N and D as φ(scale·q)·M and ε + φ(scale·q)·z with
 * M = Σ_s φ(k_s)·v_sᵀ, z = Σ_s φ(k_s): sums of packed products φ(q)_p·φ(k_s)_p whose
 * magnitudes add up to Σ_s c_s² (⟨|φ(x)|, |φ(y)|⟩ = (Σ_a |x_a·y_a|)²), not Σ_s s_s².
 */

/** u, the unit roundoff of float32. */
export const U32 = 2 ** -24;

/** γ_n = n·u / (1 − n·u), the bound of n float32 roundings compounded. */
export function gamma(n: number): number {
  return (n * U32) / (1 - n * U32);
}

/** Sizes and inputs of a run of decode steps, tokens `[T, B, H, K]` and `[T, B, Hkv, K]`. */
export interface RecurrentCase {
  T: number; B: number; H: number; Hkv: number; K: number;
  scale: number; epsilon: number;
  q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number>;
}

/** Per output element `[T, B, H, K]`: the oracle and what it needs for the bounds. */
export interface RecurrentOracle {
  /** The attention from its dot products, Σ s²·v / (ε + Σ s²) (the parallel form). */
  parallel: Float64Array;
  /** The same through the state M, z and φ (the recurrent form), in float64. */
  recurrent: Float64Array;
  /** The recurrent step's float32 bound per element (see {@link recurrentStepBound}). */
  bound: Float64Array;
  /** Per row (t, b, h): κ = Σ c_s² / Σ s_s², the packed sums' condition number. */
  kappa: Float64Array;
}

/** φ(x) of `x[off .. off + K)` times `factor`: x_a² then √2·x_a·x_b for a < b. */
function phi(x: ArrayLike<number>, off: number, K: number, factor = 1): Float64Array {
  const f = new Float64Array((K * (K + 1)) / 2);
  let p = 0;
  for (let a = 0; a < K; a++) f[p++] = (factor * x[off + a]!) ** 2;
  for (let a = 0; a < K; a++) for (let b = a + 1; b < K; b++) f[p++] = Math.SQRT2 * factor * x[off + a]! * factor * x[off + b]!;
  return f;
}

/**
 * The bound of one recurrent step's float32 output o_c against the exact one, the step run
 * from the zero state (t + 1 tokens summed into M and z), for the reference (pairwise
 * compensated readout) and the kernel (compensated per chunk of rows, then over the chunks).
 * Counting roundings, relative to the exact product φ(scale·q)_p·φ(k_s)_p·v_sc:
 * - φ(scale·q)_p: scale rounded to float32, q_a·scale and q_b·scale, their product, √2
 *   rounded and the product with it: 7;
 * - φ(k_s)_p·v_sc: 3 for φ(k)_p, 1 for the product with v: 4; then the t + 1 additions of
 *   the state M (z: 3 + t + 1);
 * - φ(scale·q)_p·M_pc: 1.
 * So each of the readout's P terms carries a relative error within γ_{t+13}, and its error adds
 * up to γ_{t+13}·Σ_s c_s²·|v_sc| over p and s. A compensated sum adds at most 3u·Σ|terms| (the
 * kernel: each chunk's sum rounded once, the chunks' sum once, the result once; the reference
 * once) plus O(log P·u²)·Σ|terms|: hence n = t + 16 with γ's slack for the u² terms, for N
 * and for S, and ΔD = γ_n·Σ_s c_s² + 2u·D (ε rounded to float32, then the addition). The
 * denominator is clamped at ε, so D̂ ≥ D_lo = max(D − ΔD, ε·(1 − u)), and
 *   |ô_c − o_c| ≤ (1 + u)·(ΔN_c + |o_c|·ΔD) / D_lo + u·|o_c|   (the division rounds once).
 * An uncompensated sum over the P rows would need n = P + t + 13 instead.
 */
export function recurrentStepBound(t: number, D: number, epsilon: number, C: number, Cv: number, o: number): number {
  const g = gamma(t + 16);
  return quotientBound(g * Cv, g * C, D, D, epsilon, o);
}

/**
 * The bound of a float32 quotient N̂ / max(Ŝ + ε, ε) against N / D, D = ε + S in
 * [Dlo, Dhi], from the bounds dN of |N̂ − N| and dS of |Ŝ − S|: ε rounded to float32 and the
 * addition add 2u·D to the denominator's error, the clamp keeps it ≥ ε·(1 − u), and the
 * division rounds once.
 */
function quotientBound(dN: number, dS: number, Dlo: number, Dhi: number, epsilon: number, o: number): number {
  const dD = dS + 2 * U32 * Dhi;
  const lo = Math.max(Dlo - dD, epsilon * (1 - U32));
  return ((1 + U32) * (dN + Math.abs(o) * dD)) / lo + U32 * Math.abs(o);
}

/** The float32 weights of an attention layer, dense `[in, units]`. */
export interface AttentionWeights {
  query: ArrayLike<number>; queryBias: ArrayLike<number> | null;
  key: ArrayLike<number>; keyBias: ArrayLike<number> | null;
  value: ArrayLike<number>; valueBias: ArrayLike<number> | null;
  output: ArrayLike<number>; outputBias: ArrayLike<number> | null;
}

/** x `[rows, D]`·W `[D, units]` + bias in float64, and γ_{D+1}·(Σ_d |x_d·W_du| + |bias_u|), float32's bound. */
export function project(x: ArrayLike<number>, rows: number, D: number, W: ArrayLike<number>, bias: ArrayLike<number> | null, units: number) {
  const y = new Float64Array(rows * units);
  const err = new Float64Array(rows * units);
  const g = gamma(D + 1);
  for (let r = 0; r < rows; r++) {
    for (let u = 0; u < units; u++) {
      let acc = bias ? bias[u]! : 0;
      let abs = bias ? Math.abs(bias[u]!) : 0;
      for (let d = 0; d < D; d++) { const term = x[r * D + d]! * W[d * units + u]!; acc += term; abs += Math.abs(term); }
      y[r * units + u] = acc;
      err[r * units + u] = g * abs;
    }
  }
  return { y, err };
}

/**
 * The causal self-attention layer on x `[B, T, D]` (float32) in float64, and per output element
 * `[B, T, D]` the bounds of a float32 evaluation through each decode:
 * - both evaluate the projections q, k, v with errors eq, ek, ev (γ_{D+1} of their magnitude
 *   sums), which perturb the exact scores by ds_s = scale·Σ_a (eq_a·(|k_a| + ek_a) + |q_a|·ek_a)
 *   and their squares by dp_s = 2|s_s|·ds_s + ds_s²: o moves by at most
 *   (Σ_s dp_s·(|v_sc| + ev_sc) + s_s²·ev_sc + |o_c|·Σ_s dp_s) / max(D − Σ_s dp_s, ε);
 * - the recurrent step then errs by {@link recurrentStepBound} at the perturbed inputs (each c_s
 *   and |v| taken with their perturbations);
 * - the parallel forward computes each score within γ_{K+2}·c_s (K products and additions,
 *   scale rounded and applied), squares it, and sums s² and s²·v over the t + 1 keys, each
 *   term within γ_{t+4} (one rounding for the square, one for the product with v, t + 1
 *   additions, any order: the kernels' tiles or tfjs's);
 * - the output projection adds its own rounding, γ_{HK+1} of its magnitude sum, and carries o's
 *   error through |Wo|.
 * The two decodes differ by at most the sum of their bounds.
 */
export function layerDecodeOracle(
  x: ArrayLike<number>, B: number, T: number, D: number, H: number, Hkv: number, K: number, epsilon: number, w: AttentionWeights,
  recurrentRoundings: (t: number) => number = (t) => t + 16,
) {
  const scale = 1 / Math.sqrt(K);
  const rows = B * T;
  const q = project(x, rows, D, w.query, w.queryBias, H * K);
  const k = project(x, rows, D, w.key, w.keyBias, Hkv * K);
  const v = project(x, rows, D, w.value, w.valueBias, Hkv * K);
  const o = new Float64Array(rows * H * K);
  const errRecurrent = new Float64Array(rows * H * K);
  const errParallel = new Float64Array(rows * H * K);
  const kappa = new Float64Array(rows);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor((h * Hkv) / H);
        const qo = (b * T + t) * H * K + h * K;
        let S = 0;
        let dP = 0; // Σ dp_s
        let Crec = 0; // Σ c̃_s²
        let Cpar = 0; // Σ of the parallel's perturbed s²: (|s| + ds)² + dpar
        let dPar = 0; // Σ dpar_s
        const N = new Float64Array(K);
        const dNin = new Float64Array(K);
        const CvRec = new Float64Array(K);
        const dNpar = new Float64Array(K);
        const NparAbs = new Float64Array(K);
        for (let s = 0; s <= t; s++) {
          const ko = (b * T + s) * Hkv * K + g * K;
          let dot = 0;
          let abs = 0;
          let ds = 0;
          for (let a = 0; a < K; a++) {
            const [qa, ka, eqa, eka] = [q.y[qo + a]!, k.y[ko + a]!, q.err[qo + a]!, k.err[ko + a]!];
            dot += qa * ka;
            abs += (Math.abs(qa) + eqa) * (Math.abs(ka) + eka);
            ds += eqa * (Math.abs(ka) + eka) + Math.abs(qa) * eka;
          }
          const sc = scale * dot;
          const c = scale * abs;
          ds *= scale;
          const dp = 2 * Math.abs(sc) * ds + ds * ds;
          const sHi = Math.abs(sc) + ds; // |s̃| at the computed projections
          const e = gamma(K + 2) * c;
          const dpar = ((2 * sHi * e + e * e) * (1 + U32)) + U32 * sHi * sHi;
          S += sc * sc;
          dP += dp;
          Crec += c * c;
          dPar += dpar;
          Cpar += sHi * sHi + dpar;
          for (let e2 = 0; e2 < K; e2++) {
            const [ve, eve] = [v.y[ko + e2]!, v.err[ko + e2]!];
            N[e2] += sc * sc * ve;
            dNin[e2] += dp * (Math.abs(ve) + eve) + sc * sc * eve;
            CvRec[e2] += c * c * (Math.abs(ve) + eve);
            dNpar[e2] += dpar * (Math.abs(ve) + eve);
            NparAbs[e2] += (sHi * sHi + dpar) * (Math.abs(ve) + eve);
          }
        }
        const Dx = Math.max(epsilon + S, 2 ** -60);
        const DinLo = Math.max(Dx - dP, epsilon);
        const DinHi = Dx + dP;
        kappa[b * T + t] = Math.max(kappa[b * T + t]!, S > 0 ? Crec / S : Infinity);
        const gRec = gamma(recurrentRoundings(t));
        const gPar = gamma(t + 4);
        for (let e2 = 0; e2 < K; e2++) {
          const oc = N[e2]! / Dx;
          const dIn = (dNin[e2]! + Math.abs(oc) * dP) / DinLo;
          const oHi = Math.abs(oc) + dIn;
          o[qo + e2] = oc;
          errRecurrent[qo + e2] = dIn + quotientBound(gRec * CvRec[e2]!, gRec * Crec, DinLo, DinHi, epsilon, oHi);
          errParallel[qo + e2] = dIn + quotientBound(dNpar[e2]! + gPar * NparAbs[e2]!, dPar + gPar * Cpar, DinLo, DinHi, epsilon, oHi);
        }
      }
    }
  }
  // the output projection, [B·T, H·K]·Wo
  const HK = H * K;
  const y = new Float64Array(rows * D);
  const boundRecurrent = new Float64Array(rows * D);
  const boundParallel = new Float64Array(rows * D);
  const gOut = gamma(HK + 1);
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < D; d++) {
      let acc = w.outputBias ? w.outputBias[d]! : 0;
      const bias = w.outputBias ? Math.abs(w.outputBias[d]!) : 0;
      let [carriedR, carriedP, absR, absP] = [0, 0, bias, bias];
      for (let c = 0; c < HK; c++) {
        const [oc, wcd] = [o[r * HK + c]!, w.output[c * D + d]!];
        acc += oc * wcd;
        carriedR += errRecurrent[r * HK + c]! * Math.abs(wcd);
        carriedP += errParallel[r * HK + c]! * Math.abs(wcd);
        absR += (Math.abs(oc) + errRecurrent[r * HK + c]!) * Math.abs(wcd);
        absP += (Math.abs(oc) + errParallel[r * HK + c]!) * Math.abs(wcd);
      }
      y[r * D + d] = acc;
      boundRecurrent[r * D + d] = carriedR + gOut * absR;
      boundParallel[r * D + d] = carriedP + gOut * absP;
    }
  }
  return { y, boundRecurrent, boundParallel, kappa };
}

/**
 * Both float64 forms of a run of decode steps from the zero state, with the recurrent step's
 * float32 bound per element and each row's κ.
 */
export function recurrentOracle(c: RecurrentCase): RecurrentOracle {
  const { T, B, H, Hkv, K, scale, epsilon, q, k, v } = c;
  const P = (K * (K + 1)) / 2;
  const n = T * B * H * K;
  const parallel = new Float64Array(n);
  const recurrent = new Float64Array(n);
  const bound = new Float64Array(n);
  const kappa = new Float64Array(T * B * H);
  const M = new Float64Array(B * Hkv * P * K);
  const z = new Float64Array(B * Hkv * P);
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < Hkv; g++) {
        const ko = ((t * B + b) * Hkv + g) * K;
        const fk = phi(k, ko, K);
        const base = (b * Hkv + g) * P;
        for (let p = 0; p < P; p++) {
          z[base + p] += fk[p]!;
          for (let e = 0; e < K; e++) M[(base + p) * K + e] += fk[p]! * v[ko + e]!;
        }
      }
      for (let h = 0; h < H; h++) {
        const g = Math.floor((h * Hkv) / H);
        const qo = ((t * B + b) * H + h) * K;
        let S = 0;
        let C = 0;
        const N = new Float64Array(K);
        const Cv = new Float64Array(K);
        for (let s = 0; s <= t; s++) {
          const ko = ((s * B + b) * Hkv + g) * K;
          let dot = 0;
          let abs = 0;
          for (let a = 0; a < K; a++) { dot += q[qo + a]! * k[ko + a]!; abs += Math.abs(q[qo + a]! * k[ko + a]!); }
          const [s2, c2] = [(scale * dot) ** 2, (scale * abs) ** 2];
          S += s2;
          C += c2;
          for (let e = 0; e < K; e++) { N[e] += s2 * v[ko + e]!; Cv[e] += c2 * Math.abs(v[ko + e]!); }
        }
        const D = Math.max(epsilon + S, 2 ** -60);
        kappa[(t * B + b) * H + h] = S > 0 ? C / S : Infinity;
        // the recurrent form: φ(scale·q)·M / (ε + max(φ(scale·q)·z, 0))
        const fq = phi(q, qo, K, scale);
        const base = (b * Hkv + g) * P;
        let Sr = 0;
        const Nr = new Float64Array(K);
        for (let p = 0; p < P; p++) {
          Sr += fq[p]! * z[base + p]!;
          for (let e = 0; e < K; e++) Nr[e] += fq[p]! * M[(base + p) * K + e]!;
        }
        const Dr = Math.max(epsilon + Math.max(Sr, 0), 2 ** -60);
        for (let e = 0; e < K; e++) {
          parallel[qo + e] = N[e]! / D;
          recurrent[qo + e] = Nr[e]! / Dr;
          bound[qo + e] = recurrentStepBound(t, D, epsilon, C, Cv[e]!, parallel[qo + e]!);
        }
      }
    }
  }
  return { parallel, recurrent, bound, kappa };
}

/**
 * The recurrent state after the tokens x `[T, D]` of one row (float32), in float64: M
 * `[Hkv, P, K]` and z `[Hkv, P]`, with the bound of a float32 evaluation per element. Each
 * side projects k and v within ek, ev (γ_{D+1} of their magnitude sums), which moves
 * φ(k)_p = √2·k_a·k_b by at most dφ = √2·(|k_a|·ek_b + ek_a·|k_b| + ek_a·ek_b) (no √2 on the
 * diagonal); then forms φ(k)·v (4 roundings) and sums over the T tokens in any order (a step's
 * recursion, a prefill's matMul, plus the state it continues: T + 4 more), so
 *   |M̂_pc − M_pc| ≤ Σ_s dφ_p·(|v_sc| + ev_sc) + |φ(k)_p|·ev_sc + γ_{T+8}·(|φ(k)_p| + dφ_p)·(|v_sc| + ev_sc)
 * and likewise for z without v.
 */
export function stateOracle(x: ArrayLike<number>, T: number, D: number, Hkv: number, K: number, w: AttentionWeights) {
  const P = (K * (K + 1)) / 2;
  const k = project(x, T, D, w.key, w.keyBias, Hkv * K);
  const v = project(x, T, D, w.value, w.valueBias, Hkv * K);
  const M = new Float64Array(Hkv * P * K);
  const z = new Float64Array(Hkv * P);
  const boundM = new Float64Array(M.length);
  const boundZ = new Float64Array(z.length);
  const g = gamma(T + 8);
  for (let s = 0; s < T; s++) {
    for (let h = 0; h < Hkv; h++) {
      const o = (s * Hkv + h) * K;
      let p = 0;
      const add = (a: number, b: number, weight: number) => {
        const [ka, kb, ea, eb] = [k.y[o + a]!, k.y[o + b]!, k.err[o + a]!, k.err[o + b]!];
        const f = weight * ka * kb;
        const df = weight * (Math.abs(ka) * eb + ea * Math.abs(kb) + ea * eb);
        const i = h * P + p++;
        z[i] += f;
        boundZ[i] += df + g * (Math.abs(f) + df);
        for (let c = 0; c < K; c++) {
          const [vc, ec] = [v.y[o + c]!, v.err[o + c]!];
          M[i * K + c] += f * vc;
          boundM[i * K + c] += df * (Math.abs(vc) + ec) + Math.abs(f) * ec + g * (Math.abs(f) + df) * (Math.abs(vc) + ec);
        }
      };
      for (let a = 0; a < K; a++) add(a, a, 1);
      for (let a = 0; a < K; a++) for (let b = a + 1; b < K; b++) add(a, b, Math.SQRT2);
    }
  }
  return { M, z, boundM, boundZ };
}
