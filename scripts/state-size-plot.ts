/**
 * Draws docs/images/decode-state-size.svg, the decoding guide's plot of state size against tokens
 * decoded, from the layers' own states: each layer (D = 512, 8 heads of 64) is prefilled on the
 * cpu backend with a few prompt lengths, the numbers its state holds are counted, and the counts
 * must be an exact line a + b·t (checked on a third length) before the line is drawn out to 64k.
 * Run: `node --import tsx --import ./scripts/wgsl-hooks.mjs scripts/state-size-plot.ts`.
 *
 * @packageDocumentation
 */
import { writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { layers } from '../src/index.js';
import { lineChart } from '../examples/shared/svg-chart.js';

const D = 512;
const heads = { numHeads: 8, headDim: 64, implementation: 'reference' as const };

/** A decoding layer as the plot needs it: prefill from nothing, return the state's tensors. */
interface Decoder {
  apply(x: tf.Tensor): unknown;
  prefill(x: tf.Tensor3D): [tf.Tensor3D, Record<string, unknown>];
}

const LAYERS: Array<{ label: string; color: string; make: () => Decoder }> = [
  { label: 'KV cache, 8 kv heads', color: '#0072b2', make: () => layers.flashStyleTiledAttention(heads) },
  { label: 'KV cache, 2 kv heads', color: '#56b4e9', make: () => layers.flashStyleTiledAttention({ ...heads, numKvHeads: 2 }) },
  {
    label: 'Expressive, recurrent', color: '#d55e00',
    make: () => layers.expressiveAttention({ ...heads, decode: 'recurrent' }),
  },
  { label: 'SelectiveSSM', color: '#009e73', make: () => layers.selectiveSSM({ expand: 2, stateSize: 16, convKernel: 4, implementation: 'reference' }) },
  { label: 'GatedLinearAttention, 8 heads', color: '#999933', make: () => layers.gatedLinearAttention({ numHeads: 8 }) },
  { label: 'Aaren, 8 heads', color: '#882255', make: () => layers.aaren({ numHeads: 8 }) },
  { label: 'AverageContext', color: '#cc79a7', make: () => layers.averageContext({ implementation: 'reference' }) },
  { label: 'CausalGeneration', color: '#e69f00', make: () => layers.causalGeneration({ implementation: 'reference' }) },
];

/** The numbers a state holds: every tensor in it, positions included. */
function stateNumbers(state: Record<string, unknown>): number {
  return Object.values(state).reduce<number>((n, v) => n + (v instanceof tf.Tensor ? v.size : 0), 0);
}

/** The state's size after prefilling t tokens of a fresh state. */
function sizeAfter(layer: Decoder, t: number): number {
  const x = tf.randomNormal([1, t, D]) as tf.Tensor3D;
  const [y, state] = layer.prefill(x);
  const n = stateNumbers(state);
  tf.dispose([x, y, ...Object.values(state).filter((v): v is tf.Tensor => v instanceof tf.Tensor)]);
  return n;
}

await tf.setBackend('cpu');
const lengths = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 65_536];
const series = LAYERS.map(({ label, color, make }) => {
  const layer = make();
  tf.dispose(layer.apply(tf.zeros([1, 1, D])) as tf.Tensor);
  const [s8, s16, s24] = [8, 16, 24].map((t) => sizeAfter(layer, t)) as [number, number, number];
  const slope = (s16 - s8) / 8;
  const base = s8 - 8 * slope;
  if (base + 24 * slope !== s24) throw new Error(`${label}: state sizes ${s8}, ${s16}, ${s24} at t = 8, 16, 24 are not a line.`);
  console.log(`${label}: ${base} + ${slope}·t numbers`);
  // 4 bytes a number
  return { label, color, points: lengths.map((t) => [t, 4 * (base + slope * t)] as const) };
});

writeFileSync(new URL('../docs/images/decode-state-size.svg', import.meta.url), lineChart(series, {
  title: 'Decode state per layer and sequence, against tokens decoded',
  subtitle: 'D = 512, 8 heads (K = 64; GLA K = 32, V = 64), SelectiveSSM expand 2, N = 16, conv 4; counted from each layer\'s state after prefill',
  xLabel: 'tokens decoded t', yLabel: 'state (bytes, 4 a number)', logX: true, logY: true, width: 860,
}));
