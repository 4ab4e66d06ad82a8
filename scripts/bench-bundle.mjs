// Bundles `npm run bench`, `bench:profile`, `bench:tune` and `example:experiment` into one ES module each, for
// a machine that has Node but not this repo's node_modules (a lent GPU machine):
// `node scripts/bench-bundle.mjs OUT_DIR` writes OUT_DIR/{bench,profile,tune,experiment}.mjs plus the
// `webgpu` package for linux-x64 beside them; then e.g. `node OUT_DIR/bench.mjs --results DIR`.
import { build } from 'esbuild';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2];
if (!out) throw new Error('usage: node scripts/bench-bundle.mjs OUT_DIR');
await build({
  entryPoints: { bench: 'bench/run.ts', profile: 'bench/profile.ts', tune: 'bench/tune.ts', experiment: 'examples/char-lm/experiment.ts' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outdir: out,
  outExtension: { '.js': '.mjs' },
  loader: { '.wgsl': 'text' },
  // Dawn is a native addon: it is copied, not bundled
  external: ['webgpu'],
  // tfjs's CommonJS modules call require() for Node built-ins
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  logLevel: 'warning',
});
const webgpu = join(out, 'node_modules', 'webgpu');
mkdirSync(join(webgpu, 'dist'), { recursive: true });
for (const file of ['package.json', 'index.js']) cpSync(join('node_modules', 'webgpu', file), join(webgpu, file));
cpSync(join('node_modules', 'webgpu', 'dist', 'linux-x64'), join(webgpu, 'dist', 'linux-x64'), { recursive: true });
