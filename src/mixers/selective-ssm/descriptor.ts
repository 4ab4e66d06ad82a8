import * as tf from '@tensorflow/tfjs';
import type { MixerDescriptor } from '../descriptor.js';
import { selectiveScan } from './op.js';
import { selectiveSSM, SelectiveSSM, type SelectiveSSMArgs } from './layer.js';

/** The bench case's inner width and state size (the off-WebGPU bench's SelectiveSSM target is at these). */
const [E, N] = [64, 16];

/** SelectiveSSM's {@link MixerDescriptor}. */
export const SELECTIVE_SSM: MixerDescriptor = {
  name: 'selectiveSSM',
  className: SelectiveSSM.className,
  guide: 'selective-ssm',
  ops: ['selectiveScan', 'selectiveScanWithState', 'selectiveScanStep'],
  layer: (args) => selectiveSSM(args as SelectiveSSMArgs),
  blockArgs: () => ({ expand: 2, stateSize: 16, convKernel: 4 }),
  decode: 'state',
  segments: false,
  // the gradients of A, D and deltaBias sum over all T steps, and their rounding grows with T
  kernels: { tolerance: 1e-3 },
  benchCase: (T, seed) => {
    const r = (shape: number[], lo: number, hi: number, s: number) => tf.randomUniform(shape, lo, hi, 'float32', seed + s);
    return {
      op: 'selectiveScan',
      about: `u, delta, z [1, ${T}, ${E}], A [${E}, ${N}], B, C [1, ${T}, ${N}], D, deltaBias [${E}]: Mamba's block at ` +
        'initialisation (A = −(1…N) per channel, D = 1, softplus(delta + deltaBias) ≈ 0.001…0.1)',
      names: ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'deltaBias'],
      inputs: tf.tidy(() => [
        r([1, T, E], -1, 1, 0), r([1, T, E], -1, 1, 1), tf.neg(tf.tile(tf.range(1, N + 1).reshape([1, N]), [E, 1])),
        r([1, T, N], -1, 1, 2), r([1, T, N], -1, 1, 3), tf.ones([E]), r([1, T, E], -2, 2, 4), r([E], -6.9, -2.25, 5),
      ]),
      constants: [],
      outputShape: [1, T, E],
      run: (implementation, [u, delta, A, B, C, D, z, deltaBias]) => selectiveScan(
        u as tf.Tensor3D, delta as tf.Tensor3D, A as tf.Tensor2D, B as tf.Tensor3D, C as tf.Tensor3D,
        { D: D as tf.Tensor1D, z: z as tf.Tensor3D, deltaBias: deltaBias as tf.Tensor1D, deltaSoftplus: true, implementation }),
    };
  },
};
