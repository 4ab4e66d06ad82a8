// `npm run bench:peers:lm [-- --quick] [--sizes small,large] [--results DIR]`: the char-lm model of
// examples/char-lm (FlashStyleTiledAttention's kernels) against GenAI NanoGPT 1.3.0 at the same
// sizes, each on its own page of one headless Chromium on the same adapter (lm-page.ts,
// nanogpt-page.ts): training tokens/s, generation tokens/s and the GPU bytes tfjs holds, in
// rounds that alternate the two. NanoGPT is proprietary: it is installed into this run's own
// scratch folder, the page is bundled from there, and the folder is removed at the end; it is
// never a dependency of the repository. Writes `<adapter>.lm[.quick].{json,md}` to bench/results/.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argAfter, bundlePage, loads, openBrowser, openPage, resultsBase } from './browser.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const PEER = '@genai-fi/nanogpt@1.3.0';
/** The two sizes: batch 8 both. */
const SIZES = {
  small: { blocks: 2, heads: 4, width: 64, context: 64, batch: 8 },
  large: { blocks: 4, heads: 4, width: 192, context: 128, batch: 8 },
};
const quick = process.argv.includes('--quick');
const sizes = (argAfter('--sizes') ?? 'small,large').split(',');
for (const s of sizes) if (!(s in SIZES)) throw new Error(`bench:peers:lm: --sizes takes ${Object.keys(SIZES).join(', ')}; got ${s}.`);
const resultsDir = argAfter('--results') ?? join(root, 'bench', 'results');
/** Rounds per size; each round trains then generates on both pages, the order alternating. */
const ROUNDS = quick ? 1 : 3;
/**
 * Training steps timed per round, after an untimed one (shader compiles, first allocations).
 * On SwiftShader a large-size step takes about a minute: a full run takes about 25 minutes.
 */
const STEPS = 2;
const WARMUP = 1;
const PROMPT = 'ROMEO:\n';
const SEED = 1;
const log = (line) => console.error(`[bench:peers:lm] ${line}`);

