// Every decoding layer decodes a ragged batch as each row alone on the reference backends: the
// cases of examples/browser/decoding.ts (shared with the webgl page that `npm run test:browser`
// drives), a prefill, a second one continuing it and two steps, on cpu and on wasm. The check is
// checked first, on a layer made to mix its rows on purpose.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import { DECODING_CASES, decodeCase, type Decoding, type DecodingCase } from '../examples/browser/decoding.js';
import { layers } from '../src/index.js';
import { mixers } from '../src/mixers/registry.js';
import { REFERENCE_BACKENDS, describeOn } from './helpers.js';

type Step = Decoding['step'];

/** CausalGeneration with its step wrapped by `wrap`: a layer made wrong on purpose. */
function wrongStep(name: string, wrap: (step: Step) => Step): DecodingCase {
  return {
    name,
    cache: false,
    make: () => {
      const layer = layers.causalGeneration({ reduce: 'min' });
      layer.step = wrap(layer.step.bind(layer) as Step) as typeof layer.step;
      return layer as typeof layer & Decoding;
    },
  };
}

describeOn('cpu', 'the decoding check', () => {
  it('catches a layer whose batch rows see each other, and one that leaks', async () => {
    // each row's output moved by a tenth of the batch's mean: 0 for a row alone only if it is 0
    const mixed = await decodeCase(wrongStep('rows mixed', (step) => (x, state) => {
      const [y, next] = step(x, state);
      return [tf.tidy(() => tf.add(y, tf.mul(tf.mean(x, 0, true), 0.1))) as tf.Tensor2D, next];
    }));
    expect(mixed.problems.some((p) => /from the row alone/.test(p)), mixed.problems.join('; ')).toBe(true);
    const leaking = await decodeCase(wrongStep('leaks', (step) => (x, state) => {
      tf.keep(tf.scalar(0));
      return step(x, state);
    }));
    expect(leaking.problems.some((p) => /tensors left behind/.test(p))).toBe(true);
  });

  it('has a case for every registered mixer (ExpressiveAttention for both of its states)', () => {
    const covered = new Set(DECODING_CASES.map((c) => c.name.split(' ')[0]));
    expect(mixers.map((m) => m.name).filter((name) => !covered.has(name))).toEqual([]);
  });
});

for (const backend of REFERENCE_BACKENDS) {
  describeOn(backend, 'every decoding layer decodes a ragged batch as each row alone', () => {
    for (const c of DECODING_CASES) {
      it(c.name, async () => {
        const r = await decodeCase(c);
        expect(r.backend).toBe(backend);
        expect(r.problems, `${c.name} on ${backend}: error ${r.error}, bound ${r.bound}`).toEqual([]);
      });
    }
  });
}
