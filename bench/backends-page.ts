/**
 * The page of `npm run bench -- --backend webgl`: runs bench/backends.ts's section on tfjs's webgl
 * backend in headless Chromium. backends-run.ts bundles it, calls `backendsBench.run(options,
 * seed)` and writes the report; the page's progress goes to its console.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { runBackends, type BackendsMeasurement, type BackendsOptions } from './backends.js';

/** What the runner calls. */
export interface BackendsBench {
  run(options: BackendsOptions, seed: number): Promise<BackendsMeasurement & { renderer: string }>;
}

/** The renderer WebGL draws with (SwiftShader through ANGLE on a machine without a GPU). */
function renderer(): string {
  const gl = (tf.backend() as tf.MathBackendWebGL).getGPGPUContext().gl;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
}

const bench: BackendsBench = {
  async run(options, seed) {
    const measured = await runBackends(options, seed, (line) => console.log(line));
    return { ...measured, renderer: renderer() };
  },
};
(window as unknown as { backendsBench: BackendsBench }).backendsBench = bench;
document.body.dataset.state = 'ready';
