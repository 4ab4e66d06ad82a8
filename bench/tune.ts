/**
 * `npm run bench:tune`: what `tuneKernels` chooses on this adapter, and every value's time, at the
 * bench's sizes (flashAttention at T = 4096, H = 4, K = 64, its split-K decode over 65536 keys;
 * averageContext at T = 16384, D = 256; the selective scan at T = 16384, E = 512, N = 16), or with
 * `--small` at sizes SwiftShader runs in a minute.
 * `--subgroups` tunes on a device with subgroups; `--rounds n` samples each value n times (5).
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { tuneKernels, type TuneKernelsOptions } from '../src/index.js';
import { benchFlags, startWebGPU } from './webgpu.js';

const { gpu } = await startWebGPU('tune', benchFlags('tune', process.argv));
const at = process.argv.indexOf('--rounds');
const rounds = at >= 0 ? Number(process.argv[at + 1]) : 5;
const small = process.argv.includes('--small');
// each mixer's kernels tuned in a run of their own, its table printed when done: a run cut
// short (the GPU script's step limit) keeps the tables before it
const shapes: Required<Pick<TuneKernelsOptions, 'attention' | 'averageContext' | 'selectiveScan'>> = small
  ? {
    attention: { length: 256, heads: 4, headSize: 64, cacheLength: 4096 },
    averageContext: { length: 2048, width: 256 },
    selectiveScan: { length: 1024, channels: 512, stateSize: 16 },
  }
  : {
    attention: { length: 4096, heads: 4, headSize: 64, cacheLength: 65536 },
    averageContext: { length: 16384, width: 256 },
    selectiveScan: { length: 16384, channels: 512, stateSize: 16 },
  };
console.log(`adapter: ${gpu.description}`);
console.log(`shapes: ${JSON.stringify(shapes)}, ${rounds} rounds`);
const none = { attention: false, averageContext: false, selectiveScan: false } as const;
const chosen: Record<string, unknown> = {};
const started = performance.now();
console.log('\n| flag | value | median ms | chosen |');
console.log('| --- | --- | --- | --- |');
for (const [kernels, shape] of Object.entries(shapes)) {
  const tuning = await tuneKernels({ ...none, [kernels]: shape, rounds });
  for (const t of tuning.timings) {
    const ms = t.ms === null ? `refused: ${t.refused}` : t.ms.toFixed(3);
    console.log(`| ${t.flag} | ${JSON.stringify(t.value)} | ${ms} | ${tuning.flags[t.flag] === t.value ? '✓' : ''} |`);
  }
  Object.assign(chosen, tuning.flags);
}
console.log(`\ntuned in ${((performance.now() - started) / 1000).toFixed(1)} s (tfjs backend ${tf.getBackend()})`);
console.log(`flags: ${JSON.stringify(chosen)}`);
