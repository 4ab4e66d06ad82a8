// float64 oracles for softmax attention (MIXERS.md §4), ExpressiveAttention (§3), the BlockSparse
// mask (§5) and the visibility options of §7 (per batch row), written straight from the MIXERS.md
// equations, not from the kernels: every row is computed on its own over its list of visible keys, no tiles, no tfjs.
//
// Layout is channels-last and row-major: q, o, dO are [B, Tq, H, K]; k, v are [B, Tk, Hkv, K].
// Query head h reads key/value head floor(h·Hkv/H). A row with no visible key outputs 0 and
// sends no gradient anywhere.

/** Sizes of one attention call: q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`, H % Hkv == 0. */
export type AttentionShape = { B: number; Tq: number; Tk: number; H: number; Hkv: number; K: number };

/** Extra mask on top of (or instead of) the causal one: key j visible to query i iff it returns true. */
export type MaskFn = (i: number, j: number) => boolean;

/**
 * The visibility conditions of MIXERS.md §7, per batch row b, and-ed with `causal` and `mask`.
 * Query i of row b sits at p_i = off_b + i, off_b = queryOffsets[b] if given, else Tk − Tq;
 * `causal` then means j ≤ p_i.
 */
export type OracleVisibility = {
  /** j > p_i − w, and j < p_i + w when not causal. */
  window?: number;
  /** j < kvLengths[b]. */
  kvLengths?: readonly number[];
  /** off_b per row. */
  queryOffsets?: readonly number[];
  /** query[b][i] == key[b][j]. */
  segmentIds?: { query: readonly (readonly number[])[]; key: readonly (readonly number[])[] };
  /** Keras's attention mask: visible where it returns true. */
  attentionMask?: (b: number, i: number, j: number) => boolean;
};

/**
 * Attention dropout (MIXERS.md §7): the multiplier of the normalised weight a_ij of query head h,
 * batch row b (0 dropped, 1/(1 − p) kept), applied after the normaliser. Default: 1 everywhere.
 */
export type KeepFn = (b: number, h: number, i: number, j: number) => number;

/** Options of the softmax oracles; `scale` defaults to 1/sqrt(K). */
export type SoftmaxOracleOptions = { causal: boolean; scale?: number; mask?: MaskFn; keep?: KeepFn } & OracleVisibility;

/** Options of the expressive oracles; `scale` defaults to 1/sqrt(K), `epsilon` to 1e-6. */
export type ExpressiveOracleOptions =
  { causal: boolean; scale?: number; epsilon?: number; mask?: MaskFn; keep?: KeepFn } & OracleVisibility;

/** Layout of a block-sparse mask (MIXERS.md §5), in blocks of `blockSize` tokens. */
export type BlockSparseLayout = { T: number; blockSize: number; localBlocks: number; globalBlocks: number; stride: number };

/** Gradients of the loss with respect to q `[B, Tq, H, K]`, k and v `[B, Tk, Hkv, K]`. */
export type AttentionGrads = { dq: Float64Array; dk: Float64Array; dv: Float64Array };

/**
 * The visibility matrix `[Tq, Tk]`, row-major, 1 where key j is visible to query i.
 * Causal is bottom-right aligned: j ≤ i + Tk − Tq. `mask`, when given, is and-ed in, so
 * `causal: false` with a mask gives exactly that mask.
 */
export function visibleMask(Tq: number, Tk: number, causal: boolean, mask?: MaskFn): Uint8Array {
  const m = new Uint8Array(Tq * Tk);
  for (let i = 0; i < Tq; i++) {
    for (let j = 0; j < Tk; j++) {
      const causalOk = !causal || j <= i + Tk - Tq;
      m[i * Tk + j] = causalOk && (mask === undefined || mask(i, j)) ? 1 : 0;
    }
  }
  return m;
}

/**
 * Token mask of a block-sparse layout (MIXERS.md §5, Tq = Tk = T): block (I, J) is active iff
 * J ≤ I and (I − J < w or J < g or (s > 0 and (I − J) mod s == 0)); token j is visible to i iff
 * block (⌊i/b⌋, ⌊j/b⌋) is active and j ≤ i. The last block may be partial.
 */
