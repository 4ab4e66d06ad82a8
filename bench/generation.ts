/**
 * The generation section of `npm run bench`: the char-lm example's model (examples/char-lm,
 * D = 64, 2 blocks, 4 heads, MLP 4·D, 65 characters) generating with each mixer, batch 1.
 *
 * - **Time per token at context t** (1k, 4k, 16k, 64k; `--quick` 1k and 4k): one decode step of
 *   the whole model (`Decoder.next`) from a state at position t. The state is built without
 *   running the prompt (a 16k-token attention prefill takes many minutes on a software
 *   adapter): for the attention mixers, random keys and values at positions 0…t − 1, held once
 *   in a preallocated cache written in place (`initState(B, { capacity })`) and once in
 *   today's concatenating cache of t slots; for the recurrent mixers, their fixed-size state
 *   with its position set to t. The two caches and the attention read alone (the op over one
 *   query and t + 1 keys, as the layer calls it) are timed interleaved; "beyond the read" is a
 *   step less the two blocks' reads.
 * - **Prefill against stepping**: 1024 tokens through `Decoder.prefill` (every mixer's prefill,
 *   the forward kernels) against stepping them, estimated from steps sampled at the midpoints of
 *   the prompt's four quarters (exact for a cost linear in the position) times 256.
 *
 * Targets (issue 14): attention's time per token at 16k, beyond the read, within 1.5× of its
 * time at 1k (in-place cache); a 1k-token prefill at least 10× faster than stepping it;
 * recurrent mixers flat in t (at the longest context, within 1.25× of their time at 1k).
 * `npm run bench -- --generation` runs this section alone.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import {
  BlockSparse, DEFAULT_LAYOUT, ExpressiveAttention, FlashStyleTiledAttention, mixers as libraryMixers, ops,
  type KVCacheState,
} from '../src/index.js';
import { flashAttentionOverList } from '../src/mixers/flash-style-tiled-attention/op.js';
import { stepKeysKernel } from '../src/mixers/block-sparse/kernel.js';
import { visibleKeyCount } from '../src/mixers/block-sparse/layout.js';
import { Decoder, buildModel, countParameters, hasKVCache, withSeededRandom, type MixerName } from '../examples/char-lm/model.js';
import { mulberry32 } from '../examples/shared/random.js';
import { seconds } from './limits.js';
import { agreement, type Validation } from './validation.js';
import { fence, timeInterleaved, type Budget, type Timing } from './timing.js';

/** Contexts t of a full run and of `--quick`; a context whose runs would pass the section's deadline is skipped. */
export const GENERATION_CONTEXTS = { full: [1024, 4096, 16384, 65536], quick: [1024, 4096] } as const;
/** The section's own deadline in minutes from its start; `-- --generation --minutes N` sets it when run alone. */
export const GENERATION_MINUTES = 8;
/** The prompt of the prefill-against-stepping comparison, in tokens. */
export const PREFILL_TOKENS = 1024;
/** The char-lm example's configuration (its training defaults, examples/char-lm/train.ts). */
export const CHAR_LM = { vocab: 65, width: 64, blocks: 2, heads: 4, mlpRatio: 4 } as const;
/** Targets: beyond-the-read time at 16k over 1k at most; stepping over prefill at least; recurrent time at t over 1k at most. */
export const TARGETS = { attentionAt: 16384, attentionRatio: 1.5, prefillSpeedup: 10, recurrentRatio: 1.25 } as const;

