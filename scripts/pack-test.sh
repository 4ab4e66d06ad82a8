#!/usr/bin/env bash
# Packs the library, installs the tarball into a throwaway project and uses it from both
# module systems: what a user gets from `npm install tfjs-mixers`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

tarball="$(cd "$root" && npm pack --silent --pack-destination "$work" | tail -n 1)"
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --prefer-offline "./$tarball" @tensorflow/tfjs@4.22.0 >/dev/null

cat > esm.mjs <<'JS'
import * as tf from '@tensorflow/tfjs';
import { layers, ops, CausalGeneration } from 'tfjs-mixers';
await tf.setBackend('cpu');
const model = tf.sequential({ layers: [
  tf.layers.embedding({ inputDim: 10, outputDim: 8, inputLength: 5 }),
  layers.averageContext(),
  tf.layers.dense({ units: 10 }),
]});
const y = model.predict(tf.tensor2d([[1, 2, 3, 4, 5]]));
if (y.shape.join() !== '1,5,10') throw new Error(`unexpected shape ${y.shape}`);
const m = await ops.causalGeneration(tf.tensor3d([[[1], [3], [0]]])).data();
if (Array.from(m).join() !== '1,1,0') throw new Error(`unexpected values ${m}`);
if (CausalGeneration.className !== 'tfjs-mixers>CausalGeneration') throw new Error('class export missing');
console.log('pack-test: ESM import ran a model with AverageContext');
JS
cat > cjs.cjs <<'JS'
const tf = require('@tensorflow/tfjs');
const { layers } = require('tfjs-mixers');
tf.setBackend('cpu').then(() => {
  const layer = layers.causalGeneration({ reduce: 'max' });
  const y = layer.apply(tf.ones([2, 3, 4]));
  if (y.shape.join() !== '2,3,4') throw new Error(`unexpected shape ${y.shape}`);
  console.log('pack-test: CJS require ran a CausalGeneration layer');
});
JS
cat > dual.mjs <<'JS'
// both builds in one process (an ESM app with a CJS dependency that requires the library):
// each kernel and gradient registers once, and nothing warns about it
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
const warnings = [];
const warn = console.warn;
console.warn = (...args) => { warnings.push(args.join(' ')); };
const esm = await import('tfjs-mixers');
const cjs = createRequire(import.meta.url)('tfjs-mixers');
console.warn = warn;
if (esm === cjs) throw new Error('pack-test: import and require gave the same module; expected dist/index.js and dist/index.cjs');
if (warnings.length > 0) throw new Error(`pack-test: loading both builds warned:\n${warnings.join('\n')}`);
for (const name of ['MixersCausalGeneration', 'MixersFlashAttention', 'MixersSelectiveScan']) {
  if (!tf.getKernel(name, 'webgpu')) throw new Error(`pack-test: kernel ${name} is not registered for webgpu`);
}
if (!tf.getGradient('MixersFlashAttention')) throw new Error('pack-test: the MixersFlashAttention gradient is not registered');
console.log('pack-test: the ESM and CJS builds loaded together register each kernel once, without warnings');
JS
node esm.mjs
node cjs.cjs
node dual.mjs
