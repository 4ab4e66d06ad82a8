import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
// in Node the wasm backend loads its .wasm binary from node_modules by itself
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { HOW_TO_GET_AN_ADAPTER, type InstalledWebGPU } from '../src/node.js';
import { registerSubgroupBackend } from '../src/index.js';
import { SCAN_FLAG } from '../src/webgpu/scan.js';
import type { BackendInternals } from '../src/webgpu/internals.js';
import { mulberry32 } from '../examples/shared/random.js';

export { mulberry32 };

// tfjs-webgpu would otherwise run small tensors on its CPU kernels, hiding shader bugs
tf.env().set('WEBGPU_CPU_FORWARD', false);

/** The adapter test/setup/webgpu.ts installed, or null. */
export function webgpuAdapter(): InstalledWebGPU | null {
  return (globalThis as { __mixersWebGPU?: InstalledWebGPU | null }).__mixersWebGPU ?? null;
}

/** The backends the tests run on: the two reference-only ones, and webgpu (kernels and reference). */
export type TestBackend = 'cpu' | 'wasm' | 'webgpu';

/** The backends that run only the reference path, where reference properties are checked. */
export const REFERENCE_BACKENDS = ['cpu', 'wasm'] as const;

/**
 * A describe block that runs on the given backend. Without a WebGPU adapter, webgpu blocks
 * fail under CI=true (kernel tests must never silently skip there) and are skipped, with the
 * reason, elsewhere.
 */
export function describeOn(backend: TestBackend, name: string, body: () => void): void {
  describeWith(backend, name, body, async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    await tf.ready();
  });
}

/** `run` with the scan family's untaped forwards as `scan` ({@link SCAN_FLAG}), then 'auto' again. */
export async function underScan<T>(scan: 'chunks' | 'walk', run: () => Promise<T>): Promise<T> {
  tf.env().set(SCAN_FLAG, scan);
  try {
    return await run();
  } finally {
    tf.env().set(SCAN_FLAG, 'auto');
  }
}

/**
 * {@link describeOn} for tests of the scan mixers' untaped calls: on webgpu the block runs twice,
 * its forwards where no gradient is recorded as the chunks' parallel passes (a GPU's) and as the
 * walk (SwiftShader's by default), named so; elsewhere once. `body` gets the scan it runs (null
 * off webgpu).
 */
export function describeScans(backend: TestBackend, name: string, body: (scan: 'chunks' | 'walk' | null) => void): void {
  for (const scan of backend === 'webgpu' ? (['chunks', 'walk'] as const) : [null]) {
    describeOn(backend, scan ? `${name} (scan: ${scan})` : name, () => {
      if (scan) {
        beforeAll(() => { tf.env().set(SCAN_FLAG, scan); });
        afterAll(() => { tf.env().set(SCAN_FLAG, 'auto'); });
      }
      body(scan);
    });
  }
}

/**
 * The label of every pipeline that `run` sets in a compute pass, in order: the kernels it
 * launched, without the fills of the poison flag (test/setup/webgpu.ts) before them.
 */
export async function launchedPipelines(run: () => Promise<void>): Promise<string[]> {
  const proto = (globalThis as unknown as { GPUComputePassEncoder: { prototype: GPUComputePassEncoder } }).GPUComputePassEncoder.prototype;
  const setPipeline = proto.setPipeline;
  const labels: string[] = [];
  proto.setPipeline = function (this: GPUComputePassEncoder, p: GPUComputePipeline) {
    if (p.label !== 'PoisonOutput') labels.push(p.label);
    return setPipeline.call(this, p);
  } as GPUComputePassEncoder['setPipeline'];
  try {
    await run();
  } finally {
    proto.setPipeline = setPipeline;
  }
  return labels;
}

/**
 * The commands WebGPU has refused since the last call (test/setup/webgpu.ts collects them, and
 * fails a test during which one arrives), for a test that provokes them on purpose; taken, so
 * that they fail nothing. Waits for the device's submitted work first.
 */
export async function takeRefusedCommands(): Promise<string[]> {
  await (tf.backend() as unknown as BackendInternals).device.queue.onSubmittedWorkDone();
  return ((globalThis as { __mixersRefused?: string[] }).__mixersRefused ?? []).splice(0);
}

/** A decoding layer as {@link stepLaunches} drives it. */
interface SteppingLayer<S extends { positions: tf.Tensor1D }> {
  apply(x: tf.Tensor): unknown;
  initState(batch: number): S;
  step(x: tf.Tensor2D, state: S): [tf.Tensor2D, S];
}

/**
 * How many tensors `run` uploads to the webgpu backend from the CPU (a scalar of tfjs's add, its
 * fill of ones, a gradient of zeros it made), besides those holding the data of `given`, which
 * the caller made on the CPU for it.
 */
