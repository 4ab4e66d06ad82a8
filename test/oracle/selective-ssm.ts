// float64 oracle for the selective scan of SelectiveSSM (MIXERS.md §6), written from the
// recurrence, not from the kernels: one sequential loop over t per (b, e, n), no chunks, no
// associative scan, no tfjs. The gradient is the reverse-time adjoint of that same loop, taken
// term by term from the chain rule, so it is an independent check of backward kernels.
//
// Layout is channels-last and row-major: u, delta, z and out are [B, T, E]; Bm, Cm are
// [B, T, N]; A is [E, N]; D and deltaBias are [E]; initialState and state are [B, E, N].

/** Sizes of one scan: sequences `[B, T, E]`, state size N. */
export interface ScanDims { B: number; T: number; E: number; N: number }

/**
 * Inputs of one scan. `u`, `delta`, `z`: `[B, T, E]`; `A`: `[E, N]`; `Bm`, `Cm`: `[B, T, N]`;
 * `D`, `deltaBias`: `[E]`; `initialState`: `[B, E, N]`. Absent optional inputs drop their term
 * (no skip, no gate, no bias, zero initial state); `deltaSoftplus` defaults to true.
 */
export interface ScanInputs {
  u: ArrayLike<number>; delta: ArrayLike<number>; A: ArrayLike<number>; Bm: ArrayLike<number>; Cm: ArrayLike<number>;
  D?: ArrayLike<number>; z?: ArrayLike<number>; deltaBias?: ArrayLike<number>; initialState?: ArrayLike<number>;
  deltaSoftplus?: boolean;
}

/** Gradients of the loss with respect to each input that was given, same shapes as the inputs. */
export type ScanGrads = {
  u: Float64Array; delta: Float64Array; A: Float64Array; Bm: Float64Array; Cm: Float64Array;
  D?: Float64Array; z?: Float64Array; deltaBias?: Float64Array; initialState?: Float64Array;
};

// ---------------------------------------------------------------------------------------------
// scalar helpers, stable for any finite argument

/** log(1 + eˣ) without overflow: for x = 800 the naive form gives Infinity. */
function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/** 1 / (1 + e⁻ˣ), never exp of a large positive number. */
function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

const silu = (x: number) => x * sigmoid(x);

/** d silu / dx = σ(x)·(1 + x·(1 − σ(x))). */
function siluGrad(x: number): number {
  const s = sigmoid(x);
  return s * (1 + x * (1 - s));
}

// ---------------------------------------------------------------------------------------------
// shared plumbing

function check(x: ScanInputs, dims: ScanDims, extra: [string, ArrayLike<number> | undefined, number][] = []): void {
  for (const [name, n] of Object.entries(dims)) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`selective scan oracle: ${name} must be an integer ≥ 0, got ${n}`);
  }
  const { B, T, E, N } = dims;
  const expected: [string, ArrayLike<number> | undefined, number][] = [
    ['u', x.u, B * T * E], ['delta', x.delta, B * T * E], ['A', x.A, E * N],
    ['Bm', x.Bm, B * T * N], ['Cm', x.Cm, B * T * N], ['D', x.D, E], ['z', x.z, B * T * E],
    ['deltaBias', x.deltaBias, E], ['initialState', x.initialState, B * E * N], ...extra,
  ];
  for (const [name, a, n] of expected) {
    if (a !== undefined && a.length !== n) {
      throw new Error(`selective scan oracle: ${name} has ${a.length} values, expected ${n} for ${JSON.stringify(dims)}`);
    }
  }
}

/** Everything the backward pass reads back from the forward one. */
type Trace = {
  /** Δ `[B, T, E]`, after bias and softplus */
  dt: Float64Array;
  /** dΔ/d(delta) `[B, T, E]`: σ(delta + bias) with softplus, else 1 */
  dtGrad: Float64Array;
  /** h `[B, T, E, N]`, the state after every step */
  h: Float64Array;
  /** y `[B, T, E]`, before the gate */
  y: Float64Array;
};

function forward(x: ScanInputs, dims: ScanDims): Trace {
  const { B, T, E, N } = dims;
  const softplusOn = x.deltaSoftplus ?? true;
  const dt = new Float64Array(B * T * E);
  const dtGrad = new Float64Array(B * T * E);
  const h = new Float64Array(B * T * E * N);
  const y = new Float64Array(B * T * E);
  for (let b = 0; b < B; b++) {
    for (let e = 0; e < E; e++) {
      for (let t = 0; t < T; t++) {
        const i = (b * T + t) * E + e;
        const pre = x.delta[i]! + (x.deltaBias?.[e] ?? 0);
        dt[i] = softplusOn ? softplus(pre) : pre;
        dtGrad[i] = softplusOn ? sigmoid(pre) : 1;
        const u = x.u[i]!;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const hPrev = t > 0 ? h[i * N - E * N + n]! : (x.initialState?.[(b * E + e) * N + n] ?? 0);
          const a = Math.exp(dt[i]! * x.A[e * N + n]!);
          const hNow = a * hPrev + dt[i]! * u * x.Bm[(b * T + t) * N + n]!;
          h[i * N + n] = hNow;
          acc += hNow * x.Cm[(b * T + t) * N + n]!;
        }
        y[i] = acc + (x.D ? x.D[e]! * u : 0);
      }
    }
  }
  return { dt, dtGrad, h, y };
}

