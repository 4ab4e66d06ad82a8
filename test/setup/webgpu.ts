// Installs Dawn's WebGPU before any test file imports tfjs-backend-webgpu: the backend
// registers itself only if navigator.gpu exists when it is first imported.
import { afterAll } from 'vitest';
import * as fc from 'fast-check';
import * as tf from '@tensorflow/tfjs';
import { installWebGPU, type InstalledWebGPU } from '../../src/node.js';
import { POISON_OUTPUTS_FLAG } from '../../src/webgpu/runtime.js';

const g = globalThis as { __mixersWebGPU?: InstalledWebGPU | null };
g.__mixersWebGPU ??= await installWebGPU();

// every kernel output starts as NaN, so a kernel that skips an element fails the properties
tf.env().set(POISON_OUTPUTS_FLAG, true);

// fixed seeds, so a failure reproduces; fast-check prints the seed and path of a counterexample
fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20241122), numRuns: 20, endOnFailure: true });

afterAll(() => {
  g.__mixersWebGPU?.uninstall();
  g.__mixersWebGPU = undefined;
});
