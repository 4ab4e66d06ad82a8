// `npm run bench:peers [-- --quick] [--lengths 256,1024] [--results DIR] [--keep-subgroups]`: ONNX Runtime Web's
// MultiHeadAttention (WebGPU execution provider), ops.flashAttention and composed attention in
// one headless-Chromium page on the same adapter (bench/peers/page.ts), causal, B = 1, H = 4,
// K = 64, on the same inputs: compared, then timed interleaved. Installs onnxruntime-web into
// bench/peers/node_modules on first use (its own package.json: never the library's dependency),
// bundles the page, serves it on 127.0.0.1, and writes `<adapter>.peers[.quick].{json,md}` to
// bench/results/. Exits 1 when two outputs disagree beyond the tolerance.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argAfter, bundlePage, loads, openBrowser, openPage, resultsBase } from './browser.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const quick = process.argv.includes('--quick');
const lengths = (argAfter('--lengths') ?? (quick ? '128,256' : '128,256,512,1024,2048')).split(',').map(Number);
if (lengths.some((T) => !Number.isInteger(T) || T < 1)) throw new Error(`bench:peers: --lengths expects positive integers, got ${argAfter('--lengths')}.`);
const resultsDir = argAfter('--results') ?? join(root, 'bench', 'results');
const SEED = 20241122;
/** Composed attention holds [1, H, T, T] scores and its softmax: it runs up to this length. */
const COMPOSED_UP_TO = 2048;
const BUDGET = { warmup: 2, minIterations: 5, maxIterations: 30, budgetMs: 3000 };
const log = (line) => console.error(`[bench:peers] ${line}`);

const ortDist = join(here, 'node_modules', 'onnxruntime-web', 'dist');
if (!existsSync(ortDist)) {
  log('installing the peers bench\'s dependencies into bench/peers/node_modules');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: here, stdio: 'inherit' });
}

const out = join(here, 'dist', 'attention');
await bundlePage(join(here, 'page.ts'), out);

const loadBefore = loadavg();
const browser = await openBrowser();
let served;
let failed = 0;
try {
  served = await openPage(browser.context, out, { ort: ortDist }, log);
  const { page, url } = served;
  const setup = await page.evaluate(([ortUrl, keep]) => window.peers.start(ortUrl, keep),
    [`${url}ort/ort.webgpu.min.mjs`, process.argv.includes('--keep-subgroups')]);
  log(`adapter: ${setup.adapter}; subgroups ${JSON.stringify(setup.subgroups)}; ORT ${setup.ortVersion} on a device with ` +
    `[${setup.ortFeatures.join(', ')}]; tfjs ${setup.tfjsVersion}`);
  const rows = [];
  for (const T of lengths) {
    const row = await page.evaluate(([t, seed, budget, upTo]) => window.peers.measure(t, seed, budget, upTo),
      [T, SEED, BUDGET, COMPOSED_UP_TO]);
    // each output against flashAttention's, within attentionTolerance (bench/cases.ts)
    const ok = Object.values(row.validation).every((v) => v.ok);
    const relative = Object.entries(row.validation).map(([name, v]) => `${name} ${v.relative.toExponential(1)}`).join(', ');
    if (!ok) failed++;
    rows.push(row);
    const t = row.timings;
    log(`T=${T}: ORT ${t.ort.medianMs.toFixed(2)} ms, flashAttention ${t.flashAttention.medianMs.toFixed(2)} ms` +
      `${t.composed ? `, composed ${t.composed.medianMs.toFixed(2)} ms` : ''}; ORT / flash ${(t.ort.medianMs / t.flashAttention.medianMs).toFixed(2)}; ` +
      `relative ${relative} (tolerance ${row.tolerance.toExponential(1)})${ok ? '' : ' FAILED'}`);
  }
  const leaked = await page.evaluate(() => window.peers.tensors());
  if (leaked !== 0) throw new Error(`bench:peers: the page holds ${leaked} tensor(s) after the run.`);
  const fixed = (v) => (v === undefined ? '–' : v.toFixed(2));
  const load = { before: loadBefore, after: loadavg() };
  const markdown = [
    `# Peers: ${setup.adapter}`, '',
    `${new Date().toISOString()} · ORT-web ${setup.ortVersion} · tfjs ${setup.tfjsVersion} · Chromium headless${quick ? ' · --quick' : ''} · ` +
      `load average (1, 5, 15 min) ${loads(load.before)} before, ${loads(load.after)} after`, '',
    'Causal attention, q, k, v [1, T, 4, 64], seeded uniform inputs, in one page: ONNX Runtime Web\'s `com.microsoft` ' +
      '`MultiHeadAttention` (WebGPU EP, inputs and output on the GPU), `ops.flashAttention` (the WGSL kernels) and composed ' +
      `attention in tfjs ops (to T = ${COMPOSED_UP_TO}). Fenced wall time per run, medians, interleaved sample by sample. ` +
      `ORT's device is the same adapter ${setup.ortFeatures.includes('subgroups') ? 'with' : 'without'} the subgroups feature ` +
      `(the adapter's: ${JSON.stringify(setup.subgroups)}; page.ts hideSubgroups says why).`, '',
    '| T | ORT ms | flashAttention ms | composed ms | ORT ÷ flash | composed ÷ flash | agreement (relative to flash) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.T} | ${fixed(r.timings.ort.medianMs)} | ${fixed(r.timings.flashAttention.medianMs)} | ` +
      `${fixed(r.timings.composed?.medianMs)} | ${(r.timings.ort.medianMs / r.timings.flashAttention.medianMs).toFixed(2)} | ` +
      `${r.timings.composed ? (r.timings.composed.medianMs / r.timings.flashAttention.medianMs).toFixed(2) : '–'} | ` +
      `${Object.entries(r.validation).map(([name, v]) => `${name} ${v.ok ? 'ok' : 'FAILED'} ${v.relative.toExponential(1)}`).join(', ')} |`),
    '',
  ].join('\n');
  console.log(markdown);
  mkdirSync(resultsDir, { recursive: true });
  const base = resultsBase(resultsDir, setup.adapter, `peers${quick ? '.quick' : ''}`);
  writeFileSync(`${base}.json`, `${JSON.stringify({ ...setup, date: new Date().toISOString(), quick, load, budget: BUDGET, rows }, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  log(`wrote ${base}.json and .md`);
} finally {
  served?.close();
  await browser.close();
}
process.exit(failed > 0 ? 1 : 0);
