/**
 * The text-generation page (generate.html): loads the small char-lm model in model/ (a
 * CausalGeneration GPT trained by examples/char-lm) with `tf.loadLayersModel`, then continues a
 * prompt character by character through the layers' `step` (examples/char-lm's `generate`),
 * showing each character as it is drawn and the rate. On WebGPU the mixers' decode steps run
 * their WGSL kernels; on cpu their tfjs-ops reference. With `?subgroups` in its address the page
 * makes the webgpu backend with `registerSubgroupBackend`, so that the kernels take their subgroup
 * paths where the adapter offers subgroups.
 *
 * In an application, import the library as `'tfjs-mixers'`; build.mjs maps this path to it.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
// registers the mixer layers, so that tf.loadLayersModel finds them by class name
import { registerSubgroupBackend } from '../../src/index.js';
// registers the char-lm's own layers (TokenEmbedding, PositionalEmbedding, LayerNorm)
import { Vocabulary, generate } from '../char-lm/model.js';
import { WEBGPU_HELP, byId, findWebGPU, setState, showMessage, yieldToBrowser } from './common.js';

const MODEL_URL = 'model/model.json';

/** What `<pre id="results">` holds after a run. */
export interface GenerationResult {
  backend: string;
  /** Whether the backend's device has subgroups (on webgpu with `?subgroups`, where the adapter offers them). */
  subgroups: boolean;
  prompt: string;
  requested: number;
  generated: string;
  /** Characters per second from the first drawn character to the last (the prompt excluded). */
  charsPerSecond: number;
  /** Wall time of the whole call, the prompt's decode steps included. */
  totalMs: number;
  /** Tensors alive after the run minus before (0: nothing leaked). */
  leakedTensors: number;
}

interface Loaded {
  model: tf.LayersModel;
  vocab: Vocabulary;
}

const loaded = new Map<string, Loaded>();

/**
 * Makes `backend` the active one and returns the model loaded on it. Each backend loads its
 * own copy rather than letting tfjs move the weights: after a run on webgpu, tfjs 4.22 moves
 * them to cpu with a synchronous GPU read (`readSync`), which gave all zeros in headless
 * Chromium on SwiftShader, and the text turned to noise.
 */
async function modelOn(backend: string): Promise<Loaded> {
  if (!(await tf.setBackend(backend))) throw new Error(`tf.setBackend('${backend}') failed.`);
  if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
  let entry = loaded.get(backend);
  if (!entry) {
    const model = await tf.loadLayersModel(MODEL_URL);
    const chars = (model.getUserDefinedMetadata() as { vocab?: string } | undefined)?.vocab;
    if (!chars) throw new Error(`${MODEL_URL} has no vocabulary in its userDefinedMetadata.`);
    entry = { model, vocab: new Vocabulary([...chars]) };
    loaded.set(backend, entry);
  }
  return entry;
}

/** Whether the active backend's device has subgroups (only a webgpu backend has a device). */
function hasSubgroups(): boolean {
  const device = (tf.backend() as { device?: GPUDevice }).device;
  return device?.features.has('subgroups') ?? false;
}

async function main(): Promise<void> {
  setState('loading');
  const backendSelect = byId<HTMLSelectElement>('backend');
  const gpu = await findWebGPU();
  if (gpu.ok && new URLSearchParams(location.search).has('subgroups')) await registerSubgroupBackend();
  if (!gpu.ok) {
    backendSelect.querySelector<HTMLOptionElement>('option[value="webgpu"]')!.disabled = true;
    backendSelect.value = 'cpu';
    showMessage(`No WebGPU (${gpu.reason}), so this page runs on the cpu backend. ${WEBGPU_HELP}`, true);
  }
  const { model, vocab } = await modelOn(backendSelect.value);
  const parameters = model.countParams();
  byId('model').textContent = `${model.name}: ${parameters.toLocaleString('en-US')} parameters, ` +
    `vocabulary of ${vocab.size} characters${gpu.ok ? `; WebGPU adapter ${gpu.adapter}` : ''}`;

  const button = byId<HTMLButtonElement>('generate');
  const promptBox = byId<HTMLTextAreaElement>('prompt');
  const promptView = byId('prompt-view');
  const generatedView = byId('generated');
  const stats = byId('stats');
  button.addEventListener('click', async () => {
    button.disabled = true;
    setState('running');
    showMessage('');
    try {
      const { model, vocab } = await modelOn(backendSelect.value);
      const count = Number(byId<HTMLInputElement>('count').value);
      const temperature = Number(byId<HTMLInputElement>('temperature').value);
      const seed = Number(byId<HTMLInputElement>('seed').value);
      if (!Number.isInteger(count) || count < 1) throw new Error(`characters must be a positive integer; received ${count}.`);
      const prompt = promptBox.value;
      const ids = vocab.encode(prompt);
      if (ids.length === 0) throw new Error('the prompt must hold at least one character.');

      promptView.textContent = prompt;
      generatedView.textContent = '';
      const before = tf.memory().numTensors;
      const started = performance.now();
      let first = 0;
      let last = 0;
      let drawn = 0;
      let painted = started;
      await generate(model, ids, count, {
        temperature, seed,
        onToken: async (id) => {
          last = performance.now();
          if (drawn++ === 0) first = last;
          generatedView.textContent += vocab.decode([id]);
          stats.textContent = `${drawn} / ${count} characters`;
          // let the page paint now and then, not after every character
          if (last - painted > 50) {
            await yieldToBrowser();
            painted = performance.now();
          }
        },
      });
      const totalMs = performance.now() - started;
      const charsPerSecond = drawn > 1 ? (drawn - 1) / ((last - first) / 1000) : drawn / (totalMs / 1000);
      const result: GenerationResult = {
        backend: tf.getBackend(), subgroups: hasSubgroups(), prompt, requested: count, generated: generatedView.textContent ?? '',
        charsPerSecond, totalMs, leakedTensors: tf.memory().numTensors - before,
      };
      stats.textContent = `${drawn} characters on ${result.backend} in ${(totalMs / 1000).toFixed(2)} s: ` +
        `${charsPerSecond.toFixed(1)} characters/s after the prompt`;
      byId('results').textContent = JSON.stringify(result, null, 2);
      setState('done');
    } catch (e) {
      showMessage(`Generation failed: ${String(e)}`, true);
      setState('error', String(e));
    } finally {
      button.disabled = false;
    }
  });
  button.disabled = false;
  setState('ready');
}

main().catch((e: unknown) => {
  showMessage(`The page failed to start: ${String(e)}`, true);
  setState('error', String(e));
});
