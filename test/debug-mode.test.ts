// tfjs's debug mode (`tf.enableDebugMode()`, the DEBUG flag) downloads every kernel's output and
// warns "Found NaN in the result of '<kernel>'" (or an infinity) at the first one it finds: what a
// tfjs user turns on to find where a NaN in their model starts. On finite inputs nothing in this
// library may set it off, or it points them at the wrong place: every case of
// examples/browser/training.ts, loss and gradients at its initial weights, on each reference
// backend. (The references once selected from a NaN-filled tensor to poison the rows that see a
// non-finite input, and Aaren's started from an empty state whose max was −∞.)
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeEach, expect, it, vi, type MockInstance } from 'vitest';
import { TRAINING_CASES, initialGradients } from '../examples/browser/training.js';
import { REFERENCE_BACKENDS, describeOn } from './helpers.js';

/** What debug mode warned since the last call, its checks having run (each when its download resolves). */
async function findings(warn: MockInstance): Promise<string[]> {
  await new Promise((resolve) => setTimeout(resolve, 0));
  const found = warn.mock.calls.map((args) => args.map(String).join(' ')).filter((w) => w.startsWith('Found '));
  warn.mockClear();
  return found;
}

for (const backend of REFERENCE_BACKENDS) {
  describeOn(backend, "tfjs's debug mode finds no NaN or infinity", () => {
    let warn: MockInstance;
    beforeEach(() => {
      warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
      // debug mode also logs every kernel it runs
      vi.spyOn(console, 'log').mockImplementation(() => undefined);
      tf.env().set('DEBUG', true);
    });
    afterEach(() => {
      tf.env().set('DEBUG', false);
      vi.restoreAllMocks();
    });

    it('where a NaN-filled select is computed, or an empty max of −∞ (the check, checked)', async () => {
      tf.dispose(tf.where(tf.tensor1d([true, false], 'bool'), tf.fill([2], Number.NaN), tf.zeros([2])));
      expect(await findings(warn)).toContain("Found NaN in the result of 'Fill'");
      tf.dispose(tf.exp(tf.sub(tf.fill([2], -Infinity), tf.zeros([2]))));
      expect(await findings(warn)).toContain("Found -Infinity in the result of 'Fill'");
    });

    it("in any op's or layer's loss and gradients, on finite inputs", async () => {
      const found: string[] = [];
      for (const c of TRAINING_CASES) {
        const r = await initialGradients(c);
        expect(r.problems, c.name).toEqual([]);
        for (const f of new Set(await findings(warn))) found.push(`${c.name}: ${f}`);
      }
      expect(found).toEqual([]);
    });
  });
}
