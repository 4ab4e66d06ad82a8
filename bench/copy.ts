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
 * The same vec4 copy as `kernels/common/copy.wgsl`, written as a tfjs `WebGPUProgram`: tfjs
 * generates the bindings (output at 0, `x` at 1, `uniforms` at 2, both arrays of vec4 through
 * `outputComponent` and `variableComponents`) and the `_start` entry point, which calls
 * `main(getGlobalIndex())` for a flat dispatch layout.
 */
class CopyProgram implements WebGPUProgram {
  variableNames = ['x'];
  outputShape: number[];
  shaderKey = 'mixersBenchCopy';
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [WG, 1, 1];
  outputComponent = 4;
  variableComponents = [4];
  // asks tfjs for `uniforms.size`, the output's length in vec4s
  size = true;

  constructor(length: number) {
    this.outputShape = [length];
    this.dispatch = [Math.ceil(length / 4 / WG), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index: i32) {
        if (index < uniforms.size) {
          result[index] = x[index];
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
  if (length % 4 !== 0) throw new Error(`bench: the copy moves vec4s; ${length} elements is not a multiple of 4.`);
  const info = path === 'runKernel'
    ? runKernel(backend, COPY, {
      inputs: [x],
      outputs: [[length]],
      params: [{ u32: length / 4 }],
      constants: { WG },
      workgroups: grid1d(length / 4, WG),
    })[0]!
    : backend.runWebGPUProgram(new CopyProgram(length), [x], 'float32');
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
}
