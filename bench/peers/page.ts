/**
 * The peers page (`npm run bench:peers`): ONNX Runtime Web's `MultiHeadAttention` on its WebGPU
 * execution provider, `ops.flashAttention`'s kernels and composed attention in tfjs ops, on the
 * same inputs and the same adapter, causal, q, k, v `[1, T, H, K]`. The runner (run.mjs) calls
 * `peers.start()` once, then `peers.measure(T)` per length: the three outputs are compared, then
 * timed interleaved by fenced wall time (inputs on the GPU, the output left there, each
 * contender's queue drained per sample).
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { ops } from '../../src/index.js';
import { fence, timeRuns, type Budget, type Contender, type Timing } from '../timing.js';
import { multiHeadAttentionModel } from './onnx.js';

/**
 * The part of onnxruntime-web's API the page uses. The package is the peers bench's own
 * dependency (bench/peers/package.json), loaded at run time from the runner's server, so the
 * repository's typecheck does not need it.
 */
interface OrtTensor { dispose(): void; getData(): Promise<unknown> }
interface Ort {
  env: { wasm: { numThreads: number }; webgpu: { device: Promise<GPUDevice> }; versions: { web?: string } };
  InferenceSession: {
    create(model: Uint8Array, options: Record<string, unknown>): Promise<{ run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>> }>;
  };
  Tensor: { fromGpuBuffer(buffer: GPUBuffer, options: { dataType: 'float32'; dims: number[] }): OrtTensor };
}

/** The attention bench's shape (bench/cases.ts ATTENTION). */
const [H, K] = [4, 64];

/** What {@link start} found. */
export interface PeersSetup {
  adapter: string;
  /** Whether the adapter offers subgroups, and its subgroup sizes. */
  subgroups: { offered: boolean; minSize?: number; maxSize?: number };
  /** The features of the device ORT runs on, as ORT sees them (see {@link hideSubgroups}). */
  ortFeatures: string[];
  ortVersion: string;
  tfjsVersion: string;
}

/** One length: agreement, then the timings. */
export interface PeersRow {
  T: number;
  /** max |a − flash| / max |flash| over the output. */
  relative: { ort: number; composed?: number };
  timings: Record<string, Timing>;
}

let ort: Ort;
let session: Awaited<ReturnType<Ort['InferenceSession']['create']>>;
let ortDevice: GPUDevice;
let backend: WebGPUBackend;

/**
 * Hides the adapter's and devices' `subgroups` features from whatever asks afterwards: ORT
 * 1.30's subgroup FlashAttention assumes 8 or 16 lanes, and gives wrong outputs on SwiftShader's
 * 4, so on such adapters ORT runs its kernels without subgroups. (tfjs 4.22 uses none.)
 */
function hideSubgroups(): void {
  for (const proto of [GPUAdapter.prototype, GPUDevice.prototype]) {
    const features = Object.getOwnPropertyDescriptor(proto, 'features')!.get!;
    Object.defineProperty(proto, 'features', {
      configurable: true,
      get(this: GPUAdapter | GPUDevice) {
        return new Set([...(features.call(this) as GPUSupportedFeatures)].filter((f) => !f.startsWith('subgroup')));
      },
    });
  }
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (this: GPUAdapter, descriptor?: GPUDeviceDescriptor) {
    const required = [...(descriptor?.requiredFeatures ?? [])].filter((f) => !f.startsWith('subgroup'));
    return requestDevice.call(this, { ...descriptor, requiredFeatures: required });
  };
}

/**
 * Starts tfjs on webgpu and ORT's WebGPU EP on the same adapter, without subgroups where they
 * are narrower than 8 lanes unless `keepSubgroups`.
 */
