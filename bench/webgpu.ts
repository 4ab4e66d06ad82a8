import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { backendInternals } from '../src/webgpu/internals.js';
import { HOW_TO_GET_AN_ADAPTER, installWebGPU, type InstallWebGPUOptions, type InstalledWebGPU } from '../src/node.js';

/**
 * The bench scripts' start: Dawn's WebGPU installed, tfjs's webgpu backend set, and small
 * tensors kept on the GPU. Exits with {@link HOW_TO_GET_AN_ADAPTER} when there is no adapter.
 */
export async function startWebGPU(
  who: string, options: InstallWebGPUOptions = {},
): Promise<{ gpu: InstalledWebGPU; backend: WebGPUBackend }> {
  const gpu = await installWebGPU(options);
  if (!gpu) {
    console.error(HOW_TO_GET_AN_ADAPTER);
    process.exit(1);
  }
  // the backend registers itself only if navigator.gpu exists when it is first imported
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error(`${who}: the webgpu backend failed to initialise.`);
  // otherwise small tensors silently run on tfjs's cpu kernels
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  // fail here, naming the member and version, if this tfjs-backend-webgpu lacks what the runtime drives
  backendInternals(tf.backend(), who);
  return { gpu, backend: tf.backend() as WebGPUBackend };
}