/** state `[B, E, N]` = h at t = T − 1 (the initial state, or 0, when T = 0). */
function finalState(x: ScanInputs, dims: ScanDims, h: Float64Array): Float64Array {
  const { B, T, E, N } = dims;
  const state = new Float64Array(B * E * N);
  for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) for (let n = 0; n < N; n++) {
    const s = (b * E + e) * N + n;
    state[s] = T > 0 ? h[((b * T + T - 1) * E + e) * N + n]! : (x.initialState?.[s] ?? 0);
  }
  return state;
}

// ---------------------------------------------------------------------------------------------
// the oracles

/**
 * The selective scan in float64: `out` `[B, T, E]` (gated by silu(z) when z is given) and the
 * final state `[B, E, N]`.
 *
 * @example
 * const dims = { B: 1, T: 2, E: 1, N: 1 };
 * const { out, state } = selectiveScanOracle(
 *   { u: [1, 3], delta: [1, 2], A: [-Math.LN2], Bm: [2, 1], Cm: [3, -1], deltaSoftplus: false }, dims);
 */
export function selectiveScanOracle(x: ScanInputs, dims: ScanDims): { out: Float64Array; state: Float64Array } {
  check(x, dims);
  const { y, h } = forward(x, dims);
  const out = x.z ? y.map((v, i) => v * silu(x.z![i]!)) : y;
  return { out, state: finalState(x, dims, h) };
}

/**
 * Gradients of L = Σ dOut·out + Σ dState·state with respect to every input that was given;
 * absent optional inputs are absent from the result. `dOut` is `[B, T, E]`, `dState` `[B, E, N]`.
 *
 * @example
 * const g = selectiveScanGradOracle(inputs, dims, dOut, dState);
 * g.A;          // [E, N], summed over batch and time
 * g.deltaBias;  // undefined unless inputs.deltaBias was given
 */
export function selectiveScanGradOracle(
  x: ScanInputs, dims: ScanDims, dOut: ArrayLike<number>, dState?: ArrayLike<number>,
): ScanGrads {
  const { B, T, E, N } = dims;
  check(x, dims, [['dOut', dOut, B * T * E], ['dState', dState, B * E * N]]);
  const { dt, dtGrad, h, y } = forward(x, dims);

  const g: ScanGrads = {
    u: new Float64Array(B * T * E), delta: new Float64Array(B * T * E), A: new Float64Array(E * N),
    Bm: new Float64Array(B * T * N), Cm: new Float64Array(B * T * N),
  };
  if (x.D) g.D = new Float64Array(E);
  if (x.z) g.z = new Float64Array(B * T * E);
  if (x.deltaBias) g.deltaBias = new Float64Array(E);
  if (x.initialState) g.initialState = new Float64Array(B * E * N);

  // carry[n] holds a[t+1]·g[t+1], the part of ∂L/∂h[t] that flows back from step t+1
  const carry = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    for (let e = 0; e < E; e++) {
      for (let n = 0; n < N; n++) carry[n] = dState?.[(b * E + e) * N + n] ?? 0;
      for (let t = T - 1; t >= 0; t--) {
        const i = (b * T + t) * E + e;
        const u = x.u[i]!;
        const d = dt[i]!;
        // out = y·silu(z): dy = dOut·silu(z), dz = dOut·y·silu'(z)
        const dy = x.z ? dOut[i]! * silu(x.z[i]!) : dOut[i]!;
        if (g.z) g.z[i] = dOut[i]! * y[i]! * siluGrad(x.z![i]!);
        if (g.D) g.D[e] += dy * u;
        g.u[i] += x.D ? dy * x.D[e]! : 0;
        let dDt = 0;
        for (let n = 0; n < N; n++) {
          const bn = (b * T + t) * N + n;
          const en = e * N + n;
          const hPrev = t > 0 ? h[i * N - E * N + n]! : (x.initialState?.[(b * E + e) * N + n] ?? 0);
          const a = Math.exp(d * x.A[en]!);
          // ∂L/∂h[t]: through y[t] and through h[t+1]
          const gh = dy * x.Cm[bn]! + carry[n]!;
          g.Cm[bn] += dy * h[i * N + n]!;
          // h[t] = a·h[t−1] + Δ·u·Bm, with a = exp(Δ·A)
          g.Bm[bn] += gh * d * u;
          g.u[i] += gh * d * x.Bm[bn]!;
          const da = gh * hPrev;
          g.A[en] += da * a * d;
          dDt += gh * u * x.Bm[bn]! + da * a * x.A[en]!;
          carry[n] = gh * a;
        }
        g.delta[i] = dDt * dtGrad[i]!;
        if (g.deltaBias) g.deltaBias[e] += g.delta[i]!;
      }
      // after t = 0 the carry is a[0]·g[0] = ∂L/∂h[−1]
      if (g.initialState) for (let n = 0; n < N; n++) g.initialState[(b * E + e) * N + n] = carry[n]!;
    }
  }
  return g;
}