async function start(ortUrl: string, keepSubgroups = false): Promise<PeersSetup> {
  await tf.setBackend('webgpu');
  await tf.ready();
  backend = tf.backend() as WebGPUBackend;
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('peers: navigator.gpu.requestAdapter() returned no adapter.');
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  const subgroups = { offered: adapter.features.has('subgroups'), minSize: info.subgroupMinSize, maxSize: info.subgroupMaxSize };
  if (subgroups.offered && (info.subgroupMinSize ?? 0) < 8 && !keepSubgroups) hideSubgroups();
  ort = await import(ortUrl) as Ort;
  ort.env.wasm.numThreads = 1;
  session = await ort.InferenceSession.create(multiHeadAttentionModel({ numHeads: H, hidden: H * K, causal: true }), {
    executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer', graphOptimizationLevel: 'all',
  });
  ortDevice = await ort.env.webgpu.device;
  return {
    adapter: [info.vendor, info.architecture, info.description].filter((s) => s).join(' / '),
    subgroups,
    ortFeatures: [...ortDevice.features].sort(),
    ortVersion: ort.env.versions.web ?? 'unknown',
    tfjsVersion: tf.version.tfjs,
  };
}

/** A seeded uniform draw in [−1, 1), as a float32 array (mulberry32). */
function uniform(n: number, seed: number): Float32Array<ArrayBuffer> {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  });
}

/** Composed causal attention as a tfjs user writes it: matMul, a −∞ bias above the diagonal, softmax, matMul. */
function composed(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor2D): tf.Tensor4D {
  return tf.tidy(() => {
    const heads = (x: tf.Tensor) => x.transpose([0, 2, 1, 3]);
    const scores = tf.add(tf.mul(tf.matMul(heads(q), heads(k), false, true), 1 / Math.sqrt(K)), bias);
    return tf.matMul(tf.softmax(scores), heads(v)).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  });
}

const relativeTo = (want: Float32Array, got: Float32Array) => {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  // a NaN anywhere makes the comparison fail, as it should
  return got.some(Number.isNaN) ? NaN : diff / scale;
};

/**
 * Compares and times the three at length T; composed attention only up to `composedUpTo` (it
 * holds `[1, H, T, T]` scores).
 */
async function measure(T: number, seed: number, budget: Budget, composedUpTo: number): Promise<PeersRow> {
  const n = T * H * K;
  const data = [0, 1, 2].map((i) => uniform(n, seed + i));
  const [q, k, v] = data.map((d) => tf.tensor4d(d, [1, T, H, K]));
  const gpuInputs = data.map((d) => {
    const buffer = ortDevice.createBuffer({ size: d.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    ortDevice.queue.writeBuffer(buffer, 0, d);
    return buffer;
  });
  const feeds = Object.fromEntries(['query', 'key', 'value'].map((name, i) =>
    [name, ort.Tensor.fromGpuBuffer(gpuInputs[i]!, { dataType: 'float32', dims: [1, T, H * K] })]));
  const withComposed = T <= composedUpTo;
  const bias = withComposed
    ? tf.tidy(() => tf.mul(tf.cast(tf.greater(tf.range(0, T).reshape([1, T]), tf.range(0, T).reshape([T, 1])), 'float32'), -1e9) as tf.Tensor2D)
    : undefined;
  const flash = () => ops.flashAttention(q!, k!, v!, { causal: true, implementation: 'webgpu' });
  try {
    const y = flash();
    const want = await y.data() as Float32Array;
    y.dispose();
    const ortOut = (await session.run(feeds)).output!;
    const relative: PeersRow['relative'] = { ort: relativeTo(want, await ortOut.getData() as Float32Array) };
    ortOut.dispose();
    if (bias) {
      const c = composed(q!, k!, v!, bias);
      relative.composed = relativeTo(want, await c.data() as Float32Array);
      c.dispose();
    }
    const tfjs = (f: () => tf.Tensor): Contender => ({ run: () => { f().dispose(); }, fence: () => fence(backend) });
    const contenders: Record<string, Contender> = {
      ort: {
        run: async () => { (await session.run(feeds)).output!.dispose(); },
        fence: () => ortDevice.queue.onSubmittedWorkDone(),
      },
      flashAttention: tfjs(flash),
    };
    if (bias) contenders.composed = tfjs(() => composed(q!, k!, v!, bias));
    const timings = await timeRuns(contenders, budget);
    return { T, relative, timings };
  } finally {
    tf.dispose([q!, k!, v!, ...(bias ? [bias] : [])]);
    for (const b of gpuInputs) b.destroy();
  }
}

declare global {
  interface Window {
    peers: { start: typeof start; measure: typeof measure; tensors: () => number };
  }
}
window.peers = { start, measure, tensors: () => tf.memory().numTensors };
document.body.dataset['state'] = 'ready';
