// examples/char-lm: step-decoded logits against the full forward, generate, save/load, leaks
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import {
  Decoder, MIXERS, Vocabulary, buildModel, generate, lossOf, registerFileIO, withSeededRandom, type MixerName,
} from '../examples/char-lm/model.js';
import { EPS32, describeOn, expectNoLeaks, maxAbs, maxAbsDiff } from './helpers.js';

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