// one untimed run of each contender comes first (pipelines, and the validation), so no
// warm-up here: every sample is then one run, and a state moves at most 1 + maxIterations
// tokens past t while it is timed. A step of a few ms waits for the GPU once, and on SwiftShader
// that wait's wake-up added 0 or about 4 ms (samples of 1.5 or 5.5 ms): ten samples left the
// recurrent steps' ratios ±30 % (0.70–1.18 in one run), so forty
const BUDGET: Budget = { warmup: 0, minIterations: 5, maxIterations: 40, budgetMs: 3000 };
const QUICK_BUDGET: Budget = { warmup: 0, minIterations: 2, maxIterations: 5, budgetMs: 1500 };
// the read alone, which advances no state, back to back over 40 ms a sample: a step waits for the
// GPU once for both its reads, and a read fenced alone waited once for itself (at t = 1024 its
// samples were 1.5 or 5.5 ms, so that their median could pass half a step's and the time beyond
// the reads come out negative)
const READ_SAMPLE: Partial<Budget> = { warmup: 1, minSampleMs: 40 };
/** Positions past t a state may reach while it is timed: a preallocated cache's slots past t. */
const MARGIN = 2 + BUDGET.maxIterations;

/** A mixer as the section runs it. */
interface GenerationMixer {
  /** The name in the report. */
  name: string;
  /** The char-lm mixer and the arguments it adds. */
  mixer: MixerName;
  mixerArgs?: Record<string, unknown>;
  /** Attention (a key/value cache) or recurrent (a fixed-size state). */
  kind: 'attention' | 'recurrent';
}

/**
 * Arguments over the char-lm builder's: BlockSparse with the library's default layout, 320 keys
 * a step at most (the builder's, blocks of context/8, would be dense here).
 */
const ARGS: Record<string, Record<string, unknown>> = { blockSparse: { layout: { ...DEFAULT_LAYOUT } } };

/** Every mixer of the library's registry as it decodes by default, then ExpressiveAttention's recurrent decode. */
const MIXERS: readonly GenerationMixer[] = [
  ...libraryMixers.map((m): GenerationMixer => ({
    name: m.name === 'expressiveAttention' ? 'expressiveAttention (cache)' : m.name,
    mixer: m.name, mixerArgs: ARGS[m.name], kind: m.decode === 'cache' ? 'attention' : 'recurrent',
  })),
  { name: 'expressiveAttention (recurrent)', mixer: 'expressiveAttention', mixerArgs: { decode: 'recurrent' }, kind: 'recurrent' },
];

/** One mixer at one context. Timings are absent where the context was skipped or validation failed. */
export interface StepResult {
  mixer: string;
  t: number;
  /** A step with the preallocated cache, written in place (recurrent mixers: their fixed-size state). */
  inPlace?: Timing;
  /** A step with today's concatenating cache (attention mixers). */
  concatenating?: Timing;
  /** The attention op alone, one query over t + 1 keys, as one block runs it, per run of a sample's back-to-back runs (attention mixers). */
  read?: Timing;
  /** In-place step less `blocks` reads, ms. */
  beyondReadMs?: number;
  /** In-place step logits against concatenating step logits at t (attention mixers). */
  validation?: Validation;
  skipped?: string;
}

/** Prefill of {@link PREFILL_TOKENS} against stepping them, for one mixer. */
export interface PrefillResult {
  mixer: string;
  prefill?: Timing;
  /** The sampled steps: the position each was timed from, and its timing. */
  steps?: Array<{ position: number } & Timing>;
  /** Stepping all the tokens, estimated: 256 × the sum of the four quarters' median steps, ms. */
  steppingMs?: number;
  /** steppingMs / prefill median. */
  speedup?: number;
  skipped?: string;
}

/** The section's results, written into the bench's JSON. */
export interface GenerationReport {
  model: typeof CHAR_LM & { parameters: Record<string, number>; blockSparseLayout: typeof DEFAULT_LAYOUT };
  contexts: readonly number[];
  prefillTokens: number;
  budget: Budget;
  steps: StepResult[];
  prefill: PrefillResult[];
  targets: {
    /** `unjudged`: the mixers whose beyond-read time at 1024 was 0 or less (a ratio to it says nothing). */
    attention: { at: number; ratio: number; met: boolean | undefined; ratios: Record<string, number>; unjudged: string[] };
    prefill: { speedup: number; met: boolean | undefined };
    /** `ratios`: each mixer's step at the longest context that ran over its step at 1024. */
    recurrent: { ratio: number; met: boolean | undefined; ratios: Record<string, number> };
  };
  minutes: number;
}

