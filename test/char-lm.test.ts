// examples/char-lm: step-decoded logits against the full forward, generate, save/load, packed sequences, leaks
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import {
  Decoder, MIXERS, Vocabulary, buildModel, generate, generateBatch, lossOf, packedLogits, packedLossOf, registerFileIO,
  segmentPositions, withSeededRandom, type MixerName,
} from '../examples/char-lm/model.js';
import { packDocuments, packedBatch, splitDocuments, trainModel } from '../examples/char-lm/training.js';
import { EPS32, REFERENCE_BACKENDS, describeOn, expectNoLeaks, maxAbs, maxAbsDiff, mulberry32 } from './helpers.js';

const TEXT = 'To be, or not to be, that is the question:\nWhether \'tis nobler in the mind to suffer\n';
const vocab = Vocabulary.fromText(TEXT);
// context 12 with blockSparse's blockSize 1 (12 / 8 rounds down): its sparse layout is active
const CONFIG = { vocab: vocab.size, context: 12, width: 16, blocks: 2, heads: 2, mlpRatio: 4 };
const T = CONFIG.context;
const prompt = Array.from(vocab.encode(TEXT.slice(0, T)));

function tinyModel(mixer: MixerName, seed = 7): tf.LayersModel {
  return withSeededRandom(seed, () => buildModel({ ...CONFIG, mixer }));
}

/** Step-decoded logits `[T, V]` of `ids`, one Decoder.next per token. */
function decodeAll(model: tf.LayersModel, ids: number[]): tf.Tensor2D {
  const decoder = new Decoder(model, 1);
  try {
    return tf.tidy(() => tf.concat(ids.map((id) => decoder.next([id]))) as tf.Tensor2D);
  } finally {
    decoder.dispose();
  }
}

/** The full forward's logits `[T, V]` of `ids`. */
function forwardAll(model: tf.LayersModel, ids: number[]): tf.Tensor2D {
  return tf.tidy(() => (model.predict(tf.tensor2d([ids], [1, ids.length], 'int32')) as tf.Tensor3D).squeeze([0]) as tf.Tensor2D);
}

/**
 * Derived tolerance: step decoding computes the same function as the forward with float32
 * reductions in another order (one token's matMuls and sums instead of the whole sequence's,
 * a running sum or state instead of a cumsum or scan). The classical bound on such a
 * reordering is γ_n = n·ε32 relative to the sum of |terms| for a sum of n terms; n is the
 * longest reduction in the model (the MLP's mlpRatio·D hidden units), and the 2·blocks + 2
 * stages (mixer and MLP per block, embeddings, head) each add one such error, propagated at
 * the logits' scale. A wrong position, a stale state or a missing term is O(0.1) here.
 */
function tolerance(logits: ArrayLike<number>): number {
  const n = CONFIG.mlpRatio * CONFIG.width;
  return (2 * CONFIG.blocks + 2) * n * EPS32 * Math.max(1, maxAbs(logits));
}

