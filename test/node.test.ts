import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeOn, expectNoLeaks, webgpuAdapter } from './helpers.js';

const nodeModule = pathToFileURL(resolve('src/node.ts')).href;
const scratch = mkdtempSync(join(tmpdir(), 'tfjs-mixers-node-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * Runs an ES module script in a fresh Node (TypeScript through tsx, as `npm run bench` does),
 * with the Vulkan driver variables that test/setup/webgpu.ts may have set removed, so that
 * installWebGPU chooses its adapter itself.
 */
function runNode(script: string, opts: { imports?: string[]; env?: Record<string, string> } = {}) {
  const env = { ...process.env, ...opts.env };
  if (!opts.env?.VK_ICD_FILENAMES) delete env.VK_ICD_FILENAMES;
  delete env.VK_DRIVER_FILES;
  const imports = ['tsx', ...(opts.imports ?? [])].flatMap((m) => ['--import', m]);
  const child = spawnSync(process.execPath, [...imports, '--input-type=module', '-e', script], {
    env, encoding: 'utf8', timeout: 60_000,
  });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe('installWebGPU in a fresh Node process', () => {
  it('prints nothing to stderr while it looks for an adapter, and uninstall removes what it added', () => {
    const run = runNode(`
      const { installWebGPU } = await import(${JSON.stringify(nodeModule)});
      const immediate = globalThis.setImmediate;
      const gpu = await installWebGPU();
      const installed = {
        kind: gpu?.kind ?? null, gpu: !!globalThis.navigator?.gpu, canvas: typeof OffscreenCanvas, polls: globalThis.setImmediate !== immediate,
        poll: gpu?.poll ?? null,
      };
      gpu?.uninstall();
      const removed = { gpu: !!globalThis.navigator?.gpu, canvas: typeof OffscreenCanvas, polls: globalThis.setImmediate !== immediate };
      console.log(JSON.stringify({ installed, removed }));
    `);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const found = webgpuAdapter() !== null;
    const kind = webgpuAdapter()?.kind ?? null;
    expect(JSON.parse(run.stdout)).toEqual({
      // poll 'auto': Dawn's polls yield on SwiftShader only
      installed: {
        kind, gpu: found, canvas: found ? 'function' : 'undefined', polls: kind === 'swiftshader', poll: found ? (kind === 'swiftshader' ? 'yield' : 'busy') : null,
      },
      removed: { gpu: false, canvas: 'undefined', polls: false },
    });
  });

  // Dawn's polls are anonymous native functions that schedule themselves again from
  // setImmediate while a read waits; a proxy of an anonymous arrow is one to
  // Function.prototype.toString. A chain that polls without pause makes thousands of polls in
  // 30 ms; a millisecond's timer apart (libuv measures it from the loop's cached time, so one
  // may come sooner), some 30
  it('with poll \'yield\', a wait polls without pause for a few ms, then a millisecond apart; other callbacks are left alone', () => {
    const run = runNode(`
      const { installWebGPU } = await import(${JSON.stringify(nodeModule)});
      let bad;
      try { await installWebGPU({ poll: 'sometimes' }); } catch (e) { bad = e.message; }
      const gpu = await installWebGPU({ poll: 'yield' });
      const times = [];
      await new Promise((done) => {
        const poll = new Proxy((() => () => {
          times.push(performance.now());
          if (performance.now() - times[0] < 40) setImmediate(poll); else done();
        })(), {});
        setImmediate(poll);
      });
      const gaps = times.slice(1).map((t, i) => t - times[i]);
      const late = gaps.filter((g, i) => times[i] - times[0] > 10);
      // a plain callback still runs before a timer of a millisecond set just before it
      const order = [];
      await new Promise((done) => { setTimeout(() => { order.push('timer'); done(); }, 1); setImmediate(() => order.push('plain')); });
      gpu?.uninstall();
      console.log(JSON.stringify({ bad, polls: times.length, late: late.length, order }));
    `);
    expect(run.status).toBe(0);
    const out = JSON.parse(run.stdout) as { bad: string; polls: number; late: number; order: string[] };
    expect(out.bad).toBe("installWebGPU: option 'poll' must be 'auto', 'busy' or 'yield'; received \"sometimes\".");
    // the polls of the last 30 ms
    expect(out.late).toBeGreaterThan(5);
    expect(out.late).toBeLessThanOrEqual(60);
    expect(out.order).toEqual(['plain', 'timer']);
  });

  it('throws an error naming the missing webgpu package and the npm install to run', () => {
    // resolves the bare specifier 'webgpu' from an empty folder, as if it were not installed
    const empty = mkdtempSync(join(scratch, 'empty-'));
    writeFileSync(join(scratch, 'hide-webgpu.mjs'), `
      export function resolve(specifier, context, next) {
        if (specifier !== 'webgpu') return next(specifier, context);
        return next(specifier, { ...context, parentURL: ${JSON.stringify(pathToFileURL(join(empty, 'index.mjs')).href)} });
      }
    `);
    writeFileSync(join(scratch, 'register.mjs'),
      `import { register } from 'node:module'; register('./hide-webgpu.mjs', import.meta.url);`);
    const run = runNode(`
      const { installWebGPU } = await import(${JSON.stringify(nodeModule)});
      try {
        console.log(JSON.stringify({ returned: await installWebGPU() }));
      } catch (e) {
        console.log(JSON.stringify({ threw: e.message }));
      }
    `, { imports: [pathToFileURL(join(scratch, 'register.mjs')).href] });
    expect(run.status).toBe(0);
    const out = JSON.parse(run.stdout) as { threw?: string };
    expect(out.threw).toMatch(/installWebGPU/);
    expect(out.threw).toMatch(/`webgpu` package/);
    expect(out.threw).toMatch(/not installed/);
    expect(out.threw).toContain('npm install webgpu');
  });

  it('returns null, installing nothing, when the package loads but the named driver offers no adapter', () => {
    const run = runNode(`
      const { installWebGPU } = await import(${JSON.stringify(nodeModule)});
      const gpu = await installWebGPU();
      console.log(JSON.stringify({ gpu, navigator: !!globalThis.navigator?.gpu, canvas: typeof OffscreenCanvas }));
    `, { env: { VK_ICD_FILENAMES: join(scratch, 'no-such-driver.json') } });
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ gpu: null, navigator: false, canvas: 'undefined' });
  });
});

describeOn('webgpu', 'synchronous reads after installWebGPU', () => {
  it('dataSync and arraySync throw an error that says to use await tensor.data()', async () => {
    await expectNoLeaks(async () => {
      // square runs on the GPU (test/helpers.ts turns off CPU forwarding), so its values live there
      const x = tf.tensor1d([1, 2, 3]);
      const y = x.square();
      expect(() => y.dataSync()).toThrow(/dataSync\(\).*`await tensor\.data\(\)`/s);
      expect(() => y.arraySync()).toThrow(/`await tensor\.data\(\)` or `await tensor\.array\(\)`/);
      // the failed read leaves the tensor readable the asynchronous way
      expect(Array.from(await y.data())).toEqual([1, 4, 9]);
      expect(await y.array()).toEqual([1, 4, 9]);
      tf.dispose([x, y]);
    });
  });
});