/** What the section needs of the bench. */
export interface GenerationOptions {
  quick: boolean;
  /** The section's deadline, in minutes from its start. */
  minutes: number;
  seed: number;
  /** Relative agreement of the two caches' logits. */
  tolerance: number;
  log: (line: string) => void;
}

/** The attention layer's sizes: H, Hkv and K. */
function cacheShape(layer: tf.layers.Layer): { Hkv: number; K: number; H: number } {
  const a = layer as FlashStyleTiledAttention;
  return { H: a.numHeads, Hkv: a.numKvHeads, K: a.headDim ?? CHAR_LM.width / a.numHeads };
}

/**
 * One block's decode state at position t (batch 1): for a cache, keys and values `kv`
 * `[1, t, Hkv, K]` in `slots` preallocated slots (zeros past t), or concatenating (`slots`
 * undefined, the tensors themselves); for a recurrent mixer its `initState` with the position
 * set to t (the state's size does not depend on t, nor a step's arithmetic on its values).
 */
function stateAt(layer: tf.layers.Layer, t: number, kv: [tf.Tensor4D, tf.Tensor4D] | null, slots?: number): tf.TensorContainer {
  const positions = tf.tensor1d([t], 'int32');
  if (!hasKVCache(layer)) {
    const state = (layer as unknown as { initState(b: number): { positions: tf.Tensor1D } }).initState(1);
    state.positions.dispose();
    return { ...state, positions };
  }
  const [k, v] = kv!;
  const [keys, values] = slots === undefined ? [k.clone(), v.clone()] : tf.tidy(() => {
    const room = tf.zeros([1, slots - t, k.shape[2], k.shape[3]]);
    return [tf.concat([k, room], 1), tf.concat([v, room], 1)];
  });
  const state: KVCacheState = {
    keys: keys as tf.Tensor4D, values: values as tf.Tensor4D, positions, capacity: slots, ring: false, counted: { rows: [t], max: t },
  };
  return state;
}

/** A decoder of `model` whose every block holds `stateAt(…)` at t; `kv` per block for the caches. */
function decoderAt(model: tf.LayersModel, t: number, kv: Array<[tf.Tensor4D, tf.Tensor4D]> | null, slots?: number): Decoder {
  const decoder = new Decoder(model, 1);
  decoder.setStates(decoder.mixers.map((m, i) => stateAt(m, t, kv && kv[i]!, slots)), [t]);
  return decoder;
}

/** Random keys and values `[1, t, Hkv, K]` for each block of `model`'s attention mixer. */
function randomCaches(decoder: Decoder, t: number, seed: number): Array<[tf.Tensor4D, tf.Tensor4D]> {
  return decoder.mixers.map((m, i) => {
    const { Hkv, K } = cacheShape(m);
    return [0, 1].map((j) => tf.randomNormal([1, t, Hkv, K], 0, 1, 'float32', seed + 2 * i + j)) as [tf.Tensor4D, tf.Tensor4D];
  });
}

/**
 * The attention read of one block at t, as the layer runs it: one query over t + 1 keys
 * (the cached ones and its own), causal; BlockSparse over the keys its layout shows, listed on
 * the GPU and read where they lie.
 * Returns the run and the tensors to dispose.
 */
