/**
 * The blocks section of `npm run bench` (`-- --blocks` alone): the rest of a transformer block
 * beside its mixer, `ops.dense` (a projection, `[M, K]·[K, N] + b`) against tfjs's matMul and add,
 * `ops.layerNorm` against its tfjs-ops reference, and an attention layer's q, k and v projections
 * in one launch (`denseGroups`, three `[D, D]` kernels and biases, the outputs summed) against
 * three `ops.dense`, forward and forward+backward, validated then timed interleaved. Rows M = 1
 * is a decode step's projection; larger M a training batch's.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { ops } from '../src/index.js';
import { denseGroups } from '../src/dense/groups.js';
import { agreement, type Validation } from './validation.js';
import { timeInterleaved, type Budget, type Timing } from './timing.js';

/** The shapes: [M, K, N] for dense, [M, D] for layerNorm and qkv. */
export const BLOCK_SHAPES = {
  quick: { dense: [[1, 64, 256], [512, 64, 256], [512, 64, 65]], layerNorm: [[512, 64]], qkv: [[1, 64], [512, 64]] },
  full: {
    // N = 65: the char-lm head over its vocabulary, read by the element layout
    dense: [[1, 64, 64], [1, 192, 768], [1, 768, 192], [512, 64, 256], [512, 64, 65], [1024, 192, 768], [1024, 768, 192], [2048, 512, 512]],
    layerNorm: [[512, 64], [1024, 192], [2048, 512]],
    qkv: [[1, 64], [1, 192], [512, 64], [1024, 192]],
  },
} as const;

const BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 20, budgetMs: 1500 };
type Pass = 'forward' | 'forward+backward';
const PASSES: readonly Pass[] = ['forward', 'forward+backward'];

/** One op at one shape and pass: the library's op against tfjs's own. */
export interface BlockRow {
  /** `qkv`: `denseGroups` in the ours column, three `ops.dense` in the tfjs column. */
  op: 'dense' | 'layerNorm' | 'qkv';
  shape: number[];
  pass: Pass;
  validation: Validation;
  ours?: Timing;
  tfjs?: Timing;
  /** tfjs's median ÷ ours. */
  speedup?: number;
  /** The op's useful FLOP/s in GFLOP/s (dense and qkv: 2·M·K·N forward, three times that with the backward). */
  gflops?: number;
}