const text = readFileSync(join(root, 'examples', 'data', 'tinyshakespeare.txt'), 'utf8');
const scratch = mkdtempSync(join(tmpdir(), 'tfjs-mixers-nanogpt-'));
let browser = null;
const served = [];
try {
  log(`installing ${PEER} into ${scratch} (removed at the end)`);
  writeFileSync(join(scratch, 'package.json'), '{ "private": true }\n');
  // its postinstall (patch-package) has no patches in the published package
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', PEER], { cwd: scratch, stdio: ['ignore', 'ignore', 'inherit'] });
  const peerModules = join(scratch, 'node_modules');
  const ours = join(scratch, 'dist', 'char-lm');
  const peer = join(scratch, 'dist', 'nanogpt');
  await bundlePage(join(here, 'lm-page.ts'), ours);
  // the peer's page takes tfjs-core from the peer's own install, the copy its backend registers with
  await bundlePage(join(here, 'nanogpt-page.ts'), peer, {
    nodePaths: [peerModules], alias: { '@tensorflow/tfjs-core': join(peerModules, '@tensorflow', 'tfjs-core') },
  });

  const loadBefore = loadavg();
  browser = await openBrowser();
  const pages = [];
  for (const dir of [ours, peer]) {
    const p = await openPage(browser.context, dir, {}, log);
    served.push(p);
    pages.push(p.page);
  }
  const names = await Promise.all(pages.map((p) => p.evaluate(() => window.lm.name)));
  const adapter = await pages[0].evaluate(async () => {
    const a = await navigator.gpu.requestAdapter();
    return a ? `${a.info.vendor} / ${a.info.architecture || a.info.device || a.info.description}` : 'none';
  });
  log(`adapter: ${adapter}; ${names.join(' vs ')}`);
  const rows = [];
  for (const sizeName of sizes) {
    const size = SIZES[sizeName];
    const built = [];
    for (const p of pages) built.push(await p.evaluate(([t, s, seed]) => window.lm.build(t, s, seed), [text, size, SEED]));
    log(`${sizeName} ${JSON.stringify(size)}: params ${built.map((b) => b.params).join(' vs ')}`);
    const train = [[], []];
    const generate = [[], []];
    const generated = size.context - PROMPT.length;
    for (let round = 0; round < ROUNDS; round++) {
      // alternate which side goes first, so that neither always follows the other's heat or load
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const n of order) train[n].push(await pages[n].evaluate(([s, w]) => window.lm.train(s, w), [STEPS, WARMUP]));
      for (const n of order) generate[n].push(await pages[n].evaluate(([p, k]) => window.lm.generate(p, k), [PROMPT, generated]));
      log(`${sizeName} round ${round + 1}: train ${train.map((r) => rate(r.at(-1)).toFixed(0)).join(' vs ')} tokens/s, ` +
        `generate ${generate.map((r) => rate(r.at(-1)).toFixed(1)).join(' vs ')} tokens/s`);
    }
    const expected = STEPS * size.batch * size.context;
    const peerTokens = train[1].map((r) => r.tokens);
    if (peerTokens.some((t) => t !== expected)) log(`note: NanoGPT counted ${peerTokens.join(', ')} tokens per round, not ${expected}`);
    rows.push({ size: sizeName, ...size, built, train, generate, summary: summarise(train, generate) });
  }
  const leaked = await Promise.all(pages.map((p) => p.evaluate(() => window.lm.dispose())));
  const load = { before: loadBefore, after: loadavg() };
  const markdown = report(adapter, names, rows, load);
  console.log(markdown);
  mkdirSync(resultsDir, { recursive: true });
  const base = resultsBase(resultsDir, adapter, `lm${quick ? '.quick' : ''}`);
  writeFileSync(`${base}.json`, `${JSON.stringify({ adapter, names, peer: PEER, date: new Date().toISOString(), quick, load,
    rounds: ROUNDS, steps: STEPS, warmup: WARMUP, rows }, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  log(`wrote ${base}.json and .md`);
  // after the files, so that a leak does not cost the run's measurements
  if (leaked[0] !== 0) throw new Error(`bench:peers:lm: the char-lm page holds ${leaked[0]} tensor(s) after the run.`);
} finally {
  for (const s of served) s.close();
  await browser?.close();
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(0);

/** Tokens per second of one round. */
function rate(r) {
  return r.tokens / (r.ms / 1000);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Per side: median tokens/s of training and generation, the largest GPU bytes; and ours ÷ the peer's. */
function summarise(train, generate) {
  const side = (n) => ({
    trainTokensPerSecond: median(train[n].map(rate)),
    generateTokensPerSecond: median(generate[n].map(rate)),
    gpuBytes: Math.max(...train[n].map((r) => r.gpuBytes), ...generate[n].map((r) => r.gpuBytes)),
  });
  const [a, b] = [side(0), side(1)];
  return {
    ours: a, peer: b,
    trainRatio: a.trainTokensPerSecond / b.trainTokensPerSecond,
    generateRatio: a.generateTokensPerSecond / b.generateTokensPerSecond,
  };
}

function report(adapter, names, rows, load) {
  const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);
  return [
    `# Language models against a peer: ${adapter}`, '',
    `${new Date().toISOString()} · ${names[0]} vs ${names[1]} · Chromium headless${quick ? ' · --quick' : ''} · ` +
      `load average (1, 5, 15 min) ${loads(load.before)} before, ${loads(load.after)} after`, '',
    `Character models of the same size on tinyshakespeare, each on its own page of one browser (its own tfjs and WebGPU backend, ` +
      `the same adapter). Per round, on each side in alternating order: ${WARMUP} untimed training step${WARMUP === 1 ? "" : "s"}, then ${STEPS} timed ` +
      `(batch × context tokens each; the char-lm page with Adam, NanoGPT with its own training job, AdamW), then a generation ` +
      `of context − ${PROMPT.length} tokens from a ${PROMPT.length}-character prompt at temperature 1. Medians over ${ROUNDS} ` +
      'round(s); GPU MiB is the most tfjs held at a round\'s end.', '',
    '| size | params (ours, peer) | train tokens/s (ours, peer) | ours ÷ peer | generate tokens/s (ours, peer) | ours ÷ peer | GPU MiB (ours, peer) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => {
      const s = r.summary;
      return `| ${r.size}: ${r.blocks} blocks, ${r.heads} heads, width ${r.width}, context ${r.context}, batch ${r.batch} | ` +
        `${r.built[0].params}, ${r.built[1].params} | ${s.ours.trainTokensPerSecond.toFixed(0)}, ${s.peer.trainTokensPerSecond.toFixed(0)} | ` +
        `${s.trainRatio.toFixed(2)} | ${s.ours.generateTokensPerSecond.toFixed(1)}, ${s.peer.generateTokensPerSecond.toFixed(1)} | ` +
        `${s.generateRatio.toFixed(2)} | ${mb(s.ours.gpuBytes)}, ${mb(s.peer.gpuBytes)} |`;
    }),
    '',
  ].join('\n');
}
