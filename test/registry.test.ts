// The registry (src/mixers/registry.ts) and what every mixer in it must hold, run from its
// descriptor alone: a mixer added to the registry is checked here without a line of its own.
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as library from '../src/index.js';
import { layers, mixerNamed, mixers, ops, type MixerDescriptor } from '../src/index.js';
import { describeOn, expectNoLeaks, launchedPipelines, maxAbs, maxAbsDiff, recordedStep, uploadsDuring, values } from './helpers.js';
import { itIsCausal, itLeaksNothing, itRoundTrips } from './layer-properties.js';

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');

/** Sizes every mixer accepts: two heads of a width-8 block. */
const SIZES = { numHeads: 2, context: 16 };
const blockLayer = (m: MixerDescriptor, more: object = {}) => m.layer({ ...m.blockArgs(SIZES), ...more });

describe('the mixer registry', () => {
  it('names each mixer once, as its layer factory, its class and its guide', () => {
    const names = mixers.map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
    for (const m of mixers) {
      const layer = blockLayer(m);
      expect(layer.getClassName(), m.name).toBe(m.className);
      expect((layers as Record<string, unknown>)[m.name], `layers.${m.name}`).toBeTypeOf('function');
      expect((layers as Record<string, (a: object) => tf.layers.Layer>)[m.name]!(m.blockArgs(SIZES)).getClassName()).toBe(m.className);
      for (const op of m.ops) expect((ops as Record<string, unknown>)[op], `ops.${op}`).toBeTypeOf('function');
      expect(read(`docs/${m.guide}.md`).length).toBeGreaterThan(0);
      expect(read('typedoc.json')).toContain(`"docs/${m.guide}.md"`);
      // the class is exported by its name, which className prefixes with the package's ('tfjs-mixers>Aaren')
      const exported = m.className.split('>').pop()!;
      expect((library as unknown as Record<string, { className?: string }>)[exported]?.className).toBe(m.className);
      expect(read('README.md')).toContain(exported);
    }
  });

  it('holds every mixer layer and op the library exports (MultiHeadAttention, rotary, dense and the norms are not mixers)', () => {
    const notMixers = { layers: ['multiHeadAttention'], ops: ['rotary', 'dense', 'layerNorm', 'addLayerNorm'] };
    expect(Object.keys(layers).filter((n) => !notMixers.layers.includes(n)).sort()).toEqual(mixers.map((m) => m.name).sort());
    expect(Object.keys(ops).filter((n) => !notMixers.ops.includes(n)).sort()).toEqual(mixers.flatMap((m) => m.ops).sort());
  });

  it('finds a mixer by name, and names the caller and every mixer when there is none', () => {
    for (const m of mixers) expect(mixerNamed(m.name)).toBe(m);
    const all = 'causalGeneration, averageContext, expressiveAttention, blockSparse, selectiveSSM, aaren, ' +
      'gatedLinearAttention, flashStyleTiledAttention';
    expect(() => mixerNamed('flash')).toThrow(`mixerNamed: 'flash' is not a mixer; expected one of ${all}.`);
    expect(() => mixerNamed('flash', 'bench --cases')).toThrow(`bench --cases: 'flash' is not a mixer; expected one of ${all}.`);
  });
});

describeOn('cpu', 'every registered mixer', () => {
  it("keys the kernels to implementation 'webgpu' (it throws off the webgpu backend)", () => {
    for (const m of mixers) {
      const c = m.benchCase(4, 1);
      try {
        expect(() => c.run('webgpu', c.inputs), m.name).toThrow(/needs the 'webgpu' backend/);
      } finally {
        tf.dispose([...c.inputs, ...c.constants]);
      }
    }
  });

  for (const m of mixers) {
    describe(m.name, () => {
      it('its bench case runs forward and backward through the reference, finite and leak-free', async () => {
        const c = m.benchCase(9, 3);
        await expectNoLeaks(async () => {
          const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => c.run('reference', xs))(c.inputs);
          for (const t of [value, ...grads]) expect((await values(t)).every(Number.isFinite), m.name).toBe(true);
          expect(grads.map((g) => g.shape)).toEqual(c.inputs.map((x) => x.shape));
          expect(value.shape).toEqual(c.outputShape);
          expect(c.op).toBe(m.ops[0]);
          tf.dispose([value, grads]);
        });
        tf.dispose([...c.inputs, ...c.constants]);
      });

      const cases = fc.record({
        B: fc.integer({ min: 1, max: 2 }), T: fc.integer({ min: 1, max: 9 }), D: fc.constant(8), seed: fc.nat(1000),
      });
      itIsCausal('', cases, () => blockLayer(m));
      itLeaksNothing('', () => blockLayer(m) as never);
      itRoundTrips(() => blockLayer(m), m.blockArgs(SIZES));
    });
  }
});