export function blockSparseMask(layout: BlockSparseLayout): MaskFn {
  const { T, blockSize: b, localBlocks: w, globalBlocks: g, stride: s } = layout;
  for (const [name, n] of Object.entries(layout)) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`blockSparseMask: ${name} must be an integer ≥ 0, got ${n}`);
  }
  if (b < 1) throw new Error(`blockSparseMask: blockSize must be ≥ 1, got ${b}`);
  return (i, j) => {
    if (i < 0 || j < 0 || i >= T || j >= T) throw new Error(`blockSparseMask: (${i}, ${j}) outside T = ${T}`);
    const I = Math.floor(i / b);
    const J = Math.floor(j / b);
    const active = J <= I && (I - J < w || J < g || (s > 0 && (I - J) % s === 0));
    return active && j <= i;
  };
}

/**
 * The visibility `[B, Tq, Tk]`, row-major, 1 where key j is visible to query i of batch row b:
 * every condition of `opts` (MIXERS.md §7), the causal one included, and `opts.mask`.
 */
export function visibleMaskPerRow(shape: AttentionShape, opts: { causal: boolean; mask?: MaskFn } & OracleVisibility): Uint8Array {
  const { B, Tq, Tk } = shape;
  const m = new Uint8Array(B * Tq * Tk);
  for (let b = 0; b < B; b++) {
    const off = opts.queryOffsets ? opts.queryOffsets[b]! : Tk - Tq;
    for (let i = 0; i < Tq; i++) {
      const p = off + i;
      for (let j = 0; j < Tk; j++) {
        let ok = !opts.causal || j <= p;
        if (opts.window !== undefined) ok &&= j > p - opts.window && (opts.causal || j < p + opts.window);
        if (opts.kvLengths) ok &&= j < opts.kvLengths[b]!;
        if (opts.segmentIds) ok &&= opts.segmentIds.query[b]![i] === opts.segmentIds.key[b]![j];
        if (opts.attentionMask) ok &&= opts.attentionMask(b, i, j);
        if (opts.mask) ok &&= opts.mask(i, j);
        m[(b * Tq + i) * Tk + j] = ok ? 1 : 0;
      }
    }
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// shared plumbing

type Ctx = {
  shape: AttentionShape;
  /** `[B, Tq, Tk]`. */
  visible: Uint8Array;
  scale: number;
};

function setup(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, shape: AttentionShape,
  opts: { causal: boolean; scale?: number; mask?: MaskFn } & OracleVisibility,
): Ctx {
  const { B, Tq, Tk, H, Hkv, K } = shape;
  for (const [name, n] of Object.entries(shape)) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`attention oracle: ${name} must be an integer ≥ 0, got ${n}`);
  }
  if (H < 1 || Hkv < 1 || H % Hkv !== 0) throw new Error(`attention oracle: H = ${H} must be a multiple of Hkv = ${Hkv}`);
  if (q.length !== B * Tq * H * K) throw new Error(`attention oracle: q has ${q.length} values, expected ${B * Tq * H * K}`);
  if (k.length !== B * Tk * Hkv * K) throw new Error(`attention oracle: k has ${k.length} values, expected ${B * Tk * Hkv * K}`);
  if (v.length !== B * Tk * Hkv * K) throw new Error(`attention oracle: v has ${v.length} values, expected ${B * Tk * Hkv * K}`);
  return { shape, visible: visibleMaskPerRow(shape, opts), scale: opts.scale ?? 1 / Math.sqrt(K) };
}

// flat offsets of element 0 of a head vector
const qAt = (s: AttentionShape, b: number, i: number, h: number) => ((b * s.Tq + i) * s.H + h) * s.K;
const kvAt = (s: AttentionShape, b: number, j: number, g: number) => ((b * s.Tk + j) * s.Hkv + g) * s.K;
const rowAt = (s: AttentionShape, b: number, h: number, i: number) => (b * s.H + h) * s.Tq + i;
const kvHead = (s: AttentionShape, h: number) => Math.floor((h * s.Hkv) / s.H);