describeOn('cpu', 'examples/char-lm', () => {
  for (const mixer of MIXERS) {
    it(`${mixer}: step-decoded logits equal the full forward's, position by position`, async () => {
      const model = tinyModel(mixer);
      await expectNoLeaks(async () => {
        const forward = forwardAll(model, prompt);
        const stepped = decodeAll(model, prompt);
        const [f, s] = [await forward.data(), await stepped.data()];
        tf.dispose([forward, stepped]);
        expect(f.length).toBe(T * vocab.size);
        expect(maxAbsDiff(s, f), `${mixer}: max |step − forward|`).toBeLessThanOrEqual(tolerance(f));
      });
      model.dispose();
    });
  }

  it('greedy generate() continues as the full forward\'s argmax, and leaks nothing', async () => {
    const model = tinyModel('selectiveSSM');
    const start = prompt.slice(0, 3);
    const n = T - start.length;
    const ids = await expectNoLeaks(() => generate(model, start, n, { temperature: 0 }));
    expect(ids).toHaveLength(n);
    const logits = forwardAll(model, [...start, ...ids].slice(0, T - 1));
    const rows = (await logits.array()) as number[][];
    logits.dispose();
    for (let i = 0; i < n; i++) {
      const row = rows[start.length - 1 + i]!;
      const sorted = [...row].sort((a, b) => b - a);
      // a near-tie may legitimately resolve either way under rounding
      if (sorted[0]! - sorted[1]! > tolerance(row)) expect(ids[i]).toBe(row.indexOf(sorted[0]!));
    }
    model.dispose();
  });

  it('generate() runs past the context by restarting from the last half context, seeded', async () => {
    const model = tinyModel('causalGeneration');
    const a = await expectNoLeaks(() => generate(model, prompt.slice(0, 2), 3 * T, { temperature: 1, seed: 3 }));
    const b = await generate(model, prompt.slice(0, 2), 3 * T, { temperature: 1, seed: 3 });
    expect(a).toHaveLength(3 * T);
    expect(a.every((id) => Number.isInteger(id) && id >= 0 && id < vocab.size)).toBe(true);
    expect(b).toEqual(a);
    model.dispose();
  });

  it('model.save("file://…") and tf.loadLayersModel round-trip: same logits, same loss, same decode', async () => {
    registerFileIO();
    const dir = mkdtempSync(join(tmpdir(), 'char-lm-test-'));
    try {
      for (const mixer of ['selectiveSSM', 'blockSparse'] as const) {
        const model = tinyModel(mixer);
        await model.save(`file://${join(dir, mixer)}`);
        const loaded = await tf.loadLayersModel(`file://${join(dir, mixer, 'model.json')}`);
        expect(loaded.layers.map((l) => l.getClassName())).toEqual(model.layers.map((l) => l.getClassName()));
        const x = tf.tensor2d([prompt.slice(0, T - 1)], [1, T - 1], 'int32');
        const y = tf.tensor2d([prompt.slice(1, T)], [1, T - 1], 'int32');
        const [l0, l1] = [lossOf(model, x, y), lossOf(loaded, x, y)];
        expect(await l1.data()).toEqual(await l0.data());
        const [d0, d1] = [decodeAll(model, prompt), decodeAll(loaded, prompt)];
        expect(await d1.data()).toEqual(await d0.data());
        tf.dispose([x, y, l0, l1, d0, d1]);
        model.dispose();
        loaded.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Decoder refuses a token past the positional table and a wrong batch', () => {
    const model = tinyModel('averageContext');
    const decoder = new Decoder(model, 1);
    expect(() => decoder.next([0, 1])).toThrow(/expected 1 token ids/);
    for (let i = 0; i < T; i++) decoder.next([0]).dispose();
    expect(() => decoder.next([0])).toThrow(/positional table holds 12 positions/);
    decoder.dispose();
    model.dispose();
  });
});

// ───────────────────────────── packed sequences ─────────────────────────────

// on wasm too: tfjs-wasm's OneHot ignores its dtype, which the embeddings' one-hot rows route around
for (const backend of REFERENCE_BACKENDS) describeOn(backend, 'examples/char-lm packed sequences', () => {
  it('splitDocuments cuts after each blank line, keeping every token in one document', () => {
    const text = 'A:\nhi\n\nB:\nyo\n\n\nC:\nx';
    const v = Vocabulary.fromText(text);
    const docs = splitDocuments(v.encode(text), v.encode('\n')[0]!);
    expect(docs.map((d) => v.decode(d))).toEqual(['A:\nhi\n\n', 'B:\nyo\n\n\n', 'C:\nx']);
  });

  it('packDocuments: every token in exactly one row, segment ids change exactly at piece starts, no target across a boundary', () => {
    const T = 8;
    const random = mulberry32(5);
    // documents of distinct consecutive ids 1, 2, …: lengths around T, some longer than 2T, one exactly T
    const lengths = [...Array.from({ length: 40 }, () => 1 + Math.floor(random() * 2.5 * T)), T];
    const docs: Int32Array[] = [];
    let next = 1;
    for (const n of lengths) {
      docs.push(Int32Array.from({ length: n }, () => next++));
    }
    const total = next - 1;
    const docEnd = new Map<number, number>();
    const pieceStarts = new Set<number>();
    for (const d of docs) {
      for (const id of d) docEnd.set(id, d[d.length - 1]!);
      for (let k = 0; k < d.length; k += T) pieceStarts.add(d[k]!);
    }
    const p = packDocuments(docs, T);
    expect(p.tokens).toHaveLength(p.rows * T);
    const seen: number[] = [];
    for (let r = 0; r < p.rows; r++) {
      const at = (a: Int32Array, t: number) => a[r * T + t]!;
      const filled = p.filled[r]!;
      expect(filled).toBeGreaterThan(0);
      for (let t = 0; t < T; t++) {
        if (t >= filled) {
          // padding: the row's end, its own segment, no target
          expect(at(p.segments, t)).toBe(at(p.segments, filled - 1) + 1);
          expect(at(p.targets, t)).toBe(-1);
          continue;
        }
        const id = at(p.tokens, t);
        seen.push(id);
        const starts = t === 0 || at(p.segments, t) !== at(p.segments, t - 1);
        expect(starts, `row ${r}, t ${t}: a new segment exactly at a piece start`).toBe(pieceStarts.has(id));
        if (!starts) expect(id).toBe(at(p.tokens, t - 1) + 1);
        // the target is the same document's next token, also across a cut; none at a document's end
        expect(at(p.targets, t)).toBe(id === docEnd.get(id) ? -1 : id + 1);
      }
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // first fit keeps padding small: rows hold at least the tokens of ⌈total / T⌉ full rows, with slack
    expect(p.rows).toBeLessThan(1.25 * Math.ceil(total / T));
  });

  it('segmentPositions restarts at every segment', async () => {
    const ids = tf.tensor2d([[0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 1, 1]], [2, 6], 'int32');
    const positions = segmentPositions(ids);
    expect(await positions.array()).toEqual([[0, 1, 2, 0, 1, 0], [0, 0, 1, 2, 3, 4]]);
    tf.dispose([ids, positions]);
  });

  // three documents filling a row, then a row of one document and padding
  const DOCS = [prompt.slice(0, 5), prompt.slice(5, 9), prompt.slice(9, 12), prompt.slice(2, 9)];
  const packed = packDocuments(DOCS.map((d) => Int32Array.from(d)), T);

  it('packs the test documents as the next tests assume', () => {
    expect(packed.rows).toBe(2);
    expect(Array.from(packed.segments)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
  });

  for (const mixer of ['flashStyleTiledAttention', 'expressiveAttention', 'softmax'] as const) {
    it(`${mixer}: a packed row's logits equal each document's run alone`, async () => {
      const model = tinyModel(mixer);
      await expectNoLeaks(async () => {
        const batch = packedBatch(packed, [0, 1]);
        const logits = packedLogits(model, batch.x, batch.segmentIds!);
        const rows = (await logits.array()) as number[][][];
        tf.dispose([batch.x, batch.y, batch.segmentIds!, logits]);
        const starts = [[0, 0], [0, 5], [0, 9], [1, 0]];
        for (const [k, doc] of DOCS.entries()) {
          const alone = forwardAll(model, doc);
          const a = await alone.data();
          alone.dispose();
          const [r, t0] = starts[k]!;
          const got = rows[r]!.slice(t0, t0 + doc.length).flat();
          expect(maxAbsDiff(got, a), `${mixer}: document ${k}: max |packed − alone|`).toBeLessThanOrEqual(tolerance(a));
        }
      });
      model.dispose();
    });
  }

  it('blockSparse: no document sees another (its layout is anchored at the row, so only the first equals its run alone)', async () => {
    const model = tinyModel('blockSparse');
    const row = DOCS.slice(0, 3).flat();
    const ids = tf.tensor2d([[0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]], [1, T], 'int32');
    const run = async (tokens: number[]) => {
      const x = tf.tensor2d([tokens], [1, T], 'int32');
      const logits = packedLogits(model, x, ids);
      const out = ((await logits.array()) as number[][][])[0]!;
      tf.dispose([x, logits]);
      return out;
    };
    const base = await run(row);
    // other tokens in documents 0 and 2: document 1's logits stay
    const changed = await run(row.map((id, t) => (t >= 5 && t < 9 ? id : (id + 1) % vocab.size)));
    expect(maxAbsDiff(changed.slice(5, 9).flat(), base.slice(5, 9).flat())).toBe(0);
    expect(maxAbsDiff(changed.slice(0, 5).flat(), base.slice(0, 5).flat())).toBeGreaterThan(1e-3);
    const alone = forwardAll(model, DOCS[0]!);
    const a = await alone.data();
    alone.dispose();
    expect(maxAbsDiff(base.slice(0, 5).flat(), a)).toBeLessThanOrEqual(tolerance(a));
    ids.dispose();
    model.dispose();
  });

  it('the packed loss is the mean over the documents\' own next-token losses, none across a boundary', async () => {
    const model = tinyModel('flashStyleTiledAttention');
    const batch = packedBatch(packed, [0, 1]);
    const loss = packedLossOf(model, batch.x, batch.y, batch.segmentIds!);
    const got = (await loss.data())[0]!;
    tf.dispose([batch.x, batch.y, batch.segmentIds!, loss]);
    // float64 cross-entropy of each document alone: token k predicts token k + 1
    let sum = 0;
    let count = 0;
    for (const doc of DOCS) {
      const alone = forwardAll(model, doc);
      const rows = (await alone.array()) as number[][];
      alone.dispose();
      for (let k = 0; k + 1 < doc.length; k++) {
        const row = rows[k]!;
        const max = Math.max(...row);
        sum += max + Math.log(row.reduce((s, l) => s + Math.exp(l - max), 0)) - row[doc[k + 1]!]!;
        count++;
      }
    }
    expect(count).toBe(T + 7 - DOCS.length);
    expect(Math.abs(got - sum / count)).toBeLessThanOrEqual(tolerance([sum / count]));
    model.dispose();
  });

  it('refuses a mixer without segment ids', () => {
    const model = tinyModel('causalGeneration');
    const x = tf.zeros([1, 4], 'int32') as tf.Tensor2D;
    expect(() => packedLogits(model, x, x)).toThrow(/block0_mixer' is .*CausalGeneration, which takes no segmentIds/);
    x.dispose();
    model.dispose();
  });

  it('a short packed training run lowers the validation loss, and leaks nothing', async () => {
    const text = 'A:\nTo be, or not to be.\n\nB:\nThat is the question.\n\nA:\nWhether \'tis nobler in the mind.\n\n'.repeat(8);
    const v = Vocabulary.fromText(text);
    const data = v.encode(text);
    const corpus = { vocab: v, train: data.subarray(0, 600), val: data.subarray(600) };
    const make = () => withSeededRandom(2, () => buildModel({ mixer: 'flashStyleTiledAttention', vocab: v.size, context: 16, width: 16, blocks: 1, heads: 2 }));
    const model = make();
    const untrained = make();
    const result = await expectNoLeaks(() => trainModel(model, corpus, {
      steps: 12, batch: 4, context: 16, lr: 1e-2, clip: 1, seed: 1, evalEvery: 0, evalBatches: 2, packed: true,
    }));
    const before = await result.validate(untrained);
    expect(before).toBeGreaterThan(Math.log(v.size) - 0.5);
    expect(result.valLoss).toBeLessThan(before - 0.5);
    model.dispose();
    untrained.dispose();
  });
});

// ───────────────────────────── batched ragged generation ─────────────────────────────

describeOn('cpu', 'examples/char-lm batched generation', () => {
  // a longer table than CONFIG's, so that the rows' prompts and continuations fit it
  const context = 24;
  const lengths = [1, 9, 4, 14];
  const n = context - Math.max(...lengths) + 1;     // the longest row ends exactly at the table's end
  const prompts = lengths.map((L, b) => Array.from(vocab.encode(TEXT.slice(5 * b, 5 * b + L))));
  const model = (mixer: MixerName) => withSeededRandom(11, () => buildModel({ ...CONFIG, context, mixer }));

  /**
   * Greedy continuation of one row by the full forward (model.predict over the whole sequence
   * at every token), no decode state at all, with each choice's margin: the gap between the
   * best and second-best logits, against {@link tolerance}, the step-versus-forward rounding.
   */
  async function forwardGreedy(m: tf.LayersModel, start: number[], count: number): Promise<{ ids: number[]; clear: boolean[] }> {
    const ids: number[] = [];
    const clear: boolean[] = [];
    for (let i = 0; i < count; i++) {
      const sequence = [...start, ...ids];
      const logits = tf.tidy(() => (m.predict(tf.tensor2d([sequence], [1, sequence.length], 'int32')) as tf.Tensor3D)
        .slice([0, sequence.length - 1, 0], [1, 1, -1]));
      const row = Array.from(await logits.data());
      logits.dispose();
      const sorted = [...row].sort((a, b) => b - a);
      ids.push(row.indexOf(sorted[0]!));
      clear.push(sorted[0]! - sorted[1]! > tolerance(row));
    }
    return { ids, clear };
  }

  /**
   * `got` equals `expected` up to the first near-tie of `clear` (a choice within rounding of
   * another may resolve either way, and every later token then follows from it).
   */
  function expectSameUntilTie(got: number[], expected: number[], clear: boolean[], what: string): void {
    expect(got, what).toHaveLength(expected.length);
    const tie = clear.indexOf(false);
    const upTo = tie < 0 ? expected.length : tie;
    expect(got.slice(0, upTo), what).toEqual(expected.slice(0, upTo));
  }

  for (const mixer of MIXERS) {
    it(`${mixer}: a ragged batch (prefill with lengths, then every row stepped together) gives each row its tokens alone`, async () => {
      const m = model(mixer);
      const caches = ['preallocated', 'concatenating'] as const;
      const batched = await expectNoLeaks(() => Promise.all(caches.map(async (cache) =>
        generateBatch(m, prompts, n, { temperature: 0, cache }))));
      for (const [b, prompt1] of prompts.entries()) {
        // the same row alone: a batch of one, and the forward over the whole sequence at every token
        const alone = await generateBatch(m, [prompt1], n, { temperature: 0 });
        const oracle = await forwardGreedy(m, prompt1, n);
        expectSameUntilTie(alone[0]!, oracle.ids, oracle.clear, `${mixer} row ${b} alone against the forward`);
        for (const [i, cache] of caches.entries()) {
          // the batch runs the same arithmetic per row as the batch of one: exactly the same ids
          expect(batched[i]![b], `${mixer} row ${b} (${cache}) against the row alone`).toEqual(alone[0]);
        }
      }
      m.dispose();
    });
  }

  it('Decoder.prefill continues each row from its own position, and checks its prompts', async () => {
    const m = model('flashStyleTiledAttention');
    // two prefills of a row's halves then a step equal one prefill of the row, then the step
    const row = prompts[3]!;
    const split = new Decoder(m, 2, { capacity: context });
    const whole = new Decoder(m, 2);
    const logits = [
      split.prefill([row.slice(0, 5), row.slice(0, 2)]), split.prefill([row.slice(5), row.slice(2, 3)]),
      whole.prefill([row, row.slice(0, 3)]),
    ];
    expect(split.positions).toEqual([row.length, 3]);
    expect(whole.positions).toEqual(split.positions);
    const [a, b] = [await logits[1]!.data(), await logits[2]!.data()];
    expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(tolerance(b));
    const steps = [split.next([1, 2]), whole.next([1, 2])];
    const [c, d] = [await steps[0]!.data(), await steps[1]!.data()];
    expect(maxAbsDiff(c, d)).toBeLessThanOrEqual(tolerance(d));
    tf.dispose([...logits, ...steps]);
    expect(() => split.prefill([[1]])).toThrow(/expected 2 prompts; received 1/);
    expect(() => split.prefill([[1], []])).toThrow(/prompt 1 is empty/);
    expect(() => split.prefill([new Array(context).fill(1), [1]])).toThrow(/row 0, at position 15, cannot take 24 more tokens/);
    split.dispose();
    whole.dispose();
    await expect(generateBatch(m, [row], context)).rejects.toThrow(/need 37 positions, more than the model's context 24/);
    m.dispose();
  });
});