export async function uploadsDuring(run: () => Promise<void>, given: tf.Tensor[] = []): Promise<number> {
  const ids = new Set<tf.DataId>(given.map((t) => t.dataId));
  // tfjs-webgpu 4.22 uploads a tensor's CPU values the first time a kernel binds it
  const backend = tf.backend() as unknown as BackendInternals;
  const upload = backend.uploadToGPU;
  let uploads = 0;
  backend.uploadToGPU = function (this: BackendInternals, dataId: object) {
    const data = this.tensorMap.get(dataId);
    // values on the CPU and no buffer yet: a copy up (an output gets a buffer and no values)
    if (data.resource == null && data.values != null && !ids.has(dataId)) uploads++;
    return upload.call(this, dataId);
  };
  try {
    await run();
  } finally {
    backend.uploadToGPU = upload;
  }
  return uploads;
}

/**
 * Runs one decode step, `step()` giving its output and next state, and reads the output back:
 * the pipelines it launched, the tensors it uploaded besides `given`'s ({@link uploadsDuring}),
 * and its next state, which the caller owns. The output is freed.
 */
export async function recordedStep<S>(step: () => [tf.Tensor, S], given: tf.Tensor[] = []): Promise<{ ran: string[]; uploads: number; next: S }> {
  let ran: string[] = [];
  let next: S | undefined;
  const uploads = await uploadsDuring(async () => {
    ran = await launchedPipelines(async () => {
      const [y, state] = step();
      next = state;
      await y.data();
      y.dispose();
    });
  }, given);
  return { ran, uploads, next: next! };
}

/**
 * The pipelines one decode step of `layer` launches (built here for width D, from a fresh state of
 * B rows), the positions of the state it returns, and how many tensors the step made on the CPU
 * and uploaded ({@link recordedStep}: the state's and the token's own uploads are not counted).
 * Frees what it made.
 */
export async function stepLaunches<S extends { positions: tf.Tensor1D }>(
  layer: SteppingLayer<S>, B: number, D: number,
): Promise<{ ran: string[]; positions: number[]; uploads: number }> {
  tf.dispose(layer.apply(tf.zeros([1, 1, D])) as tf.Tensor);
  const state = layer.initState(B);
  const token = tf.randomNormal([B, D]) as tf.Tensor2D;
  try {
    const given = (Object.values(state) as unknown[]).filter((t): t is tf.Tensor => t instanceof tf.Tensor);
    const { ran, uploads, next } = await recordedStep(() => layer.step(token, state), [token, ...given]);
    const positions = Array.from(await next.positions.data());
    tf.dispose(next as unknown as tf.TensorContainer);
    return { ran, positions, uploads };
  } finally {
    tf.dispose([token, state as unknown as tf.TensorContainer]);
  }
}

/**
 * A describe block on the webgpu backend re-made by registerSubgroupBackend, whose device has the
 * adapter's `subgroups`: the kernels' subgroup paths run there. `pipelines` collects the label of
 * every pipeline the block compiles, so that its tests can check that a subgroup kernel ran.
 * tfjs's own webgpu backend comes back after it. An adapter without subgroups fails the block.
 */
export function describeOnSubgroups(name: string, body: (pipelines: string[]) => void): void {
  const pipelines: string[] = [];
  let tfjsFactory: ReturnType<typeof tf.findBackendFactory> | null = null;
  describeWith('webgpu', `${name} (subgroups)`, () => {
    afterAll(async () => {
      tf.removeBackend('webgpu');
      tf.registerBackend('webgpu', tfjsFactory!, 3);
      expect(await tf.setBackend('webgpu')).toBe(true);
    });
    body(pipelines);
  }, async () => {
    tfjsFactory = tf.findBackendFactory('webgpu');
    tf.removeBackend('webgpu');
    expect(await registerSubgroupBackend()).toBe(true);
    expect(await tf.setBackend('webgpu')).toBe(true);
    const device = (tf.backend() as WebGPUBackend).device;
    expect(device.features.has('subgroups')).toBe(true);
    const create = device.createComputePipeline.bind(device);
    device.createComputePipeline = (d) => {
      pipelines.push(d.label ?? '');
      return create(d);
    };
  });
}

function describeWith(backend: TestBackend, name: string, body: () => void, start: () => Promise<void>): void {
  const title = `${name} [${backend}]`;
  if (backend === 'webgpu' && !webgpuAdapter()) {
    if (process.env.CI === 'true') {
      describe(title, () => {
        it('needs a WebGPU adapter', () => { throw new Error(HOW_TO_GET_AN_ADAPTER); });
      });
    } else {
      describe.skip(`${title}: skipped, ${HOW_TO_GET_AN_ADAPTER}`, body);
    }
    return;
  }
  describe(title, () => {
    beforeAll(start);
    body();
  });
}

/** Runs `fn` and asserts that it left no tensor behind. */
export async function expectNoLeaks<T>(fn: () => T | Promise<T>): Promise<T> {
  const before = tf.memory().numTensors;
  const out = await fn();
  expect(tf.memory().numTensors).toBe(before);
  return out;
}

/** float64 copy of a tensor's values. */
export async function values(t: tf.Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.data());
}

