import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import geluMath from '../../kernels/dense/gelu-math.wgsl';
import body from '../../kernels/dense/gelu.wgsl';
import { grid1d, namedInputs, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../webgpu/runtime.js';

/** tfjs kernel name. Input `x` (float32); output gelu(x) = x·Φ(x), elementwise (`kernels/dense/gelu.wgsl`). */
export const GELU = 'MixersGelu';
/** tfjs kernel name. Inputs `x` and `dy`; output dy·gelu′(x), GELU's gradient. */
export const GELU_GRAD = 'MixersGeluGrad';

const KERNEL: KernelSource = { name: 'Gelu', code: [grid, geluMath, body].join('\n') };
const WG = 256;

function launch(backend: WebGPUBackend, x: tf.TensorInfo, dy: tf.TensorInfo | null): tf.TensorInfo {
  const n = tf.util.sizeFromShape(x.shape);
  return runKernel(backend, KERNEL, {
    inputs: [x, dy ?? x],
    outputs: [x.shape],
    params: [{ u32: n }],
    constants: { WG, GRAD: dy ? 1 : 0 },
    workgroups: grid1d(n, WG),
  })[0]!;
}

registerKernelOnce({
  kernelName: GELU,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => launch(backend as WebGPUBackend, namedInputs(inputs, 'x').x, null),
});

registerKernelOnce({
  kernelName: GELU_GRAD,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const { x, dy } = namedInputs(inputs, 'x', 'dy');
    return launch(backend as WebGPUBackend, x, dy);
  },
});

registerGradientOnce({
  kernelName: GELU,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => {
    const [x] = saved as tf.Tensor[];
    return { x: () => tf.engine().runKernel(GELU_GRAD, { x: x!, dy: dy as tf.Tensor }) as tf.Tensor };
  },
});

// the gradient's own, in tfjs ops (differentiable on): d(dy·g′(x)) = dy·g″(x)·dx + g′(x)·d(dy),
// g′ = Φ + x·φ and g″ = φ·(2 − x²)
registerGradientOnce({
  kernelName: GELU_GRAD,
  inputsToSave: ['x', 'dy'],
  gradFunc: (ddx, saved) => {
    const [x, dy] = saved as tf.Tensor[];
    const upstream = ddx as tf.Tensor;
    const square = tf.square(x!);
    const density = tf.mul(1 / Math.sqrt(2 * Math.PI), tf.exp(tf.mul(-0.5, square)));
    return {
      x: () => tf.mul(tf.mul(upstream, dy!), tf.mul(density, tf.sub(2, square))),
      dy: () => tf.mul(upstream, tf.add(geluCdf(x!), tf.mul(x!, density))),
    };
  },
});

/** Φ(x) = (1 + erf(x/√2))/2, in tfjs ops. */
function geluCdf(x: tf.Tensor): tf.Tensor {
  return tf.mul(0.5, tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
}

/** gelu(x) = x·Φ(x) in tfjs ops: the reference, on every backend. */
export function geluReference<T extends tf.Tensor>(x: T): T {
  return tf.mul(x, geluCdf(x)) as T;
}

/** gelu(x) through the webgpu kernel. */
export function geluKernel<T extends tf.Tensor>(x: T): T {
  return tf.engine().runKernel(GELU, { x }) as T;
}
