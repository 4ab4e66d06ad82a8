import * as tf from '@tensorflow/tfjs';
import { warnOnce } from '../../webgpu/internals.js';
import { registerGradientOnce } from '../../webgpu/runtime.js';
import { selectiveScanReference, type ScanArgs } from './reference.js';
import { selectiveScanChunked } from './chunked.js';
import { HOST_BACKENDS, onHostBackend } from '../../validate.js';

/**
 * tfjs kernel names of the plain-JS scan, the whole op in one kernel each way. The forward's
 * inputs are u, delta `[B, T, E]`, A `[E, N]`, B, C `[B, T, N]`, D, deltaBias `[E]` (zeros when
 * absent), z `[B, T, E]` and h0 `[B, E, N]` (one-element stand-ins when absent, which attrs
 * mark); its outputs are the output `[B, T, E]`, the final state `[B, E, N]` and, saved for the
 * backward, the state entering every chunk `[B, chunks, E, N]`.
 */
export const HOST_SCAN = 'MixersSelectiveScanHost';
/** The backward kernel of {@link HOST_SCAN}: the forward's inputs and saved chunk states, dOut and dState in; a gradient per input out. */
export const HOST_SCAN_GRAD = 'MixersSelectiveScanHostGrad';

/** What the op passes as attrs: the softplus flag and which optional inputs are real. */
interface HostAttrs { deltaSoftplus: boolean; hasZ: boolean; hasInitialState: boolean }

/**
 * Steps per chunk: the backward reruns a chunk forwards from its saved entering state, keeping
 * its L·E·N states and decays, so memory is B·(T/L)·E·N saved plus 2·L·E·N scratch.
 */
const L = 32;

interface Sizes { B: number; T: number; E: number; N: number; chunks: number }

function sizesOf(u: tf.TensorInfo, A: tf.TensorInfo): Sizes {
  const [B, T, E] = u.shape as [number, number, number];
  return { B, T, E, N: A.shape[1]!, chunks: Math.ceil(T / L) };
}

// x − x is 0 for every finite x and NaN for NaN and ±∞; V8 inlines it where Number.isFinite may not be
const finite = (x: number): boolean => x - x === 0;
const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
const sigmoid = (x: number): number => {
  // never exp of a large positive number, and no 1 − (1 − tiny) for a very negative x
  const e = Math.exp(-Math.abs(x));
  return x >= 0 ? 1 / (1 + e) : e / (1 + e);
};

/**
 * Copies the finite part of step row `at` of B or C `[.., N]` into `row` (NaN and ±∞ read as 0,
 * as the reference's finitePart) and returns whether any value was not finite.
 */
function finiteRow(src: Float32Array, at: number, row: Float64Array): boolean {
  let bad = false;
  for (let n = 0; n < row.length; n++) {
    const v = src[at + n]!;
    if (finite(v)) row[n] = v;
    else { row[n] = 0; bad = true; }
  }
  return bad;
}

type HostBackendName = (typeof HOST_BACKENDS)[number];

/** The members of tfjs-cpu and tfjs-wasm 4.22 that read and make float32 tensors, per backend. */
interface HostBackend {
  readSync(dataId: tf.DataId): unknown;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}
const HOST_MEMBERS: Record<HostBackendName, (keyof HostBackend)[]> = {
  cpu: ['readSync', 'makeTensorInfo'],
  wasm: ['makeOutput', 'typedArrayFromHeap'],
};

/**
 * Runs `body` on the float32 values of `inputs` and of fresh zeroed outputs of `shapes`, and
 * returns the outputs. On wasm the arrays are views of the module's heap: every output is
 * allocated before any view is taken, since an allocation may grow (and so detach) the heap.
 */
function onHost(name: HostBackendName, backend: unknown, inputs: tf.TensorInfo[], shapes: number[][],
  body: (ins: Float32Array[], outs: Float32Array[]) => void): tf.TensorInfo[] {
  const b = backend as HostBackend;
  if (name === 'wasm') {
    const infos = shapes.map((shape) => b.makeOutput(shape, 'float32'));
    const outs = infos.map((info) => b.typedArrayFromHeap(info).fill(0));
    body(inputs.map((info) => b.typedArrayFromHeap(info)), outs);
    return infos;
  }
  const outs = shapes.map((shape) => new Float32Array(tf.util.sizeFromShape(shape)));
  body(inputs.map((info) => b.readSync(info.dataId) as Float32Array), outs);
  return outs.map((values, i) => b.makeTensorInfo(shapes[i]!, 'float32', values));
}

