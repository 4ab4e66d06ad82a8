/**
 * The char-lm side of the language-model peers bench (lm-contract.ts): the example model of
 * `examples/char-lm` with FlashStyleTiledAttention (its WGSL kernels) in every block, trained with
 * Adam (FlatAdam, as the example's trainer) on random windows of the text, and generating through the preallocated key/value caches
 * (`generateBatch`, one decode step per token).
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import '../../src/index.js';
import { Vocabulary, buildModel, countParameters, generateBatch, lossOf, withSeededRandom } from '../../examples/char-lm/model.js';
import { FlatAdam } from '../../examples/char-lm/flat-adam.js';
import { mulberry32 } from '../../examples/shared/random.js';
import { gpuBytes, type Built, type LanguageModelPage, type ModelSize, type Round } from './lm-contract.js';

/** The order of the peer's default learning rate; the bench times steps, not learning. */
const LEARNING_RATE = 1e-3;

interface State {
  model: tf.LayersModel;
  optimizer: tf.Optimizer;
  vocabulary: Vocabulary;
  data: Int32Array;
  size: ModelSize;
  random: () => number;
}

let state: State | null = null;

function current(): State {
  if (!state) throw new Error('lm-page: build() a model first.');
  return state;
}

/** A batch of `batch` random windows of the text: inputs and their next tokens, [batch, context]. */
function batchOf(s: State): [tf.Tensor2D, tf.Tensor2D] {
  const { batch, context } = s.size;
  const x = new Int32Array(batch * context);
  const y = new Int32Array(batch * context);
  for (let b = 0; b < batch; b++) {
    const at = Math.floor(s.random() * (s.data.length - context - 1));
    x.set(s.data.subarray(at, at + context), b * context);
    y.set(s.data.subarray(at + 1, at + context + 1), b * context);
  }
  return [tf.tensor2d(x, [batch, context], 'int32'), tf.tensor2d(y, [batch, context], 'int32')];
}

/** One Adam step; resolves with its loss once the step has run (the read is the fence). */
async function step(s: State): Promise<number> {
  const [x, y] = batchOf(s);
  const loss = s.optimizer.minimize(() => lossOf(s.model, x, y, true), true)!;
  const value = (await loss.data())[0]!;
  tf.dispose([x, y, loss]);
  return value;
}

const page: LanguageModelPage = {
  name: 'char-lm (flashStyleTiledAttention)',

  async build(text: string, size: ModelSize, seed: number): Promise<Built> {
    if (!(await tf.setBackend('webgpu'))) throw new Error('lm-page: tfjs found no WebGPU adapter.');
    await page.dispose();
    const vocabulary = Vocabulary.fromText(text);
    const model = withSeededRandom(seed, () => buildModel({
      mixer: 'flashStyleTiledAttention', vocab: vocabulary.size, context: size.context, width: size.width,
      blocks: size.blocks, heads: size.heads,
    }));
    state = {
      model, optimizer: new FlatAdam(LEARNING_RATE), vocabulary, data: vocabulary.encode(text), size, random: mulberry32(seed),
    };
    return { params: countParameters(model), vocab: vocabulary.size };
  },

  async train(steps: number, warmup: number): Promise<Round> {
    const s = current();
    for (let i = 0; i < warmup; i++) await step(s);
    const started = performance.now();
    let loss = NaN;
    for (let i = 0; i < steps; i++) loss = await step(s);
    const ms = performance.now() - started;
    return { ms, tokens: steps * s.size.batch * s.size.context, loss, gpuBytes: gpuBytes(tf.memory()) };
  },

  async generate(prompt: string, n: number): Promise<Round> {
    const s = current();
    const ids = s.vocabulary.encode(prompt);
    const started = performance.now();
    const [drawn] = await generateBatch(s.model, [ids], n, { temperature: 1, seed: 1 });
    const ms = performance.now() - started;
    return { ms, tokens: drawn!.length, gpuBytes: gpuBytes(tf.memory()) };
  },

  async dispose(): Promise<number> {
    if (state) {
      state.model.dispose();
      state.optimizer.dispose();
      state = null;
    }
    return tf.memory().numTensors;
  },
};

window.lm = page;
document.body.dataset.state = 'ready';
