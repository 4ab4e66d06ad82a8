// Grouped-query attention (numKvHeads < numHeads) trains on @tensorflow/tfjs-backend-wasm, whose
// missing UnsortedSegmentSum once broke the reference's gradient (it used tf.gather). The inputs
// are one-hot rows rather than an Embedding, whose own gradient needs that kernel too.
import * as tf from '@tensorflow/tfjs';
import { expect, it, vi } from 'vitest';
import { layers } from '../src/index.js';
import { describeOn, mulberry32 } from './helpers.js';

const VOCAB = 12;
const T = 10;

const CASES: Array<[string, () => tf.layers.Layer]> = [
  ['FlashStyleTiledAttention, 4 query heads over 2 kv heads', () => layers.flashStyleTiledAttention({ numHeads: 4, numKvHeads: 2 })],
  ['BlockSparse, 2 query heads over 1 kv head',
    () => layers.blockSparse({ numHeads: 2, numKvHeads: 1, layout: { blockSize: 4, localBlocks: 1, globalBlocks: 1, stride: 2 } })],
  ['ExpressiveAttention, 4 query heads over 1 kv head', () => layers.expressiveAttention({ numHeads: 4, numKvHeads: 1 })],
];

describeOn('wasm', 'grouped-query attention layers', () => {
  for (const [name, makeLayer] of CASES) {
    it(`${name}: a short model.fit lowers the loss`, async () => {
      // next token = (token + 1) mod VOCAB, from one-hot rows
      const seqs = Array.from({ length: 24 }, (_, i) => Array.from({ length: T + 1 }, (__, t) => (i + t) % VOCAB));
      const [xs, ys] = tf.tidy(() => [
        tf.oneHot(tf.tensor2d(seqs.map((s) => s.slice(0, T)), undefined, 'int32'), VOCAB).toFloat(),
        tf.oneHot(tf.tensor2d(seqs.map((s) => s.slice(1)), undefined, 'int32'), VOCAB).toFloat(),
      ]);
      // the layers' initialisers draw from Math.random: seed it while the model is built
      const random = vi.spyOn(Math, 'random').mockImplementation(mulberry32(3));
      let model: tf.Sequential;
      try {
        model = tf.sequential({
          layers: [tf.layers.inputLayer({ inputShape: [T, VOCAB] }), makeLayer(), tf.layers.dense({ units: VOCAB, activation: 'softmax' })],
        });
      } finally {
        random.mockRestore();
      }
      model.compile({ optimizer: tf.train.adam(0.02), loss: 'categoricalCrossentropy' });
      const history = await model.fit(xs!, ys!, { epochs: 12, batchSize: 12, verbose: 0, shuffle: false });
      const losses = history.history.loss as number[];
      expect(losses.every(Number.isFinite), `losses ${losses.join(', ')}`).toBe(true);
      expect(losses[losses.length - 1]!, `losses ${losses.join(', ')}`).toBeLessThan(0.5 * losses[0]!);
      tf.dispose([xs, ys]);
      model.dispose();
    });
  }
});
