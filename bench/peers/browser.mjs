// What the peers bench's runners (run.mjs, lm.mjs) share: their flags, bundling a page, serving
// it on 127.0.0.1 to one headless Chromium on the same adapter, and naming the results files.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { serve } from '../../examples/browser/serve.mjs';
import { nodeStubs } from '../../examples/browser/node-stubs.mjs';
import { CHROMIUM_FLAGS, GET_CHROMIUM, executablePath } from '../../scripts/chromium.mjs';

const root = resolve(import.meta.dirname, '../..');

/** The command-line value after `flag`, or undefined. */
export function argAfter(flag) {
  const at = process.argv.indexOf(flag);
  return at < 0 ? undefined : process.argv[at + 1];
}

/**
 * Bundles `entry` (a page that sets `document.body.dataset.state = 'ready'`) into `out`, with an
 * index.html that loads it; `options` are more esbuild options (the lm bench's `nodePaths`).
 */
export async function bundlePage(entry, out, options = {}) {
  rmSync(out, { recursive: true, force: true });
  await build({
    entryPoints: { page: entry }, bundle: true, format: 'esm', platform: 'browser', target: 'es2022', outdir: out,
    loader: { '.wgsl': 'text' }, absWorkingDir: root, logLevel: 'warning', plugins: [nodeStubs], ...options,
  });
  writeFileSync(join(out, 'index.html'), '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><link rel="icon" href="data:,">' +
    '<title>tfjs-mixers: peers bench</title></head>\n<body data-state="loading">\n<script type="module" src="page.js"></script>\n</body>\n</html>\n');
}

/** A headless Chromium with its own profile; `close()` removes it. */
export async function openBrowser() {
  if (!existsSync(executablePath)) throw new Error(`bench:peers: no Chromium at ${executablePath}. ${GET_CHROMIUM}`);
  const profile = mkdtempSync(join(tmpdir(), 'tfjs-mixers-peers-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: CHROMIUM_FLAGS });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Serves the bundled page in `dir` (and `mounts`: URL prefix → folder) and opens it in the
 * browser's `context`, once ready; its errors and warnings go to `log`. `close()` stops the server.
 */
export async function openPage(context, dir, mounts, log) {
  const { server, url } = await serve(dir, 0, mounts);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') log(`page ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await page.goto(`${url}index.html`);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', undefined, { timeout: 60_000 });
  return { page, url, close: () => server.close() };
}

/** The results files' path without extension: `<dir>/chromium-<adapter>.<kind>`. */
export function resultsBase(dir, adapter, kind) {
  const slug = `chromium ${adapter}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 80).replace(/^-+|-+$/g, '') || 'unknown-adapter';
  return join(dir, `${slug}.${kind}`);
}

/** Load averages (1, 5, 15 min) as the tables print them. */
export const loads = (l) => l.map((x) => x.toFixed(2)).join(', ');
