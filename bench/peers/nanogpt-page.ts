/**
 * The peer's side of the language-model peers bench (lm-contract.ts): GenAI NanoGPT 1.3.0 (a
 * tfjs + WebGPU GPT with its own kernels), a character model of the same size, trained through
 * its own training jobs (AdamW, its defaults) and generating through its responses API. lm.mjs
 * bundles this page against the copy it installed in the run's scratch folder.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs-core';
import { TeachableLLM, data, type NanoGptJob } from '@genai-fi/nanogpt';
import { gpuBytes, type Built, type LanguageModelPage, type ModelSize, type Round } from './lm-contract.js';

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

/**
 * Runs one training job of `warmup + steps` steps, logging every step, and cancels it then:
 * the timed part runs from the log of step `warmup` to the log of the last step, each logged
 * once its loss has been read.
 */
async function trainJob(s: State, steps: number, warmup: number): Promise<Round> {
  const { llm } = s;
  // one record per logged step: when its log came, and the peer's own token count and loss
  const logs: { at: number; tokens: number; loss: number }[] = [];
  const job = await llm.training.job({
    method: { type: 'pretraining' }, batchSize: s.size.batch, logInterval: 1, maxEpochs: 1000,
  }, [s.stream], [{ id: 'bench', name: 'bench', conversational: false }]);
  await new Promise<void>((resolve, reject) => {
    const progress = (j: NanoGptJob) => {
      if (j.id !== job.id || !j.history || j.history.length <= logs.length) return;
      const entry = j.history[j.history.length - 1]!;
      logs.push({ at: performance.now(), tokens: entry.totalTokens, loss: entry.trainingMetrics.loss });
      if (logs.length === warmup + steps) llm.training.cancel(job.id);
    };
    const ended = (id: string) => {
      if (id !== job.id) return;
      done();
      if (logs.length < warmup + steps) reject(new Error(`nanogpt-page: the job ended after ${logs.length} of ${warmup + steps} steps.`));
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
  const from = logs[warmup - 1]!;
  const to = logs[warmup + steps - 1]!;
  return {
    ms: to.at - from.at,
    // as the peer counts them, which the runner checks against steps·batch·context
    tokens: to.tokens - from.tokens,
    loss: to.loss,
    gpuBytes: gpuBytes(tf.memory()),
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
    return { ms: performance.now() - started, tokens, gpuBytes: gpuBytes(tf.memory()) };
  },

  async dispose(): Promise<number> {
    state?.llm.dispose();
    state = null;
    return tf.memory().numTensors;
  },
};

window.lm = page;
document.body.dataset.state = 'ready';