function readOf(layer: tf.layers.Layer, t: number, seed: number): { run: () => tf.Tensor; owned: tf.Tensor[] } {
  const { H, Hkv, K } = cacheShape(layer);
  const q = tf.randomNormal([1, 1, H, K], 0, 1, 'float32', seed) as tf.Tensor4D;
  const k = tf.randomNormal([1, t + 1, Hkv, K], 0, 1, 'float32', seed + 1) as tf.Tensor4D;
  const v = tf.randomNormal([1, t + 1, Hkv, K], 0, 1, 'float32', seed + 2) as tf.Tensor4D;
  if (layer instanceof ExpressiveAttention) {
    return { run: () => ops.expressiveAttention(q, k, v, { causal: true, epsilon: layer.epsilon }), owned: [q, k, v] };
  }
  if (layer instanceof BlockSparse) {
    const position = tf.tensor1d([t], 'int32');
    const M = visibleKeyCount(t, layer.layout);
    const run = () => tf.tidy(() => flashAttentionOverList(q, k, v, stepKeysKernel(position, layer.layout, M, t + 1)));
    return { run, owned: [q, k, v, position] };
  }
  if (!(layer instanceof FlashStyleTiledAttention)) throw new Error(`bench: no attention read for ${layer.getClassName()}.`);
  return { run: () => ops.flashAttention(q, k, v, { causal: true }), owned: [q, k, v] };
}

/** One fenced run of `fn` (its output disposed), in ms. */
async function once(backend: WebGPUBackend, fn: () => tf.TensorContainer): Promise<number> {
  await fence(backend);
  const start = performance.now();
  tf.dispose(fn());
  await fence(backend);
  return performance.now() - start;
}

/** The section: prefill against stepping for every mixer, then the step at each context. */
export async function measureGeneration(backend: WebGPUBackend, o: GenerationOptions): Promise<GenerationReport> {
  const started = performance.now();
  const deadline = started + o.minutes * 60_000;
  const contexts = o.quick ? GENERATION_CONTEXTS.quick : GENERATION_CONTEXTS.full;
  const budget = o.quick ? QUICK_BUDGET : BUDGET;
  const random = mulberry32(o.seed);
  const token = () => Math.floor(random() * CHAR_LM.vocab);
  // the positional table covers the longest context and the runs past it
  const context = Math.max(...contexts, PREFILL_TOKENS) + MARGIN;
  const models = MIXERS.map((m) => withSeededRandom(o.seed, () =>
    buildModel({ ...CHAR_LM, mixer: m.mixer, context, mixerArgs: m.mixerArgs })));
  const parameters = Object.fromEntries(MIXERS.map((m, i) => [m.name, countParameters(models[i]!)]));
  const steps: StepResult[] = [];
  const prefill: PrefillResult[] = [];
  try {
    for (const [i, m] of MIXERS.entries()) prefill.push(await measurePrefill(backend, m, models[i]!, budget, token, o, deadline));
    for (const [i, m] of MIXERS.entries()) {
      if (m.kind === 'recurrent') steps.push(...await measureRecurrent(backend, m, models[i]!, contexts, budget, token, o.log));
    }
    // the attention mixers context by context, so that the deadline cuts the longest contexts of every mixer
    const spent = new Map<string, { t: number; ms: number }>();
    for (const t of contexts) {
      for (const [i, m] of MIXERS.entries()) {
        if (m.kind !== 'attention') continue;
        const last = spent.get(m.name);
        // the previous context's wall time, in proportion to t (the cache's copy and read)
        const predicted = last && last.ms * (t / last.t);
        if (predicted !== undefined && performance.now() + predicted > deadline) {
          const skipped = `skipped: over time budget (predicted ~${seconds(predicted)} s; the section would end at ` +
            `~${((performance.now() + predicted - started) / 60_000).toFixed(0)} min > ${o.minutes})`;
          o.log(`generation ${m.name} t=${t}: ${skipped}`);
          steps.push({ mixer: m.name, t, skipped });
          continue;
        }
        const start = performance.now();
        steps.push(await measureAttentionStep(backend, m, models[i]!, t, budget, token, o));
        spent.set(m.name, { t, ms: performance.now() - start });
      }
    }
  } finally {
    for (const model of models) model.dispose();
  }
  steps.sort((a, b) => MIXERS.findIndex((m) => m.name === a.mixer) - MIXERS.findIndex((m) => m.name === b.mixer) || a.t - b.t);
  return {
    model: { ...CHAR_LM, parameters, blockSparseLayout: { ...DEFAULT_LAYOUT } },
    contexts, prefillTokens: PREFILL_TOKENS, budget, steps, prefill, targets: generationTargets(steps, prefill),
    minutes: (performance.now() - started) / 60_000,
  };
}

