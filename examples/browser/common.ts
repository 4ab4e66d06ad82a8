/**
 * What both demo pages share: finding WebGPU (with a message that says what to do when there
 * is none), the page's machine-readable state, and a GPU fence for timing.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { backendInternals } from '../../src/webgpu/internals.js';

/** How to get WebGPU, shown under any "no WebGPU" message. */
export const WEBGPU_HELP =
  'Use a browser with WebGPU (a recent Chrome or Edge; Safari and Firefox on some systems) and open the page ' +
  'from http://localhost or https (WebGPU needs a secure context). Headless Chromium needs ' +
  '--enable-unsafe-webgpu; on Debian or Ubuntu without a GPU, `sudo apt-get install chromium libvulkan1` ' +
  'provides the SwiftShader software adapter.';

/** The result of {@link findWebGPU}. */
export type WebGPUCheck = { ok: true; adapter: string } | { ok: false; reason: string };

/** Whether this page can use WebGPU, and which adapter it would get. */
export async function findWebGPU(): Promise<WebGPUCheck> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    return { ok: false, reason: 'navigator.gpu is missing: this browser (or this insecure page) has no WebGPU.' };
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return { ok: false, reason: `navigator.gpu.requestAdapter() threw: ${String(e)}.` };
  }
  if (!adapter) return { ok: false, reason: 'navigator.gpu.requestAdapter() returned no adapter.' };
  const info = adapter.info;
  const name = [info.vendor, info.architecture, info.description].filter((s) => s).join(' / ');
  return { ok: true, adapter: name || 'unnamed adapter' };
}

/** Page states the test waits for, in `<body data-state>`. */
export type PageState = 'loading' | 'ready' | 'running' | 'done' | 'error' | 'no-webgpu' | 'no-webgl';

/** Sets `<body data-state>` and, for errors, `<body data-error>`. */
export function setState(state: PageState, error?: string): void {
  document.body.dataset['state'] = state;
  if (error === undefined) delete document.body.dataset['error'];
  else document.body.dataset['error'] = error;
}

/** An element that the page's HTML must hold. */
export function byId<T extends Element = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no element #${id}.`);
  return element as Element as T;
}

/** Shows `message` in the page's #message box (styled as an error when `error`). */
export function showMessage(message: string, error = false): void {
  const box = byId('message');
  box.textContent = message;
  box.classList.toggle('error', error);
  box.hidden = message === '';
}

/**
 * Waits until the GPU has finished everything tfjs asked of it, without reading anything back:
 * tfjs records up to a batch of dispatches before it submits, so submit those first.
 */
export async function fence(): Promise<void> {
  const backend = backendInternals(tf.backend(), 'fence');
  if (backend.commandEncoder) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  await backend.device.queue.onSubmittedWorkDone();
}

/** The median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Lets the browser paint: a macrotask, so pending rendering runs before the next line. */
export function yieldToBrowser(): Promise<void> {
  return new Promise((done) => setTimeout(done, 0));
}

/** The renderer of the WebGL context tfjs's webgl backend draws with (SwiftShader through ANGLE on a machine without a GPU), or '' off webgl. */
export function webglRenderer(): string {
  const backend = tf.backend();
  if (!(backend instanceof tf.MathBackendWebGL)) return '';
  const gl = backend.getGPGPUContext().gl;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
}
