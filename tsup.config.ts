import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', node: 'src/node.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // the WGSL kernels live in kernels/**/*.wgsl and are bundled as strings
  loader: { '.wgsl': 'text' },
  external: ['@tensorflow/tfjs', '@tensorflow/tfjs-backend-webgpu', 'webgpu'],
});