/** max |a − b| over two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    // NaN is the maximum: a later finite difference must not hide it
    if (Number.isNaN(d)) return NaN;
    if (d > m) m = d;
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** float32 machine epsilon. */
export const EPS32 = 2 ** -23;

/**
 * The derived tolerance of ARCHITECTURE.md (FlashAttention's rule): a kernel's error against
 * the float64 oracle may be at most twice the float32 reference's error against it, plus a
 * floor of `floorUlps` float32 ulps of the output's scale (default 4: two correctly rounded
 * results can differ by an ulp even where the reference happens to be exact). Where a value
 * is a float32 sum of n terms, any summation order is as valid as the reference's, whose
 * error can be small by luck; such a test passes n (the γ_n bound of the sum) as the floor.
 */
export function expectWithinDerivedTolerance(
  kernel: ArrayLike<number>, reference: ArrayLike<number>, oracle: ArrayLike<number>, what: string, floorUlps = 4,
): void {
  const kernelErr = maxAbsDiff(kernel, oracle);
  const referenceErr = maxAbsDiff(reference, oracle);
  const floor = floorUlps * EPS32 * Math.max(1, maxAbs(oracle));
  expect(kernelErr, `${what}: kernel error ${kernelErr} vs reference error ${referenceErr}`)
    .toBeLessThanOrEqual(2 * referenceErr + floor);
}

/** Central differences of f at x, perturbing each entry of x in place (and restoring it). */
export function finiteDiff(f: () => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let n = 0; n < x.length; n++) {
    const x0 = x[n]!;
    x[n] = x0 + h;
    const up = f();
    x[n] = x0 - h;
    const down = f();
    x[n] = x0;
    g[n] = (up - down) / (2 * h);
  }
  return g;
}

/** n float64 values uniform in [lo, hi) from a seed (mulberry32), for the oracles' own tests. */
export function uniform64(seed: number, n: number, lo = -1, hi = 1): Float64Array {
  const r = mulberry32(seed);
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** max |a − b| / max(|a|, |b|), 0 when both are all zeros. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const d = maxAbsDiff(a, b);
  const m = Math.max(maxAbs(a), maxAbs(b));
  return m === 0 ? d : d / m;
}

/** Whether every entry is finite. */
export const allFinite = (a: ArrayLike<number>): boolean => Array.prototype.every.call(a, (x: number) => Number.isFinite(x));

/** Rows [t0, t1) of a `[B, T, W]` array, as `[B, t1 − t0, W]`. */
export function sliceT(a: ArrayLike<number>, B: number, T: number, W: number, t0: number, t1: number): Float64Array {
  const out = new Float64Array(B * (t1 - t0) * W);
  for (let b = 0; b < B; b++) for (let t = t0; t < t1; t++) for (let w = 0; w < W; w++) {
    out[(b * (t1 - t0) + t - t0) * W + w] = a[(b * T + t) * W + w]!;
  }
  return out;
}

/** The inverse of sliceT: `[B, T1, W]` and `[B, T2, W]` joined along T. */
export function concatT(a: ArrayLike<number>, c: ArrayLike<number>, B: number, T1: number, T2: number, W: number): Float64Array {
  const out = new Float64Array(B * (T1 + T2) * W);
  for (let b = 0; b < B; b++) for (let w = 0; w < W; w++) {
    for (let t = 0; t < T1; t++) out[(b * (T1 + T2) + t) * W + w] = a[(b * T1 + t) * W + w]!;
    for (let t = 0; t < T2; t++) out[(b * (T1 + T2) + T1 + t) * W + w] = c[(b * T2 + t) * W + w]!;
  }
  return out;
}

/** A deterministic float array from a seed (mulberry32), uniform in [lo, hi). */
export function seededUniform(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * next();
  return out;
}

/** Small integers in [-k, k]: sums of them are exact in float32, so min/max selections agree in every precision. */
export function seededIntegers(seed: number, n: number, k = 4): Float32Array {
  return seededUniform(seed, n, -k, k + 1).map(Math.floor);
}

/** A layer that decodes one token at a time from a state of its own. */
export interface Steppable<S> {
  initState(batch: number): S;
  step(x: tf.Tensor2D, state: S): [tf.Tensor2D, S];
}

/** Steps `layer` through `x [B, T, D]` from its initial state, disposing every state it leaves: `[B, T, D]`. */
export function decodeSteps<S extends tf.TensorContainer>(layer: Steppable<S>, x: tf.Tensor3D): tf.Tensor3D {
  const [B, T, D] = x.shape;
  let state = layer.initState(B);
  const outs: tf.Tensor2D[] = [];
  for (let t = 0; t < T; t++) {
    const xt = tf.tidy(() => x.slice([0, t, 0], [B, 1, D]).reshape([B, D]) as tf.Tensor2D);
    const [y, next] = layer.step(xt, state);
    tf.dispose([xt, state]);
    outs.push(y);
    state = next;
  }
  const out = tf.stack(outs, 1) as tf.Tensor3D;
  tf.dispose([outs, state]);
  return out;
}
