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
import { ATTENTION, attentionTolerance, causalBias, composedAttention } from '../cases.js';
import { tfjsContender, timeRuns, type Budget, type Contender, type Timing } from '../timing.js';
import { agreement, type Validation } from '../validation.js';
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

const { H, K } = ATTENTION;

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
  /** {@link attentionTolerance} at T. */
  tolerance: number;
  /** Each output against flashAttention's (`agreement`: relative to max |flash|). */
  validation: { ort: Validation; composed?: Validation };
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

/**
 * Compares and times the three at length T; composed attention only up to `composedUpTo` (it
 * holds `[1, H, T, T]` scores).
 */
async function measure(T: number, seed: number, budget: Budget, composedUpTo: number): Promise<PeersRow> {
  const [q, k, v] = [0, 1, 2].map((i) => tf.randomUniform([1, T, H, K], -1, 1, 'float32', seed + i) as tf.Tensor4D);
  const gpuInputs = await Promise.all([q, k, v].map(async (x) => {
    const d = await x!.data() as Float32Array<ArrayBuffer>;
    const buffer = ortDevice.createBuffer({ size: d.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    ortDevice.queue.writeBuffer(buffer, 0, d);
    return buffer;
  }));
  const feeds = Object.fromEntries(['query', 'key', 'value'].map((name, i) =>
    [name, ort.Tensor.fromGpuBuffer(gpuInputs[i]!, { dataType: 'float32', dims: [1, T, H * K] })]));
  const bias = T <= composedUpTo ? causalBias(T) : undefined;
  const flash = () => ops.flashAttention(q!, k!, v!, { causal: true, implementation: 'webgpu' });
  const composed = (b: tf.Tensor2D) => () => tf.tidy(() => composedAttention(q!, k!, v!, b));
  try {
    const y = flash();
    const want = await y.data();
    y.dispose();
    const tolerance = attentionTolerance(T);
    const ortOut = (await session.run(feeds)).output!;
    const validation: PeersRow['validation'] = { ort: agreement([[await ortOut.getData() as Float32Array, want]], tolerance) };
    ortOut.dispose();
    if (bias) {
      const c = composed(bias)();
      validation.composed = agreement([[await c.data(), want]], tolerance);
      c.dispose();
    }
    const contenders: Record<string, Contender> = {
      ort: {
        run: async () => { (await session.run(feeds)).output!.dispose(); },
        fence: () => ortDevice.queue.onSubmittedWorkDone(),
      },
      flashAttention: tfjsContender(backend, flash),
    };
    if (bias) contenders.composed = tfjsContender(backend, composed(bias));
    const timings = await timeRuns(contenders, budget);
    return { T, tolerance, validation, timings };
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