/**
 * The whole forward of every batch row in float64, as the reference computes it: the scan on
 * the finite parts of the per-token inputs, then every output and final state that sees a
 * non-finite one made NaN. Writes the output, the final state and the chunks' entering states.
 */
function scanForward(s: Sizes, a: HostAttrs, [u, delta, A, Bm, Cm, D, bias, z, h0]: Float32Array[],
  [out, state, starts]: Float32Array[]): void {
  const { B, T, E, N, chunks } = s;
  const { deltaSoftplus, hasZ, hasInitialState } = a;
  const EN = E * N;
  const h = new Float64Array(EN);
  const bRow = new Float64Array(N);
  const cRow = new Float64Array(N);
  // whether channel e's state has taken in a non-finite value so far
  const seen = new Uint8Array(E);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < EN; i++) h[i] = hasInitialState ? h0![b * EN + i]! : 0;
    seen.fill(0);
    for (let t = 0; t < T; t++) {
      if (t % L === 0) starts!.set(h, (b * chunks + t / L) * EN);
      const rowE = (b * T + t) * E;
      const rowN = (b * T + t) * N;
      const badB = finiteRow(Bm!, rowN, bRow);
      const badC = finiteRow(Cm!, rowN, cRow);
      for (let e = 0; e < E; e++) {
        const uv = u![rowE + e]!;
        const dv = delta![rowE + e]!;
        const uf = finite(uv) ? uv : 0;
        const pre = (finite(dv) ? dv : 0) + bias![e]!;
        const d = deltaSoftplus ? softplus(pre) : pre;
        if (uf !== uv || !finite(dv) || badB) seen[e] = 1;
        const x = d * uf;
        const o = e * N;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const v = Math.exp(d * A![o + n]!) * h[o + n]! + x * bRow[n]!;
          h[o + n] = v;
          acc += v * cRow[n]!;
        }
        let y = acc + D![e]! * uf;
        let badZ = false;
        if (hasZ) {
          const zv = z![rowE + e]!;
          badZ = !finite(zv);
          const zf = badZ ? 0 : zv;
          y *= zf * sigmoid(zf);
        }
        out![rowE + e] = seen[e] || badC || badZ ? NaN : y;
      }
    }
    for (let e = 0; e < E; e++) {
      for (let n = 0; n < N; n++) state![b * EN + e * N + n] = seen[e] ? NaN : h[e * N + n]!;
    }
  }
}

/**
 * The reverse-time adjoint of {@link scanForward}, chunk by chunk from the last: each chunk is
 * rerun forwards from its saved entering state (keeping every step's Δ, state and decay), then
 * the adjoint g of the state runs backwards through it. A non-finite input's own gradient is 0
 * (the reference's finitePart selects it out); every other gradient is that of the finite scan.
 */