function dot(x: ArrayLike<number>, xo: number, y: ArrayLike<number>, yo: number, n: number): number {
  let acc = 0;
  for (let d = 0; d < n; d++) acc += x[xo + d]! * y[yo + d]!;
  return acc;
}

/** Visible key indices and their scores s_j = scale·q_i·k_j for one (b, h, i) row. */
function rowScores(
  c: Ctx, q: ArrayLike<number>, k: ArrayLike<number>, b: number, h: number, i: number,
): { keys: number[]; s: number[] } {
  const { shape } = c;
  const g = kvHead(shape, h);
  const keys: number[] = [];
  const s: number[] = [];
  for (let j = 0; j < shape.Tk; j++) {
    if (c.visible[(b * shape.Tq + i) * shape.Tk + j] === 0) continue;
    keys.push(j);
    s.push(c.scale * dot(q, qAt(shape, b, i, h), k, kvAt(shape, b, j, g), shape.K));
  }
  return { keys, s };
}

/** Calls fn for every (b, h, i) row. */
function forEachRow(s: AttentionShape, fn: (b: number, h: number, i: number) => void): void {
  for (let b = 0; b < s.B; b++) for (let h = 0; h < s.H; h++) for (let i = 0; i < s.Tq; i++) fn(b, h, i);
}

/** Row weights p_j and output o_i = Σ p_j v_j into `o` at `oOff`. */
function mixRow(
  c: Ctx, v: ArrayLike<number>, b: number, h: number, keys: number[], p: number[], o: Float64Array, oOff: number,
): void {
  const { shape } = c;
  const g = kvHead(shape, h);
  for (let n = 0; n < keys.length; n++) {
    const vo = kvAt(shape, b, keys[n]!, g);
    for (let d = 0; d < shape.K; d++) o[oOff + d] += p[n]! * v[vo + d]!;
  }
}

/**
 * Scatters a row's score gradient dS_j (= ∂L/∂s_ij) into dq and dk via s = scale·q·k, and the
 * row's weight-times-dO terms into dv: dv_j += w_j·dO_i.
 */
function scatterRow(
  c: Ctx, q: ArrayLike<number>, k: ArrayLike<number>, dO: ArrayLike<number>,
  b: number, h: number, i: number, keys: number[], dS: number[], w: number[], grads: AttentionGrads,
): void {
  const { shape, scale } = c;
  const g = kvHead(shape, h);
  const qo = qAt(shape, b, i, h);
  for (let n = 0; n < keys.length; n++) {
    const ko = kvAt(shape, b, keys[n]!, g);
    for (let d = 0; d < shape.K; d++) {
      grads.dq[qo + d] += scale * dS[n]! * k[ko + d]!;
      // gqa: every query head of the group adds into the one shared kv head
      grads.dk[ko + d] += scale * dS[n]! * q[qo + d]!;
      grads.dv[ko + d] += w[n]! * dO[qo + d]!;
    }
  }
}

function zeroGrads(s: AttentionShape): AttentionGrads {
  return {
    dq: new Float64Array(s.B * s.Tq * s.H * s.K),
    dk: new Float64Array(s.B * s.Tk * s.Hkv * s.K),
    dv: new Float64Array(s.B * s.Tk * s.Hkv * s.K),
  };
}

// ---------------------------------------------------------------------------------------------
// softmax attention (§4, and §5 through a mask)

/** The dropout multipliers m_j of one row's visible keys (1 without `keep`). */
function multipliers(keep: KeepFn | undefined, b: number, h: number, i: number, keys: number[]): number[] {
  return keys.map((j) => (keep ? keep(b, h, i, j) : 1));
}

/** Max-subtracted softmax of one row, and its log-sum-exp; -Infinity for an empty row. */
function softmaxRow(s: number[]): { p: number[]; lse: number } {
  if (s.length === 0) return { p: [], lse: -Infinity };
  const m = Math.max(...s);
  const e = s.map((x) => Math.exp(x - m));
  const l = e.reduce((a, x) => a + x, 0);
  return { p: e.map((x) => x / l), lse: m + Math.log(l) };
}

