import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';

import { fence, timeRuns, type Budget, type Contender, type Timing } from '../src/webgpu/timing.js';

export { MIN_SAMPLE_MS, fence, median, timeRuns, type Budget, type Contender, type Timing } from '../src/webgpu/timing.js';

/**
 * A tfjs {@link Contender} on the webgpu backend: each output is disposed as soon as it is
 * recorded, and a run that leaves tensors or GPU data behind fails the measurement.
 */
export function tfjsContender(backend: WebGPUBackend, f: () => tf.TensorContainer): Contender {
  return {
    run: () => {
      const before = tf.memory();
      tf.dispose(f());
      const after = tf.memory();
      if (after.numTensors !== before.numTensors || after.numDataBuffers !== before.numDataBuffers) {
        throw new Error(`bench: a run leaked ${after.numTensors - before.numTensors} tensor(s), ` +
          `${after.numDataBuffers - before.numDataBuffers} data buffer(s).`);
      }
    },
    fence: () => fence(backend),
  };
}

/** {@link timeRuns} for tfjs contenders on the webgpu backend ({@link tfjsContender}). */
export function timeInterleaved<K extends string>(
  backend: WebGPUBackend, contenders: Record<K, () => tf.TensorContainer>, budget: Budget, own: Partial<Record<K, Budget>> = {},
): Promise<Record<K, Timing>> {
  const names = Object.keys(contenders) as K[];
  return timeRuns(Object.fromEntries(names.map((k) => [k, tfjsContender(backend, contenders[k])])) as Record<K, Contender>, budget, own);
}