describeOn('webgpu', 'every registered mixer on its kernels', () => {
  for (const m of mixers) {
    it(`${m.name}: its bench case through the kernels agrees with the reference within the descriptor's tolerance`, async () => {
      // T = 67: several kernel tiles and chunks, and a partial last one
      const c = m.benchCase(67, 5);
      const run = (implementation: 'webgpu' | 'reference') =>
        tf.tidy(() => {
          const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => c.run(implementation, xs))(c.inputs);
          return [value, ...grads];
        });
      const [kernel, reference] = [run('webgpu'), run('reference')];
      for (const [i, r] of reference.entries()) {
        const [k, ref] = [await values(kernel[i]!), await values(r)];
        expect(maxAbsDiff(k, ref) / maxAbs(ref), `${m.name} output ${i}`).toBeLessThan(m.kernels.tolerance);
      }
      tf.dispose([kernel, reference, c.inputs, c.constants]);
    });

    it(`${m.name}: its layer's forward, and its forward and backward, upload nothing made on the CPU once warm`, async () => {
      // a tensor made on the CPU (a number given to an op, tf.zeros, a table) is uploaded when a
      // kernel first binds it: two pool buffers, a mapped copy, the compute pass ended
      const layer = blockLayer(m);
      const x = tf.randomNormal([2, 12, 8]) as tf.Tensor3D;
      const dy = tf.randomNormal([2, 12, 8]) as tf.Tensor3D;
      const forward = async () => {
        const y = layer.apply(x) as tf.Tensor;
        await y.data();
        y.dispose();
      };
      // the gradients of x and of every weight, from a given dy (tfjs's own seed of ones would
      // be an upload of its own)
      const backward = async () => {
        const weights = layer.trainableWeights.map((w) => w.read());
        const { value, grads } = tf.engine().gradients(() => layer.apply(x) as tf.Tensor, [x, ...weights], dy);
        expect(grads.length).toBe(1 + weights.length);
        await Promise.all(grads.map((g) => g.data()));
        tf.dispose([value, ...grads]);
      };
      await forward();
      expect(await uploadsDuring(forward, [x]), 'forward').toBe(0);
      await backward();
      expect(await uploadsDuring(backward, [x, dy]), 'forward and backward').toBe(0);
      tf.dispose([x, dy]);
      layer.dispose();
    });

    it(`${m.name}: a decode step of its layer uploads nothing made on the CPU but its token`, async () => {
      const layer = blockLayer(m) as tf.layers.Layer & {
        initState(B: number, options?: object): tf.Tensor | tf.Tensor[] | object;
        step(x: tf.Tensor2D, state: unknown): [tf.Tensor2D, unknown];
      };
      tf.tidy(() => void layer.apply(tf.zeros([1, 1, 8])));
      // a preallocated cache, written in place, for the attention layers
      let state = layer.initState(2, m.decode === 'cache' ? { capacity: 8 } : undefined) as unknown;
      const x = tf.randomNormal([2, 8]) as tf.Tensor2D;
      for (let s = 0; s < 3; s++) {
        const [y, next] = layer.step(x, state);
        y.dispose();
        if (next !== state) tf.dispose(state as tf.TensorContainer);
        state = next;
      }
      const { uploads, next } = await recordedStep(() => layer.step(x, state), [x]);
      expect(uploads).toBe(0);
      if (next !== state) tf.dispose(next as tf.TensorContainer);
      tf.dispose([x, state as tf.TensorContainer]);
      layer.dispose();
    });

    it(`${m.name}: a prefill of whole rows zeroes no padding (a padded one does, on the zeroing kernel)`, async () => {
      const layer = blockLayer(m) as tf.layers.Layer & {
        prefill(x: tf.Tensor3D, state?: unknown, options?: { lengths?: number[] }): [tf.Tensor3D, tf.TensorContainer];
      };
      const x = tf.randomNormal([2, 6, 8]) as tf.Tensor3D;
      tf.dispose(layer.apply(x) as tf.Tensor);
      const launches = (lengths?: number[]) => launchedPipelines(async () => {
        const [y, state] = layer.prefill(x, undefined, lengths ? { lengths } : undefined);
        await y.data();
        tf.dispose([y, state]);
      });
      const padded = await launches([6, 2]);
      const whole = await launches([6, 6]);
      // x's padding zeroed in one launch (a mixer may zero its own tensors' padding too)
      expect(padded.filter((label) => label === 'FillPadding').length, 'a padded row').toBeGreaterThan(0);
      // nothing zeroed or selected: neither the kernel nor tfjs's select it replaces
      expect(whole.filter((label) => label === 'FillPadding' || label === 'SelectProgram'), 'every row whole').toEqual([]);
      // the same, but that the lengths are a fill where numbers are an upload
      const fills = (labels: string[]) => labels.filter((label) => label !== 'FillProgram');
      expect(fills(await launches()), 'no lengths').toEqual(fills(whole));
      x.dispose();
      layer.dispose();
    });
  }
});
