import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../kernels/common/grid.wgsl';
import copyBody from '../kernels/common/copy.wgsl';
import { grid1d, runKernel, type KernelSource } from '../src/webgpu/runtime.js';

/** The two ways a custom kernel can reach the GPU through tfjs. */
export type RuntimePath = 'runKernel' | 'runWebGPUProgram';
export const RUNTIME_PATHS: readonly RuntimePath[] = ['runKernel', 'runWebGPUProgram'];

const WG = 256;
const COPY: KernelSource = { name: 'BenchCopy', code: [grid, copyBody].join('\n') };

/**
 * The same copy as `kernels/common/copy.wgsl`, written as a tfjs `WebGPUProgram`: tfjs
 * generates the bindings (output at 0, `x` at 1, `uniforms` at 2), the accessors and the
 * `_start` entry point, which calls `main(getGlobalIndex())` for a flat dispatch layout.
 */
class CopyProgram implements WebGPUProgram {
  variableNames = ['x'];
  outputShape: number[];
  shaderKey = 'mixersBenchCopy';
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [WG, 1, 1];
  // asks tfjs for `uniforms.size`, the output's element count
  size = true;

  constructor(length: number) {
    this.outputShape = [length];
    this.dispatch = [Math.ceil(length / WG), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index: i32) {
        if (index < uniforms.size) {
          setOutputAtIndex(index, getXByOutputIndex(index));
        }
      }
    `;
  }
}

/**
 * Copies a 1-D float32 tensor through one runtime path, recording one dispatch into tfjs's
 * command encoder. The result is an ordinary tensor.
 */
export function copy(backend: WebGPUBackend, x: tf.Tensor1D, path: RuntimePath): tf.Tensor1D {
  const length = x.size;
  const info = path === 'runKernel'
    ? runKernel(backend, COPY, {
      inputs: [x],
      outputs: [[length]],
      params: [{ u32: length }],
      constants: { WG },
      workgroups: grid1d(length, WG),
    })[0]!
    : backend.runWebGPUProgram(new CopyProgram(length), [x], 'float32');
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
}