/** The targets, from the medians; `met` undefined where nothing judged ran. */
function generationTargets(steps: StepResult[], prefill: PrefillResult[]): GenerationReport['targets'] {
  const at = (mixer: string, t: number) => steps.find((s) => s.mixer === mixer && s.t === t);
  const attention: Record<string, number> = {};
  const unjudged: string[] = [];
  const recurrent: Record<string, number> = {};
  for (const m of MIXERS) {
    const base = at(m.name, 1024);
    if (m.kind === 'attention') {
      const far = at(m.name, TARGETS.attentionAt);
      // a ratio to a base of 0 or less says nothing: that mixer is not judged
      if (base?.beyondReadMs !== undefined && far?.beyondReadMs !== undefined) {
        if (base.beyondReadMs > 0) attention[m.name] = far.beyondReadMs / base.beyondReadMs;
        else unjudged.push(m.name);
      }
    } else if (base?.inPlace) {
      // a cost that grows with t shows most at the longest context; the ones between are in the table
      const far = steps.filter((s) => s.mixer === m.name && s.inPlace).at(-1)!;
      recurrent[m.name] = far.inPlace!.medianMs / base.inPlace.medianMs;
    }
  }
  const all = (r: Record<string, number>, ok: (x: number) => boolean) => Object.keys(r).length ? Object.values(r).every(ok) : undefined;
  const speedups = prefill.filter((p) => p.speedup !== undefined).map((p) => p.speedup!);
  return {
    attention: {
      at: TARGETS.attentionAt, ratio: TARGETS.attentionRatio, met: all(attention, (x) => x <= TARGETS.attentionRatio), ratios: attention, unjudged,
    },
    prefill: { speedup: TARGETS.prefillSpeedup, met: speedups.length ? speedups.every((s) => s >= TARGETS.prefillSpeedup) : undefined },
    recurrent: { ratio: TARGETS.recurrentRatio, met: all(recurrent, (x) => x <= TARGETS.recurrentRatio), ratios: recurrent },
  };
}

/**
 * {@link PREFILL_TOKENS} random tokens through one prefill (a fresh decoder each run, caches
 * preallocated for the prompt) against single steps from states at the midpoints of the
 * prompt's four quarters (preallocated caches for the attention mixers), all interleaved.
 */
