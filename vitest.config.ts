import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { defineConfig, type Plugin } from 'vitest/config';

/** Loads `.wgsl` files as strings, as tsup's text loader does for the build. */
function wgslAsText(): Plugin {
  return {
    name: 'wgsl-as-text',
    load(id) {
      if (!id.endsWith('.wgsl')) return null;
      return `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`;
    },
  };
}

export default defineConfig({
  plugins: [wgslAsText()],
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup/webgpu.ts'],
    // Most of a kernel test's time is SwiftShader compiling its pipelines, which takes one core:
    // files run side by side, at least two at a time (a whole run on 2 cores took 33.5 min one
    // file at a time, 22.8 min two at a time)
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // a hang guard: the slowest test takes 70 s alone on 2 cores
    testTimeout: 240_000,
    hookTimeout: 60_000,
  },
});
