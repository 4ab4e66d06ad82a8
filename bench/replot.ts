/**
 * `npm run bench:plot [-- results/<adapter>.json …]`: redraws the log-log plots (bench/plot.ts)
 * from saved bench reports, by default every full report in bench/results/. A script of its
 * own, so that bundling the bench (scripts/bench-bundle.mjs) does not run it.
 *
 * @packageDocumentation
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writePlots } from './plot.js';
import type { Report } from './report.js';

const dir = new URL('./results/', import.meta.url).pathname;
const files = process.argv.slice(2).length > 0
  ? process.argv.slice(2)
  : readdirSync(dir).filter((f) => f.endsWith('.json') && !f.endsWith('.quick.json')).map((f) => join(dir, f));
for (const file of files) {
  for (const path of writePlots(file.replace(/\.json$/, ''), JSON.parse(readFileSync(file, 'utf8')) as Report)) {
    console.log(`wrote ${path}`);
  }
}
