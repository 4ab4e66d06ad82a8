import type * as tf from '@tensorflow/tfjs';
import type { Implementation } from '../validate.js';

/**
 * One run of a mixer's main op at a length: random inputs drawn from a seed, and the op on them.
 * The bench, the browser timing page and the shared property tests time and compare it
 * (kernel against reference, forward and forward+backward).
 */
export interface MixerCase {
  /** The op's name in `ops`. */
  op: string;
  /** The inputs and options, in words. */
  about: string;
  /** Names of {@link MixerCase.inputs}, for labels (`dq`, `dk`, …). */
  names: readonly string[];
  /** The inputs the gradients are taken of. */
  inputs: tf.Tensor[];
  /** Inputs held fixed (not differentiated); disposed with the case. */
  constants: tf.Tensor[];
  /** The output's shape, for an output gradient drawn before the first run. */
  outputShape: number[];
  /** The op on `inputs` (or tensors shaped as them) through `implementation`. */
  run(implementation: Implementation, inputs: readonly tf.Tensor[]): tf.Tensor;
}

/** The sizes {@link MixerDescriptor.blockArgs} fits a layer to. */
export interface BlockSizes {
  /** Heads of the attention-like mixers; the block's width is a multiple. */
  numHeads: number;
  /** The longest sequence the model trains on, in tokens. */
  context: number;
}

/**
 * What the library knows of one mixer, in one place: its names, layer, ops, guide, how it
 * decodes and packs, and its bench case. {@link mixers} lists them; the char-lm example, the
 * experiment, `npm run bench`, the browser pages and the shared tests read that list, so a
 * new mixer joins all of them through its folder's descriptor and one line of the registry.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { mixers } from 'tfjs-mixers';
 *
 * for (const m of mixers) {
 *   const layer = m.layer(m.blockArgs({ numHeads: 4, context: 256 }));
 *   const y = layer.apply(tf.randomNormal([1, 16, 64])) as tf.Tensor;  // [1, 16, 64]
 *   console.log(m.name, m.className, y.shape);
 * }
 * ```
 */
export interface MixerDescriptor {
  /** The one spelling, lowerCamelCase: the factory in `layers`, the char-lm `--mixer`, bench labels. */
  readonly name: string;
  /** The layer class's `className`, as `model.save` writes it. */
  readonly className: string;
  /** The guide's page: `docs/<guide>.md`. */
  readonly guide: string;
  /** The mixer's functions in `ops`, its main op (the one {@link MixerDescriptor.benchCase} runs) first. */
  readonly ops: readonly string[];
  /** `layers.<name>(args)`: the layer checks `args` itself. */
  layer(args?: object): tf.layers.Layer;
  /**
   * The arguments of the layer as a transformer block's mixer (the char-lm example's and the
   * experiment's), before `name`, `implementation` and a caller's own.
   */
  blockArgs(sizes: BlockSizes): Record<string, unknown>;
  /**
   * What `step` carries by default: a key/value cache that grows by a token a step (`initState`
   * takes a `capacity`), or a state of fixed size.
   */
  readonly decode: 'cache' | 'state';
  /** Whether `apply(x, { segmentIds })` keeps packed documents apart (attention mixers). */
  readonly segments: boolean;
  /**
   * The WGSL kernels behind `implementation: 'webgpu'` (every registered mixer has them): how far
   * (max |kernel − reference| / max |reference|) they may differ from the reference on
   * {@link MixerDescriptor.benchCase}.
   */
  readonly kernels: { tolerance: number };
  /** The main op at length T on inputs drawn from `seed` (dispose `inputs` and `constants`). */
  benchCase(T: number, seed: number): MixerCase;
}
