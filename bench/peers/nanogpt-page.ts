/**
 * The peer's side of the language-model peers bench (lm-contract.ts): GenAI NanoGPT 1.3.0 (a
 * tfjs + WebGPU GPT with its own kernels), a character model of the same size, trained through
 * its own training jobs (AdamW, its defaults) and generating through its responses API. lm.mjs
 * bundles this page against the copy it installed in the run's scratch folder.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs-core';
import { TeachableLLM, data } from '@genai-fi/nanogpt';
import type { Built, LanguageModelPage, ModelSize, Round } from './lm-contract.js';

interface State {
  llm: TeachableLLM;
  stream: unknown;
  size: ModelSize;
}

let state: State | null = null;

function current(): State {
  if (!state) throw new Error('nanogpt-page: build() a model first.');
  return state;
}

const gpuBytes = () => (tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number }).numBytesInGPU ?? 0;

/**
 * Runs one training job of `warmup + steps` steps, logging every step, and cancels it then:
 * the timed part runs from the log of step `warmup` to the log of the last step, each logged
 * once its loss has been read.
 */
async function trainJob(s: State, steps: number, warmup: number): Promise<Round> {
  const { llm } = s;
  const stamps: number[] = [];
  let last: { loss: number; tokens: number } | null = null;
  let first = 0;
  const job = await llm.training.job({
    method: { type: 'pretraining' }, batchSize: s.size.batch, logInterval: 1, maxEpochs: 1000,
  }, [s.stream], [{ id: 'bench', name: 'bench', conversational: false }]);
  await new Promise<void>((resolve, reject) => {
    const progress = (j: { id: string; history: { totalTokens: number; trainingMetrics: { loss: number } }[] | null }) => {
      if (j.id !== job.id || !j.history || j.history.length <= stamps.length) return;
      stamps.push(performance.now());
      const entry = j.history[j.history.length - 1]!;
      if (stamps.length === warmup) first = entry.totalTokens;
      last = { loss: entry.trainingMetrics.loss, tokens: entry.totalTokens };
      if (stamps.length === warmup + steps) llm.training.cancel(job.id);
    };
    const ended = (id: string) => {
      if (id !== job.id) return;
      done();
      if (stamps.length < warmup + steps) reject(new Error(`nanogpt-page: the job ended after ${stamps.length} of ${warmup + steps} steps.`));
      else resolve();
    };
    const failed = (id: string, error: Error) => {
      if (id !== job.id) return;
      done();
      reject(error);
    };
    const done = () => {
      llm.training.off('progress', progress);
      llm.training.off('cancelled', ended);
      llm.training.off('completed', ended);
      llm.training.off('error', failed);
    };
    llm.training.on('progress', progress);
    llm.training.on('cancelled', ended);
    llm.training.on('completed', ended);
    llm.training.on('error', failed);
  });
  const end = last as { loss: number; tokens: number } | null;
  return {
    ms: stamps[warmup + steps - 1]! - stamps[warmup - 1]!,
    // as the peer counts them, which the runner checks against steps·batch·context
    tokens: end ? end.tokens - first : 0,
    loss: end?.loss,
    gpuBytes: gpuBytes(),
  };
}

const page: LanguageModelPage = {
  name: 'GenAI NanoGPT 1.3.0',

  async build(text: string, size: ModelSize): Promise<Built> {
    await TeachableLLM.selectBackend('webgpu');
    await page.dispose();
    const llm = TeachableLLM.create('char', {
      modelType: 'GenAI_NanoGPT_v1', useRope: true, vocabSize: 96, blockSize: size.context, nLayer: size.blocks,
      nHead: size.heads, nEmbed: size.width, mlpFactor: 4,
    });
    const stream = new data.MemoryConversationStream([[{ role: 'text', content: text }]]);
    const vocab = await llm.trainTokeniser([stream]);
    state = { llm, stream, size };
    return { params: llm.getNumParams(), vocab };
  },

  train(steps: number, warmup: number): Promise<Round> {
    if (warmup < 1) throw new Error('nanogpt-page: train() needs at least one warm-up step, where the timing starts.');
    return trainJob(current(), steps, warmup);
  },

  async generate(prompt: string, n: number): Promise<Round> {
    const { llm } = current();
    let tokens = 0;
    const started = performance.now();
    // special tokens are kept, so that an untrained model's end-of-text does not stop it early
    await llm.responses.create(
      { input: prompt, maxLength: n, temperature: 1, nonConversational: true, allowSpecial: true }, () => { tokens++; });
    return { ms: performance.now() - started, tokens, gpuBytes: gpuBytes() };
  },

  async dispose(): Promise<number> {
    state?.llm.dispose();
    state = null;
    return tf.memory().numTensors;
  },
};

window.lm = page;
document.body.dataset.state = 'ready';
