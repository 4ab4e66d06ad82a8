import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../kernels/common/grid.wgsl';
import ceilingBody from '../kernels/common/ceiling.wgsl';
import { expandCopies } from '../src/webgpu/copies.js';
import { runKernel, type KernelSource } from '../src/webgpu/runtime.js';

/**
 * Where the second factor of a ceiling's products comes from: registers, or workgroup memory read
 * by every lane at one address, by neighbouring lanes in pairs at eight addresses side by side
 * (lanes 2k and 2k + 1 alike), or by each lane of eight at its own address of eight (no two
 * neighbours alike).
 */
export type CeilingReads = 'registers' | 'one address' | 'pairs' | 'spread';

/**
 * One of the compute ceilings `npm run bench:profile` measures (`kernels/common/ceiling.wgsl`):
 * vec4 multiply-adds into R accumulators, their second factor read once for all R; or, `held`,
 * into 16 accumulators each reading its own (R = 1), so that an invocation holds 128 floats of
 * accumulators and factors, as a pass holds its rows.
 */
export interface Ceiling {
  name: string;
  R: number;
  reads: CeilingReads;
  held?: true;
}

/**
 * The ceilings profiled: registers alone, then 1, 2 and 4 products per vec4 read, each read at
 * one address, in pairs and spread, and one read at one address a product with a pass's
 * registers held. A pass by rows reads a key's vec4 at one address for one product (R = 1),
 * holding its row's query and accumulators (128 floats at K = 64); a block of scores reads two
 * vec4s for 16 multiply-adds (R = 2), each in pairs (common/score-blocks.wgsl, blockAt); the
 * forward's values step four products per read.
 */
export const CEILINGS: readonly Ceiling[] = [
  { name: 'registers', R: 8, reads: 'registers' },
  ...[1, 2, 4].flatMap((R) => (['one address', 'pairs', 'spread'] as const).map((reads) => ({ name: `R=${R} ${reads}`, R, reads }))),
  { name: 'R=1 one address, 128 floats held', R: 1, reads: 'one address', held: true },
];

/** Accumulators of a ceiling: 16 where it holds a pass's registers, else R. */
export const ceilingAccumulators = (c: Ceiling) => (c.held ? 16 : c.R);

/** The kernel's constants for a way of reading: the staged rows' width, lanes per address in a row, and whether it reads. */
const READS: Record<CeilingReads, { spread: number; pair: number; reads: boolean }> = {
  registers: { spread: 1, pair: 1, reads: false },
  'one address': { spread: 1, pair: 1, reads: true },
  pairs: { spread: 8, pair: 2, reads: true },
  spread: { spread: 8, pair: 1, reads: true },
};

/** vec4s the kernel reads from its input: 32 rows of 1 or 8 staged, a factor per accumulator, 4 held in registers. */
export const ceilingInputs = (c: Ceiling) => Math.max(32 * READS[c.reads].spread, ceilingAccumulators(c), 4);

const WG = 256;
const kernels = new Map<string, KernelSource>();

function kernelFor(c: Ceiling): KernelSource {
  let k = kernels.get(c.name);
  if (!k) {
    const { spread, pair, reads } = READS[c.reads];
    k = {
      name: `BenchCeiling${reads ? `R${c.R}Spread${spread}Pair${pair}${c.held ? 'Held' : ''}` : 'Registers'}`,
      code: expandCopies([`const STEP = ${c.held ? ceilingAccumulators(c) : 1}u;`, `const SPREAD = ${spread}u;`, `const PAIR = ${pair}u;`,
        `const READS = ${reads};`, grid, ceilingBody].join('\n'), ceilingAccumulators(c)),
    };
    kernels.set(c.name, k);
  }
  return k;
}

/** Multiply-adds times two of one launch of `workgroups` workgroups for `passes` passes. */
export const ceilingFlops = (c: Ceiling, workgroups: number, passes: number) => 2 * 4 * c.R * 32 * passes * workgroups * WG;

/**
 * One launch of a ceiling's kernel: `workgroups` workgroups of 256 invocations, each sweeping the
 * staged vec4s `passes` times. `input` holds at least {@link ceilingInputs} vec4s, flat. Returns `[workgroups · 256, 4]`, each invocation's sum of its accumulators.
 */
export function runCeiling(backend: WebGPUBackend, c: Ceiling, input: tf.Tensor1D, workgroups: number, passes: number): tf.Tensor2D {
  const least = 4 * ceilingInputs(c);
  if (input.size < least) throw new Error(`bench ceiling ${c.name}: input must hold at least ${least} floats; received ${input.size}.`);
  const invocations = workgroups * WG;
  const [info] = runKernel(backend, kernelFor(c), {
    inputs: [input],
    outputs: [[invocations, 4]],
    params: [{ u32: passes }],
    constants: { WG },
    workgroups: [workgroups, 1, 1],
  });
  return tf.engine().makeTensorFromTensorInfo(info!) as tf.Tensor2D;
}