/**
 * Exact masked softmax attention, o_i = Σ_{j∈M(i)} softmax_j(scale·q_i·k_j)·v_j.
 * @param q `[B, Tq, H, K]`
 * @param k `[B, Tk, Hkv, K]`
 * @param v `[B, Tk, Hkv, K]`
 * @returns o `[B, Tq, H, K]` (0 on empty rows) and lse `[B, H, Tq]` (-Infinity on empty rows).
 */
export function softmaxAttentionOracle(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, shape: AttentionShape, opts: SoftmaxOracleOptions,
): { o: Float64Array; lse: Float64Array } {
  const c = setup(q, k, v, shape, opts);
  const o = new Float64Array(shape.B * shape.Tq * shape.H * shape.K);
  const lse = new Float64Array(shape.B * shape.H * shape.Tq);
  forEachRow(shape, (b, h, i) => {
    const { keys, s } = rowScores(c, q, k, b, h, i);
    const r = softmaxRow(s);
    lse[rowAt(shape, b, h, i)] = r.lse;
    const m = multipliers(opts.keep, b, h, i, keys);
    mixRow(c, v, b, h, keys, r.p.map((x, n) => x * m[n]!), o, qAt(shape, b, i, h));
  });
  return { o, lse };
}

/**
 * Gradients of L = Σ dO∘o for softmax attention, from the closed form:
 * P = softmax(S), dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − rowsum(dO∘O)), dQ = scale·dS·K,
 * dK = scale·dSᵀ·Q; dK and dV summed over the query heads sharing a kv head. With `keep`
 * (o_i = Σ_j P_ij·m_ij·v_j): ∂L/∂P_ij = m_ij·dP_ij, so dV = (P∘m)ᵀ·dO and, through the
 * softmax's Jacobian, dS_ij = P_ij·(m_ij·dP_ij − Σ_l P_il·m_il·dP_il).
 * @param dO `[B, Tq, H, K]`; the other arguments as {@link softmaxAttentionOracle}.
 * @returns dq `[B, Tq, H, K]`, dk and dv `[B, Tk, Hkv, K]`.
 */
export function softmaxAttentionGradOracle(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dO: ArrayLike<number>,
  shape: AttentionShape, opts: SoftmaxOracleOptions,
): AttentionGrads {
  const c = setup(q, k, v, shape, opts);
  if (dO.length !== q.length) throw new Error(`attention oracle: dO has ${dO.length} values, expected ${q.length}`);
  const grads = zeroGrads(shape);
  forEachRow(shape, (b, h, i) => {
    const { keys, s } = rowScores(c, q, k, b, h, i);
    if (keys.length === 0) return; // empty row: o is the constant 0, no gradient
    const { p } = softmaxRow(s);
    const m = multipliers(opts.keep, b, h, i, keys);
    const qo = qAt(shape, b, i, h);
    const g = kvHead(shape, h);
    // dL/dP_j = m_j·dO_i·v_j, and the softmax's Jacobian: dS_j = P_j·(dL/dP_j − Σ_l P_l·dL/dP_l)
    const dP = keys.map((j, n) => m[n]! * dot(dO, qo, v, kvAt(shape, b, j, g), shape.K));
    const D = dP.reduce((a, x, n) => a + p[n]! * x, 0);
    const dS = dP.map((x, n) => p[n]! * (x - D));
    scatterRow(c, q, k, dO, b, h, i, keys, dS, p.map((x, n) => x * m[n]!), grads);
  });
  return grads;
}

// ---------------------------------------------------------------------------------------------
// expressive attention (§3)

/**
 * ExpressiveAttention: s_ij = scale·q_i·k_j, a_ij = s_ij² / (ε + Σ_{l∈M(i)} s_il²),
 * o_i = Σ_{j∈M(i)} a_ij·v_j. ε must be > 0 for a visible row whose scores are all 0 to be defined.
 * @param q `[B, Tq, H, K]`
 * @param k `[B, Tk, Hkv, K]`
 * @param v `[B, Tk, Hkv, K]`
 * @returns o `[B, Tq, H, K]` (0 on empty rows) and z `[B, H, Tq]` = Σ_{l∈M(i)} s_il²,
 *   without ε (0 on empty rows).
 */
