/**
 * What the two pages of the language-model peers bench (`npm run bench:peers:lm`) offer their
 * runner (lm.mjs): the char-lm model of this repository (lm-page.ts) and GenAI NanoGPT
 * (nanogpt-page.ts), each on its own page of one headless Chromium, so that each has its own tfjs
 * and its own WebGPU backend on the same adapter. The runner alternates them round by round.
 * Both pages import this module, for its types and for {@link gpuBytes}.
 *
 * @packageDocumentation
 */
import type * as tf from '@tensorflow/tfjs';

/** One model size of the comparison: the same on both sides. */
export interface ModelSize {
  blocks: number;
  heads: number;
  width: number;
  /** Tokens per training sequence, and the model's context. */
  context: number;
  /** Sequences per training step. */
  batch: number;
}

/** What a page built for a size. */
export interface Built {
  /** Scalar weights of the model. */
  params: number;
  /** Its vocabulary's size (the peer's counts its special tokens). */
  vocab: number;
}

/** One timed round. */
export interface Round {
  /** Wall time of the timed part, ms. */
  ms: number;
  /** Tokens it processed (training: steps·batch·context) or drew (generation). */
  tokens: number;
  /** Training: the last step's loss, so that a broken step shows. */
  loss?: number;
  /** Bytes tfjs held on the GPU at the round's end. */
  gpuBytes: number;
}

/** The page's entry points, as `window.lm`. */
export interface LanguageModelPage {
  /** The name the tables use. */
  name: string;
  /** Builds (replacing any earlier) a model of `size` for the characters of `text`. */
  build(text: string, size: ModelSize, seed: number): Promise<Built>;
  /** `warmup` untimed steps, then `steps` timed ones, on batches of `text`. */
  train(steps: number, warmup: number): Promise<Round>;
  /** Continues `prompt` by `n` tokens, one at a time, sampled at temperature 1. */
  generate(prompt: string, n: number): Promise<Round>;
  /** Frees the model; returns the tensors tfjs still holds. */
  dispose(): Promise<number>;
}

/**
 * The bytes tfjs holds on the GPU, from a page's own `tf.memory()` (each page has its own tfjs);
 * 0 off the WebGPU backend.
 */
export function gpuBytes(memory: tf.MemoryInfo): number {
  return (memory as tf.MemoryInfo & { numBytesInGPU?: number }).numBytesInGPU ?? 0;
}

declare global {
  interface Window {
    lm: LanguageModelPage;
  }
}
