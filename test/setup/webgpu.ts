// Installs Dawn's WebGPU before any test file imports tfjs-backend-webgpu: the backend
// registers itself only if navigator.gpu exists when it is first imported.
import { afterAll, afterEach, beforeEach } from 'vitest';
import * as fc from 'fast-check';
import * as tf from '@tensorflow/tfjs';
import { installWebGPU, type InstalledWebGPU } from '../../src/node.js';
import { POISON_OUTPUTS_FLAG } from '../../src/webgpu/runtime.js';

const g = globalThis as { __mixersWebGPU?: InstalledWebGPU | null; __mixersRefused?: string[] };
g.__mixersWebGPU ??= await installWebGPU();

// every kernel output starts as NaN, so a kernel that skips an element fails the properties
tf.env().set(POISON_OUTPUTS_FLAG, true);

// fixed seeds, so a failure reproduces; fast-check prints the seed and path of a counterexample
fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20241122), numRuns: 20, endOnFailure: true });

// WebGPU reports a dispatch it refuses (a binding too small for its shader, a buffer bound both to
// read and write) only on the device, and runs nothing of the command buffer: outputs keep what
// they held. Each webgpu device tfjs makes here has its errors collected, and a test during which
// one arrives fails with them, where it might pass on stale values or merely print them.
const watched = new WeakSet<GPUDevice>();
const refused: string[] = (g.__mixersRefused = []);
const webgpuDevice = () => (tf.engine().registry.webgpu as { device?: GPUDevice } | undefined)?.device;

beforeEach(() => {
  const device = webgpuDevice();
  if (!device || watched.has(device)) return;
  watched.add(device);
  device.addEventListener('uncapturederror', (event) => refused.push((event as GPUUncapturedErrorEvent).error.message));
});

afterEach(async () => {
  await webgpuDevice()?.queue.onSubmittedWorkDone();
  if (refused.length === 0) return;
  const messages = refused.splice(0);
  throw new Error(`WebGPU refused ${messages.length} command(s) during this test:\n${messages.join('\n')}`);
});

afterAll(() => {
  g.__mixersWebGPU?.uninstall();
  g.__mixersWebGPU = undefined;
});