export function expressiveAttentionOracle(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, shape: AttentionShape, opts: ExpressiveOracleOptions,
): { o: Float64Array; z: Float64Array } {
  const c = setup(q, k, v, shape, opts);
  const eps = opts.epsilon ?? 1e-6;
  if (!(eps >= 0)) throw new Error(`expressive oracle: epsilon must be ≥ 0, got ${eps}`);
  const o = new Float64Array(shape.B * shape.Tq * shape.H * shape.K);
  const z = new Float64Array(shape.B * shape.H * shape.Tq);
  forEachRow(shape, (b, h, i) => {
    const { keys, s } = rowScores(c, q, k, b, h, i);
    if (keys.length === 0) return; // empty row: o and z stay 0
    const sq = s.map((x) => x * x);
    const zi = sq.reduce((a, x) => a + x, 0);
    z[rowAt(shape, b, h, i)] = zi;
    const m = multipliers(opts.keep, b, h, i, keys);
    mixRow(c, v, b, h, keys, sq.map((x, n) => (x / (eps + zi)) * m[n]!), o, qAt(shape, b, i, h));
  });
  return { o, z };
}

/**
 * Gradients of L = Σ dO∘o for ExpressiveAttention, by the chain rule through the numerator and
 * denominator of o_i = N_i / Z_i, with N_i = Σ_j s_ij²·v_j and Z_i = ε + Σ_l s_il²:
 * ∂L/∂N_i = dO_i / Z_i, ∂L/∂Z_i = −dO_i·N_i / Z_i², ∂L/∂s_ij = 2·s_ij·(∂L/∂N_i·v_j + ∂L/∂Z_i),
 * ∂L/∂v_j = Σ_i s_ij²·∂L/∂N_i; then s = scale·q·k gives dq and dk. With `keep`, the numerator
 * is N_i = Σ_j s_ij²·m_ij·v_j (Z unchanged), so m_ij multiplies ∂L/∂N_i·v_j and s_ij² above.
 * dK and dV are summed over the query heads sharing a kv head.
 * @param dO `[B, Tq, H, K]`; the other arguments as {@link expressiveAttentionOracle}.
 * @returns dq `[B, Tq, H, K]`, dk and dv `[B, Tk, Hkv, K]`.
 */
export function expressiveAttentionGradOracle(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dO: ArrayLike<number>,
  shape: AttentionShape, opts: ExpressiveOracleOptions,
): AttentionGrads {
  const c = setup(q, k, v, shape, opts);
  if (dO.length !== q.length) throw new Error(`attention oracle: dO has ${dO.length} values, expected ${q.length}`);
  const eps = opts.epsilon ?? 1e-6;
  if (!(eps >= 0)) throw new Error(`expressive oracle: epsilon must be ≥ 0, got ${eps}`);
  const grads = zeroGrads(shape);
  const nRow = new Float64Array(shape.K);
  forEachRow(shape, (b, h, i) => {
    const { keys, s } = rowScores(c, q, k, b, h, i);
    if (keys.length === 0) return; // empty row: o is the constant 0, no gradient
    const sq = s.map((x) => x * x);
    const Z = eps + sq.reduce((a, x) => a + x, 0);
    const m = multipliers(opts.keep, b, h, i, keys);
    const kept = sq.map((x, n) => x * m[n]!);
    nRow.fill(0);
    mixRow(c, v, b, h, keys, kept, nRow, 0);
    const qo = qAt(shape, b, i, h);
    const g = kvHead(shape, h);
    // dL/dN_i = dO_i / Z and dL/dZ_i = −dO_i·N_i / Z²; dO_i·v_j / Z below is dL/dN_i·v_j
    const dZ = -dot(dO, qo, nRow, 0, shape.K) / (Z * Z);
    const dS = keys.map((j, n) => 2 * s[n]! * ((m[n]! * dot(dO, qo, v, kvAt(shape, b, j, g), shape.K)) / Z + dZ));
    // dL/dv_j = s_ij²·m_ij·dO_i / Z
    scatterRow(c, q, k, dO, b, h, i, keys, dS, kept.map((x) => x / Z), grads);
  });
  return grads;
}