function scanBackward(s: Sizes, a: HostAttrs, [u, delta, A, Bm, Cm, D, bias, z, starts, dOut, dState]: Float32Array[],
  [du, dDelta, dA, dB, dC, dD, dBias, dz, dh0]: Float32Array[]): void {
  const { B, T, E, N, chunks } = s;
  const { deltaSoftplus, hasZ, hasInitialState } = a;
  const EN = E * N;
  const g = new Float64Array(EN);
  const dAsum = new Float64Array(EN);
  const dDsum = new Float64Array(E);
  const dBiasSum = new Float64Array(E);
  // hs[k] is the state before step t0 + k (hs[0] the entering one); decay[k] and dts[k] are that step's exp(Δ·A) and Δ
  const hs = new Float64Array((L + 1) * EN);
  const decay = new Float64Array(L * EN);
  const dts = new Float64Array(L * E);
  const bRow = new Float64Array(N);
  const cRow = new Float64Array(N);
  const dBrow = new Float64Array(N);
  const dCrow = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < EN; i++) g[i] = dState![b * EN + i]!;
    for (let c = chunks - 1; c >= 0; c--) {
      const t0 = c * L;
      const t1 = Math.min(T, t0 + L);
      for (let i = 0; i < EN; i++) hs[i] = starts![(b * chunks + c) * EN + i]!;
      for (let t = t0; t < t1; t++) {
        const rowE = (b * T + t) * E;
        finiteRow(Bm!, (b * T + t) * N, bRow);
        const k = t - t0;
        for (let e = 0; e < E; e++) {
          const uv = u![rowE + e]!;
          const dv = delta![rowE + e]!;
          const pre = (finite(dv) ? dv : 0) + bias![e]!;
          const d = deltaSoftplus ? softplus(pre) : pre;
          dts[k * E + e] = d;
          const x = d * (finite(uv) ? uv : 0);
          const o = k * EN + e * N;
          for (let n = 0; n < N; n++) {
            const decayed = Math.exp(d * A![e * N + n]!);
            decay[o + n] = decayed;
            hs[o + EN + n] = decayed * hs[o + n]! + x * bRow[n]!;
          }
        }
      }
      for (let t = t1 - 1; t >= t0; t--) {
        const rowE = (b * T + t) * E;
        const rowN = (b * T + t) * N;
        const k = t - t0;
        finiteRow(Bm!, rowN, bRow);
        finiteRow(Cm!, rowN, cRow);
        dBrow.fill(0);
        dCrow.fill(0);
        for (let e = 0; e < E; e++) {
          const uv = u![rowE + e]!;
          const dv = delta![rowE + e]!;
          const uf = finite(uv) ? uv : 0;
          const d = dts[k * E + e]!;
          const x = d * uf;
          const dy = dOut![rowE + e]!;
          // the gate: gy is the gradient of the scan's y = h·C
          let zf = 0;
          let sig = 0;
          let gy = dy;
          if (hasZ) {
            const zv = z![rowE + e]!;
            zf = finite(zv) ? zv : 0;
            sig = sigmoid(zf);
            gy = dy * zf * sig;
          }
          const o = k * EN + e * N;
          let y = 0;
          let sumGB = 0;
          let sumDecay = 0;
          for (let n = 0; n < N; n++) {
            const i = e * N + n;
            const hNow = hs[o + EN + n]!;
            const gn = g[i]! + gy * cRow[n]!;
            y += hNow * cRow[n]!;
            dCrow[n] += gy * hNow;
            dBrow[n] += gn * x;
            sumGB += gn * bRow[n]!;
            const ga = gn * decay[o + n]!;
            const q = ga * hs[o + n]!;
            sumDecay += q * A![i]!;
            dAsum[i] += q * d;
            g[i] = ga;
          }
          const skip = D![e]!;
          if (uf === uv) du![rowE + e] = sumGB * d + skip * gy;
          dDsum[e] += gy * uf;
          if (hasZ && finite(z![rowE + e]!)) dz![rowE + e] = dy * (y + skip * uf) * sig * (1 + zf * (1 - sig));
          const dPre = (sumGB * uf + sumDecay) * (deltaSoftplus ? sigmoid((finite(dv) ? dv : 0) + bias![e]!) : 1);
          if (finite(dv)) dDelta![rowE + e] = dPre;
          dBiasSum[e] += dPre;
        }
        for (let n = 0; n < N; n++) {
          if (finite(Bm![rowN + n]!)) dB![rowN + n] = dBrow[n]!;
          if (finite(Cm![rowN + n]!)) dC![rowN + n] = dCrow[n]!;
        }
      }
    }
    if (hasInitialState) dh0!.set(g, b * EN);
  }
  dA!.set(dAsum);
  dD!.set(dDsum);
  dBias!.set(dBiasSum);
}

/**
 * The forward kernel's inputs, in the order its body reads them; the backward reads the same
 * with the chunks' entering states in place of h0, and returns a gradient for each.
 */
const INPUTS = ['u', 'delta', 'A', 'B', 'C', 'D', 'deltaBias', 'z', 'h0'] as const;

/**
 * Registers a kernel unless one is registered under its name and backend (the library's ESM and
 * CJS builds loaded together register it once). Not the runtime's registerKernelOnce, whose
 * clean-up after a throw is for webgpu backends.
 */
function registerOnce(config: tf.KernelConfig): void {
  if (!tf.getKernel(config.kernelName, config.backendName)) tf.registerKernel(config);
}

// registered for the backends whose tensors are host memory
for (const backendName of HOST_BACKENDS) {
  registerOnce({
    kernelName: HOST_SCAN,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const x = inputs as Record<string, tf.TensorInfo>;
      const s = sizesOf(x.u!, x.A!);
      return onHost(backendName, backend, INPUTS.map((name) => x[name]!),
        [[s.B, s.T, s.E], [s.B, s.E, s.N], [s.B, s.chunks, s.E, s.N]],
        (ins, outs) => scanForward(s, attrs as unknown as HostAttrs, ins, outs));
    },
  });
  registerOnce({
    kernelName: HOST_SCAN_GRAD,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const x = inputs as Record<string, tf.TensorInfo>;
      const s = sizesOf(x.u!, x.A!);
      return onHost(backendName, backend, [...INPUTS.slice(0, -1), 'starts', 'dOut', 'dState'].map((name) => x[name]!),
        INPUTS.map((name) => x[name]!.shape),
        (ins, outs) => scanBackward(s, attrs as unknown as HostAttrs, ins, outs));
    },
  });
}