async function measurePrefill(
  backend: WebGPUBackend, m: GenerationMixer, model: tf.LayersModel, budget: Budget, token: () => number, o: GenerationOptions,
  deadline: number,
): Promise<PrefillResult> {
  if (performance.now() > deadline) return { mixer: m.name, skipped: 'skipped: the section\'s deadline has passed' };
  const prompt = Array.from({ length: PREFILL_TOKENS }, token);
  const quarter = PREFILL_TOKENS / 4;
  const positions = [0, 1, 2, 3].map((q) => q * quarter + quarter / 2 - MARGIN / 2);
  const probe = new Decoder(model, 1);
  const caches = m.kind === 'attention' ? positions.map((p, q) => randomCaches(probe, p, o.seed + 10 * q)) : positions.map(() => null);
  probe.dispose();
  const decoders = positions.map((p, q) => decoderAt(model, p, caches[q]!, p + MARGIN));
  tf.dispose(caches.flatMap((c) => c ?? []).flat());
  try {
    const runs: Record<string, () => tf.TensorContainer> = {
      prefill: () => {
        const decoder = new Decoder(model, 1, { capacity: PREFILL_TOKENS });
        try {
          return decoder.prefill([prompt]);
        } finally {
          decoder.dispose();
        }
      },
    };
    decoders.forEach((d, q) => { runs[`step${q}`] = () => d.next([token()]); });
    for (const run of Object.values(runs)) await once(backend, run);
    const timings = await timeInterleaved(backend, runs, budget);
    const sampled = positions.map((position, q) => ({ position, ...timings[`step${q}`]! }));
    const steppingMs = quarter * sampled.reduce((sum, s) => sum + s.medianMs, 0);
    const result = { mixer: m.name, prefill: timings.prefill!, steps: sampled, steppingMs, speedup: steppingMs / timings.prefill!.medianMs };
    o.log(`generation ${m.name} prefill ${PREFILL_TOKENS}: ${result.prefill.medianMs.toFixed(0)} ms; stepping ~${steppingMs.toFixed(0)} ms ` +
      `(steps ${sampled.map((s) => s.medianMs.toFixed(1)).join(', ')} ms); ${result.speedup.toFixed(1)}×`);
    return result;
  } finally {
    for (const d of decoders) d.dispose();
  }
}

/** A recurrent mixer's step at every context, all interleaved: its state has one size at every t. */
async function measureRecurrent(
  backend: WebGPUBackend, m: GenerationMixer, model: tf.LayersModel, contexts: readonly number[], budget: Budget, token: () => number,
  log: (line: string) => void,
): Promise<StepResult[]> {
  const decoders = contexts.map((t) => decoderAt(model, t, null));
  try {
    const runs = Object.fromEntries(contexts.map((t, i) => [`t${t}`, () => decoders[i]!.next([token()])]));
    for (const run of Object.values(runs)) await once(backend, run);
    const timings = await timeInterleaved(backend, runs, budget);
    log(`generation ${m.name}: ${contexts.map((t) => `t=${t} ${timings[`t${t}`]!.medianMs.toFixed(1)} ms`).join(', ')}`);
    return contexts.map((t) => ({ mixer: m.name, t, inPlace: timings[`t${t}`]! }));
  } finally {
    for (const d of decoders) d.dispose();
  }
}

/**
 * An attention mixer's step at t: the same random keys and values in a preallocated cache
 * (t + {@link MARGIN} slots) and in a concatenating one (t slots); the two first steps' logits
 * must agree; then both steps and the read alone are timed interleaved.
 */
async function measureAttentionStep(
  backend: WebGPUBackend, m: GenerationMixer, model: tf.LayersModel, t: number, budget: Budget, token: () => number,
  o: GenerationOptions,
): Promise<StepResult> {
  const probe = new Decoder(model, 1);
  const kv = randomCaches(probe, t, o.seed + t);
  const read = readOf(probe.mixers[0]!, t, o.seed + t + 7);
  probe.dispose();
  const inPlace = decoderAt(model, t, kv, t + MARGIN);
  const concatenating = decoderAt(model, t, kv, undefined);
  tf.dispose(kv.flat());
  const result: StepResult = { mixer: m.name, t };
  try {
    const first = token();
    const [a, b] = [inPlace.next([first]), concatenating.next([first])];
    const [x, y] = [await a.data(), await b.data()];
    tf.dispose([a, b]);
    result.validation = agreement([[x, y]], o.tolerance);
    if (!result.validation.ok) {
      console.error(`\n[bench] !!! VALIDATION FAILED: generation ${m.name} t=${t}: in-place against concatenating logits, ` +
        `relative ${result.validation.relative} (tolerance ${o.tolerance}). Not timed.\n`);
      return result;
    }
    await once(backend, read.run);
    const timings = await timeInterleaved(backend, {
      inPlace: () => inPlace.next([token()]),
      concatenating: () => concatenating.next([token()]),
      read: read.run,
    }, budget, { read: { ...budget, ...READ_SAMPLE } });
    Object.assign(result, timings);
    result.beyondReadMs = timings.inPlace.medianMs - CHAR_LM.blocks * timings.read.medianMs;
    o.log(`generation ${m.name} t=${t}: in-place ${timings.inPlace.medianMs.toFixed(1)} ms, concatenating ` +
      `${timings.concatenating.medianMs.toFixed(1)} ms, read ${timings.read.medianMs.toFixed(1)} ms ` +
      `(relative ${result.validation.relative.toExponential(1)})`);
    return result;
  } finally {
    inPlace.dispose();
    concatenating.dispose();
    tf.dispose(read.owned);
  }
}

