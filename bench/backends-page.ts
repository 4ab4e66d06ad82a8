/**
 * The page of `npm run bench -- --backend webgl`: runs bench/backends.ts's section on tfjs's webgl
 * backend in headless Chromium. backends-run.ts bundles it, calls `backendsBench.run(options,
 * seed)` and writes the report; the page's progress goes to its console.
 *
 * @packageDocumentation
 */
import { webglRenderer } from '../examples/browser/common.js';
import { runBackends, type BackendsMeasurement, type BackendsOptions } from './backends.js';

/** What the runner calls. */
export interface BackendsBench {
  run(options: BackendsOptions, seed: number): Promise<BackendsMeasurement & { renderer: string }>;
}

const bench: BackendsBench = {
  async run(options, seed) {
    const measured = await runBackends(options, seed, (line) => console.log(line));
    return { ...measured, renderer: webglRenderer() };
  },
};
(window as unknown as { backendsBench: BackendsBench }).backendsBench = bench;
document.body.dataset.state = 'ready';
