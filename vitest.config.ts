import { readFileSync } from 'node:fs';
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
    // SwiftShader runs compute on the CPU: give it the cores, one test file at a time
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
