// Registers scripts/wgsl-loader.mjs, so Node (with tsx) imports `.wgsl` files as text, as
// tsup's text loader and the vitest plugin do. Use: node --import tsx --import ./scripts/wgsl-hooks.mjs
import { register } from 'node:module';

register('./wgsl-loader.mjs', import.meta.url);