/** The values of every tensor `f` returns. */
async function valuesOf(f: () => tf.Tensor[]): Promise<Float32Array[]> {
  const out = f();
  const values = await Promise.all(out.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(out);
  return values;
}

/** The forward's output, or with the backward every gradient of Σ y·dy. */
function passOf(pass: Pass, f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): () => tf.Tensor[] {
  if (pass === 'forward') return () => [tf.tidy(() => f(...xs))];
  const grads = tf.grads(f);
  return () => grads(xs, dy);
}

async function measure(backend: WebGPUBackend, row: Omit<BlockRow, 'validation'>, sides: Record<'ours' | 'tfjs', () => tf.Tensor[]>,
  tolerance: number, flops: number, log: (line: string) => void): Promise<BlockRow> {
  const [ours, tfjs] = [await valuesOf(sides.ours), await valuesOf(sides.tfjs)];
  const validation = agreement(ours.map((o, i): [Float32Array, Float32Array] => [o, tfjs[i]!]), tolerance);
  const label = `${row.op} [${row.shape.join(', ')}] ${row.pass}`;
  if (!validation.ok) {
    console.error(`\n[bench] !!! VALIDATION FAILED: ${label}: ${JSON.stringify(validation)}. Not timed.\n`);
    return { ...row, validation };
  }
  const t = await timeInterleaved(backend, sides, BUDGET);
  const speedup = t.tfjs.medianMs / t.ours.medianMs;
  log(`${label}: ours ${t.ours.medianMs.toFixed(2)} ms, tfjs ${t.tfjs.medianMs.toFixed(2)} ms (${speedup.toFixed(2)}×)`);
  return { ...row, validation, ours: t.ours, tfjs: t.tfjs, speedup, ...(flops > 0 ? { gflops: flops / t.ours.medianMs / 1e6 } : {}) };
}

/** Every shape of {@link BLOCK_SHAPES}, both passes. */
export async function measureBlocks(backend: WebGPUBackend, quick: boolean, seed: number, tolerance: number,
  log: (line: string) => void): Promise<BlockRow[]> {
  const shapes = quick ? BLOCK_SHAPES.quick : BLOCK_SHAPES.full;
  const rows: BlockRow[] = [];
  for (const [M, K, N] of shapes.dense) {
    const xs = [tf.randomNormal([M, K], 0, 1, 'float32', seed), tf.randomNormal([K, N], 0, 0.1, 'float32', seed + 1),
      tf.randomNormal([N], 0, 1, 'float32', seed + 2)];
    const dy = tf.randomNormal([M, N], 0, 1, 'float32', seed + 3);
    const ours = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => ops.dense(x, w as tf.Tensor2D, { bias: b as tf.Tensor1D });
    const theirs = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.add(tf.matMul(x, w), b);
    for (const pass of PASSES) {
      rows.push(await measure(backend, { op: 'dense', shape: [M, K, N], pass },
        { ours: passOf(pass, ours, xs, dy), tfjs: passOf(pass, theirs, xs, dy) },
        tolerance, (pass === 'forward' ? 2 : 6) * M * K * N, log));
    }
    tf.dispose([...xs, dy]);
  }
  for (const [M, D] of shapes.layerNorm) {
    const xs = [tf.randomNormal([M, D], 1, 1, 'float32', seed), tf.randomNormal([D], 1, 0.1, 'float32', seed + 1),
      tf.randomNormal([D], 0, 0.1, 'float32', seed + 2)];
    const dy = tf.randomNormal([M, D], 0, 1, 'float32', seed + 3);
    const side = (implementation: 'webgpu' | 'reference') => (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      ops.layerNorm(x, g as tf.Tensor1D, b as tf.Tensor1D, { implementation });
    for (const pass of PASSES) {
      rows.push(await measure(backend, { op: 'layerNorm', shape: [M, D], pass },
        { ours: passOf(pass, side('webgpu'), xs, dy), tfjs: passOf(pass, side('reference'), xs, dy) }, tolerance, 0, log));
    }
    tf.dispose([...xs, dy]);
  }
  for (const [M, D] of shapes.qkv) {
    const xs = [tf.randomNormal([M, D], 0, 1, 'float32', seed), ...[1, 2, 3].map((i) => tf.randomNormal([D, D], 0, 0.1, 'float32', seed + i)),
      ...[4, 5, 6].map((i) => tf.randomNormal([D], 0, 1, 'float32', seed + i))];
    const dy = tf.randomNormal([M, D], 0, 1, 'float32', seed + 7);
    const fused = (x: tf.Tensor, ...wb: tf.Tensor[]) => tf.addN(denseGroups(x, wb.slice(0, 3) as tf.Tensor2D[], wb.slice(3) as tf.Tensor1D[], 'webgpu'));
    const apart = (x: tf.Tensor, ...wb: tf.Tensor[]) => tf.addN([0, 1, 2].map((g) => ops.dense(x, wb[g] as tf.Tensor2D, { bias: wb[3 + g] as tf.Tensor1D })));
    for (const pass of PASSES) {
      rows.push(await measure(backend, { op: 'qkv', shape: [M, D], pass },
        { ours: passOf(pass, fused, xs, dy), tfjs: passOf(pass, apart, xs, dy) }, tolerance, (pass === 'forward' ? 2 : 6) * 3 * M * D * D, log));
    }
    tf.dispose([...xs, dy]);
  }
  return rows;
}

/** The section as a markdown table. */
export function blocksMarkdown(rows: readonly BlockRow[]): string {
  const ms = (t?: Timing) => (t ? t.medianMs.toFixed(2) : '—');
  return ['## Blocks: projections and layer norms', '',
    '`ops.dense` against `tf.add(tf.matMul(x, W), b)`, `ops.layerNorm` against its tfjs-ops reference, and qkv (three `[D, D]` ' +
    'projections and biases in one launch, their outputs summed) against three `ops.dense` in the tfjs column, on the same inputs; ' +
    'each validated (max |ours − tfjs| / max |tfjs|) before timing, medians of interleaved samples.', '',
    '| op | shape | pass | ours ms | tfjs ms | tfjs ÷ ours | GFLOP/s (ours) | validation |', '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.op} | [${r.shape.join(', ')}] | ${r.pass} | ${ms(r.ours)} | ${ms(r.tfjs)} | ` +
      `${r.speedup ? r.speedup.toFixed(2) : '—'} | ${r.gflops ? r.gflops.toFixed(1) : '—'} | ` +
      `${r.validation.ok ? 'ok' : 'FAILED'} ${r.validation.relative.toExponential(1)} |`)].join('\n');
}
