/**
 * Runs the `--backend` section of `npm run bench` (bench/backends.ts) and writes its report to
 * `bench/results/runs/<backend>-backends.{json,md}`: in this process for cpu and wasm, and for
 * webgl in a headless-Chromium page (bench/backends-page.ts, bundled and served on 127.0.0.1 as
 * the peers bench's pages are), whose WebGL is the machine's GPU or, without one, SwiftShader.
 *
 * @packageDocumentation
 */
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backendsFileName, backendsMarkdown, runBackends, type BackendsMeasurement, type BackendsOptions, type BackendsReport } from './backends.js';
import type { BackendsBench } from './backends-page.js';

const here = dirname(fileURLToPath(import.meta.url));

const uptime = () => {
  try {
    return execSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return 'uptime unavailable';
  }
};

/** The commit measured and whether src/ differs from it, from git (read-only), or "unknown". */
function commitOf(): string {
  try {
    const head = execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execSync('git status --porcelain src', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty ? `${head} with uncommitted changes in src/` : head;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/** The section run in a headless-Chromium page on its webgl backend, and where it ran. */
async function inBrowser(options: BackendsOptions, seed: number, log: (line: string) => void): Promise<{ measured: BackendsMeasurement; runtime: string }> {
  const { bundlePage, openBrowser, openPage } = await import('./peers/browser.mjs');
  const out = join(here, 'dist', 'backends-page');
  await bundlePage(join(here, 'backends-page.ts'), out);
  const browser = await openBrowser();
  try {
    const { page, close } = await openPage(browser.context, out, {}, log);
    try {
      page.on('console', (m) => { if (m.type() === 'log') log(m.text()); });
      const agent = await page.evaluate(() => navigator.userAgent);
      const { renderer, ...measured } = await page.evaluate(([o, s]) =>
        (window as unknown as { backendsBench: BackendsBench }).backendsBench.run(o, s), [options, seed] as const);
      return { measured, runtime: `${agent.match(/HeadlessChrome\/[\d.]+|Chrome\/[\d.]+/)?.[0] ?? agent}, WebGL: ${renderer}` };
    } finally {
      close();
    }
  } finally {
    await browser.close();
  }
}

/** Runs the section on `options.backend`, prints its markdown and writes its report; returns it. */
export async function measureBackends(
  options: BackendsOptions, resultsDir: string, seed: number, log: (line: string) => void,
): Promise<BackendsReport> {
  const uptimeBefore = uptime();
  log(`backends: ${options.backend}; ${uptimeBefore}`);
  const { measured, runtime } = options.backend === 'webgl'
    ? await inBrowser(options, seed, log)
    : { measured: await runBackends(options, seed, log), runtime: `Node ${process.version}` };
  const report: BackendsReport = { ...measured, label: options.label, commit: commitOf(), runtime, uptimeBefore, uptimeAfter: uptime() };
  log(`backends: ${report.uptimeAfter}`);
  const dir = join(resultsDir, 'runs');
  mkdirSync(dir, { recursive: true });
  const base = join(dir, backendsFileName(options));
  const markdown = backendsMarkdown(report);
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.md`, `${markdown}\n`);
  console.log(markdown);
  log(`wrote ${base}.json and .md`);
  return report;
}