const ms = (v: number | undefined) => v === undefined ? '–' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
const verdict = (met: boolean | undefined, why: string) => met === undefined ? `not judged (${why})` : met ? 'met' : 'not met';

/** The section as markdown: the steps by mixer and context, the prefills, the targets. */
export function generationMarkdown(r: GenerationReport): string {
  const { vocab, width, blocks, heads, mlpRatio, blockSparseLayout: layout } = r.model;
  const context = Math.max(...r.contexts, r.prefillTokens) + MARGIN;
  const base = new Map(r.steps.filter((s) => s.t === 1024).map((s) => [s.mixer, s]));
  const stepRows = r.steps.map((s) => {
    if (s.skipped) return `| ${s.mixer} | ${s.t} | ${s.skipped} | – | – | – | – | – | – | – | – |`;
    const b = base.get(s.mixer);
    const vs1k = s.beyondReadMs !== undefined && b?.beyondReadMs !== undefined ? (b.beyondReadMs > 0 ? (s.beyondReadMs / b.beyondReadMs).toFixed(2) : '–')
      : s.concatenating === undefined && s.inPlace && b?.inPlace ? (s.inPlace.medianMs / b.inPlace.medianMs).toFixed(2) : '–';
    const checked = s.validation ? `${s.validation.ok ? 'ok' : 'FAILED'} (${s.validation.relative.toExponential(1)})` : '–';
    const iters = [s.inPlace, s.concatenating, s.read].filter((x) => x).map((x) => x!.iterations).join('/');
    const copies = s.inPlace && s.concatenating ? `${(s.concatenating.medianMs / s.inPlace.medianMs).toFixed(2)}` : '–';
    return `| ${s.mixer} | ${s.t} | ${ms(s.inPlace?.medianMs)} | ${ms(s.inPlace?.recordMs)} | ${ms(s.concatenating?.medianMs)} | ${copies} | ${ms(s.read?.medianMs)} | ` +
      `${ms(s.beyondReadMs)} | ${vs1k} | ${checked} | ${iters} |`;
  });
  const prefillRows = r.prefill.map((p) => p.skipped ? `| ${p.mixer} | ${p.skipped} | – | – | – | – |`
    : `| ${p.mixer} | ${ms(p.prefill!.medianMs)} | ${p.steps!.map((s) => `${s.position}: ${ms(s.medianMs)}`).join(', ')} | ` +
      `${ms(p.steppingMs)} | ${p.speedup!.toFixed(1)}× | ${p.prefill!.iterations}/${p.steps!.map((s) => s.iterations).join('/')} |`);
  const t = r.targets;
  const ratios = (x: Record<string, number>) => Object.entries(x).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ') || 'none';
  return [
    '## Generation (char-lm model, batch 1)',
    '',
    `The char-lm example's model: V = ${vocab}, D = ${width}, ${blocks} blocks, ${heads} heads (K = ${width / heads}), MLP ${mlpRatio}·D; ` +
      `parameters ${Object.entries(r.model.parameters).map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`).join(', ')}, of which ` +
      `${(context * width).toLocaleString('en-US')} are the learned positional table (${context} positions: the longest context and ` +
      'the runs past it). ' +
      `blockSparse uses the library's default layout (blocks of ${layout.blockSize}, ${layout.localBlocks} local, ${layout.globalBlocks} global). ` +
      'A step is `Decoder.next` (examples/char-lm/model.ts): embeddings, every block and the head for one token.',
    '',
    `**Time per token at context t.** The state at t is built, not prefilled: attention mixers hold random keys and values at ` +
      `positions 0…t − 1 in a preallocated cache of t + ${MARGIN} slots written in place (\`initState(1, { capacity })\`) and in ` +
      `today's concatenating cache of t slots (every step copies it); recurrent mixers hold their fixed-size state at position t. ` +
      `Read = the attention op alone, one query over t + 1 keys as one block runs it (blockSparse: the list of the keys its layout ` +
      `shows, then the split-K decode over them), per run of runs back to back that fill ${READ_SAMPLE.minSampleMs} ms a sample and wait for the GPU once, ` +
      `as a step waits once for all its launches. Beyond read = in-place step − ${blocks} × read. The in-place, concatenating and read runs are ` +
      `interleaved sample by sample; the recurrent mixers' contexts are interleaved with each other. Validation: the first step's ` +
      'logits of the two caches (same keys and values) agree (relative max difference). Each timed run advances a state by one token.',
    '',
    '| mixer | t | in-place ms | of it recording ms | concatenating ms | concatenating ÷ in-place | read ms | beyond read ms | ÷ 1k | validation | iters |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...stepRows,
    '',
    '"of it recording": the median time a step took before its fence, the CPU\'s recording of its launches (where the GPU ' +
      'keeps up, a step is its recording). "÷ 1k": beyond read over its value at t = 1024 (attention; – where that is 0 or ' +
      'less); the step over its value at 1024 (recurrent). ' +
      'iters: the timed runs of in-place/concatenating/read.',
    '',
    `**Prefill against stepping, ${r.prefillTokens} tokens.** Prefill: \`Decoder.prefill\` of ${r.prefillTokens} random tokens from a ` +
      `fresh decoder (caches preallocated for them). Stepping: not run whole; one step is timed from a state at the midpoint of each ` +
      `quarter of the prompt (built as above, in-place caches), and stepping all ${r.prefillTokens} tokens is estimated as ` +
      `${r.prefillTokens / 4} × the sum of the four (exact for a step cost linear in the position). All five interleaved.`,
    '',
    '| mixer | prefill ms | step ms at position | stepping ms (estimated) | stepping ÷ prefill | iters |',
    '| --- | --- | --- | --- | --- | --- |',
    ...prefillRows,
    '',
    'Targets:',
    `- attention: time per token at ${t.attention.at}, beyond the read, within ${t.attention.ratio}× of its time at 1024 (in-place ` +
      `cache): **${verdict(t.attention.met, `t = ${t.attention.at} did not run`)}** (${ratios(t.attention.ratios)})` +
      (t.attention.unjudged.length ? `; not judged, their time beyond the read at 1024 not above 0: ${t.attention.unjudged.join(', ')}` : ''),
    `- prefill of ${r.prefillTokens} tokens at least ${t.prefill.speedup}× faster than stepping them: ` +
      `**${verdict(t.prefill.met, 'no prefill ran')}**`,
    `- recurrent mixers flat in t (the step at the longest context, ${Math.max(...r.contexts)}, within ${t.recurrent.ratio}× of ` +
      `its time at 1024; a cost growing with t shows most there): ` +
      `**${verdict(t.recurrent.met, 'no recurrent mixer ran')}** (${ratios(t.recurrent.ratios)})`,
    '',
    `Section: ${r.minutes.toFixed(1)} min; sampling ${r.budget.minIterations}–${r.budget.maxIterations} runs a contender, ` +
      `${r.budget.budgetMs} ms each.`,
  ].join('\n');
}
