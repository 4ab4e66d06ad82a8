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
const options: TuneKernelsOptions = small
  ? {
    attention: { length: 256, heads: 4, headSize: 64, cacheLength: 4096 },
    averageContext: { length: 2048, width: 256 },
    selectiveScan: { length: 1024, channels: 512, stateSize: 16 },
    rounds,
  }
  : {
    attention: { length: 4096, heads: 4, headSize: 64, cacheLength: 65536 },
    averageContext: { length: 16384, width: 256 },
    selectiveScan: { length: 16384, channels: 512, stateSize: 16 },
    rounds,
  };
console.log(`adapter: ${gpu.description}`);
const { attention, averageContext, selectiveScan } = options;
console.log(`shapes: ${JSON.stringify({ attention, averageContext, selectiveScan })}, ${rounds} rounds`);
const started = performance.now();
const tuning = await tuneKernels(options);
console.log(`tuned in ${((performance.now() - started) / 1000).toFixed(1)} s (tfjs backend ${tf.getBackend()})\n`);
console.log('| flag | value | median ms | chosen |');
console.log('| --- | --- | --- | --- |');
for (const t of tuning.timings) {
  const ms = t.ms === null ? `refused: ${t.refused}` : t.ms.toFixed(3);
  console.log(`| ${t.flag} | ${JSON.stringify(t.value)} | ${ms} | ${tuning.flags[t.flag] === t.value ? '✓' : ''} |`);
}
console.log(`\nflags: ${JSON.stringify(tuning.flags)}`);
