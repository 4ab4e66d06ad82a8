// Bundles the browser demo's pages (timing.ts, generate.ts, train.ts) with esbuild into
// examples/browser/dist/, together with @tensorflow/tfjs, @tensorflow/tfjs-backend-webgpu and the
// BUILT library: run `npm run build` first. Use: `npm run build:examples`.
//
// The pages and examples/char-lm/model.ts import the library as '../../src/index.js' (so that the
// repository's `tsc` checks them against the sources); here that import is resolved as the
// package name 'tfjs-mixers', through package.json's exports map (self-reference), i.e. dist/.
import { build } from 'esbuild';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeStubs } from './node-stubs.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const libraryEntry = join(root, 'src', 'index.ts');
// the one declaration of tfjs-backend-webgpu's private members, which the pages read too; it is
// not public API, so it is bundled from source
const backendInternals = join(root, 'src', 'webgpu', 'internals.ts');

const built = join(root, 'dist', 'index.js');
if (!existsSync(built)) {
  console.error('build:examples: dist/index.js is missing; run `npm run build` first.');
  process.exit(1);
}
// a stale dist would demo yesterday's kernels: say so rather than fail (a source edit is not a bug)
const newest = (dir) => readdirSync(dir, { withFileTypes: true }).reduce((t, e) => {
  const p = join(dir, e.name);
  return Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
}, 0);
if (Math.max(newest(join(root, 'src')), newest(join(root, 'kernels'))) > statSync(built).mtimeMs) {
  console.warn('build:examples: src/ or kernels/ is newer than dist/: run `npm run build` to demo the current code.');
}

/** Routes the library's source entry to the built package, and refuses any other src/ import but the internals. */
const builtLibrary = {
  name: 'built-library',
  setup(b) {
    b.onResolve({ filter: /\/src\// }, async (args) => {
      if (args.importer.includes('/node_modules/')) return undefined;
      const target = resolve(args.resolveDir, args.path).replace(/\.js$/, '.ts');
      if (target === libraryEntry) {
        const result = await b.resolve('tfjs-mixers', { kind: args.kind, resolveDir: root });
        if (result.errors.length > 0) return { errors: result.errors };
        if (!result.path.startsWith(join(root, 'dist'))) {
          return { errors: [{ text: `'tfjs-mixers' resolved to ${result.path}, not to dist/.` }] };
        }
        return { path: result.path };
      }
      if (target === backendInternals) return undefined;
      if (target.startsWith(join(root, 'src'))) {
        return { errors: [{ text: `${relative(root, target)}: the pages may import the library only through src/index.js.` }] };
      }
      return undefined;
    });
  },
};

const started = performance.now();
// chunk names carry a hash: clear the old ones
rmSync(join(here, 'dist'), { recursive: true, force: true });
const result = await build({
  entryPoints: { timing: join(here, 'timing.ts'), generate: join(here, 'generate.ts'), train: join(here, 'train.ts') },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  outdir: join(here, 'dist'),
  minify: true,
  // the pages share tfjs and the library: one chunk, cached across pages
  splitting: true,
  sourcemap: true,
  metafile: true,
  absWorkingDir: root,
  plugins: [builtLibrary, nodeStubs],
  logLevel: 'warning',
});
// paths relative to absWorkingDir: the library must come from dist/, none of it from src/ but the internals
const inputs = Object.keys(result.metafile.inputs);
if (!inputs.includes('dist/index.js') || inputs.some((p) => p.startsWith('src/') && p !== 'src/webgpu/internals.ts')) {
  throw new Error('build:examples: the bundle must hold the built library (dist/index.js) and nothing of src/ but src/webgpu/internals.ts.');
}
for (const [file, { bytes }] of Object.entries(result.metafile.outputs)) {
  if (file.endsWith('.js')) console.log(`${file}: ${(bytes / 1024).toFixed(0)} KiB`);
}
console.log(`build:examples: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