registerGradientOnce({
  kernelName: HOST_SCAN,
  inputsToSave: [...INPUTS],
  outputsToSave: [false, false, true],
  gradFunc: (dys, saved, attrs) => {
    const [dOut, dState] = dys as tf.Tensor[];
    const names = [...INPUTS, 'starts'];
    const inputs: tf.NamedTensorMap = Object.fromEntries(names.map((name, i) => [name, saved[i]!]));
    const grads = tf.engine().runKernel(HOST_SCAN_GRAD, { ...inputs, dOut: dOut!, dState: dState! }, attrs) as tf.Tensor[];
    return Object.fromEntries(INPUTS.map((name, i) => [name, () => grads[i]!]));
  },
});

/**
 * Whether the active backend runs {@link selectiveScanFast}'s plain-JS kernels: cpu or wasm,
 * with the members they use (another tfjs version may lack them; then, once, a warning).
 */
export function hasHostScan(): boolean {
  if (!onHostBackend()) return false;
  const name = tf.getBackend() as HostBackendName;
  const backend = tf.backend() as unknown as Record<string, unknown>;
  const missing = HOST_MEMBERS[name].find((member) => typeof backend[member] !== 'function');
  if (missing === undefined) return true;
  warnOnce(`tfjs-mixers: ${name} internals missing`, `selectiveScan: the active '${name}' backend has no ${missing}(), ` +
    `which tfjs-mixers' plain-JS scan uses (written for @tensorflow/tfjs 4.22); running the tfjs-ops reference instead.`);
  return false;
}

/**
 * The selective scan off WebGPU. On cpu and wasm, the whole op (softplus, scan, skip, gate and
 * the reference's treatment of non-finite inputs) as two plain-JS tfjs kernels, forward and
 * backward, each one pass over T·E·N in float64; on webgl the chunked scan in tfjs ops
 * ({@link selectiveScanChunked}); elsewhere (tfjs-node) the per-step reference. Shapes and
 * semantics as the reference.
 *
 * @returns the output `[B, T, E]` and the final state `[B, E, N]`.
 *
 * @example
 * ```ts
 * const [b, t, e, n] = [1, 1024, 64, 16];
 * const A = tf.neg(tf.tile(tf.range(1, n + 1).reshape([1, n]), [e, 1])) as tf.Tensor2D;
 * const { output, state } = selectiveScanFast({ u: tf.randomNormal([b, t, e]), delta: tf.randomNormal([b, t, e]),
 *   A, B: tf.randomNormal([b, t, n]), C: tf.randomNormal([b, t, n]), deltaSoftplus: true });   // [1, 1024, 64], [1, 64, 16]
 * ```
 */
export function selectiveScanFast(args: ScanArgs): { output: tf.Tensor3D; state: tf.Tensor3D } {
  if (!hasHostScan()) {
    // webgl launches per op what the loop does per step: the chunked scan's 8 + log T launches
    // measured 1.3–3× faster on SwiftShader. On the CPU backends measured (cpu, wasm) its doubled
    // arithmetic cost more than the launches it saves, so tfjs-node keeps the per-step loop.
    return tf.getBackend() === 'webgl' ? selectiveScanChunked(args) : selectiveScanReference(args);
  }
  return tf.tidy(() => {
    const E = args.u.shape[2];
    const attrs: HostAttrs = { deltaSoftplus: args.deltaSoftplus, hasZ: !!args.z, hasInitialState: !!args.initialState };
    // D and deltaBias default to zeros, which drop their terms; an absent z or h0 is a stand-in never read
    const inputs: tf.NamedTensorMap = {
      u: args.u, delta: args.delta, A: args.A, B: args.B, C: args.C, D: args.D ?? tf.zeros([E]), deltaBias: args.deltaBias ?? tf.zeros([E]),
      z: args.z ?? tf.zeros([1]), h0: args.initialState ?? tf.zeros([1]),
    };
    const [output, state] = tf.engine().runKernel(HOST_SCAN, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return { output: output as tf.Tensor3D, state: state as tf.Tensor3D };
  });
}
