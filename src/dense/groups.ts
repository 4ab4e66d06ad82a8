import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import grid from '../../kernels/common/grid.wgsl';
import groupsJob from '../../kernels/dense/dense-groups.wgsl';
import sumJob from '../../kernels/dense/dense-sum.wgsl';
import quads from '../../kernels/dense/dense-quads.wgsl';
import pack from '../../kernels/dense/pack.wgsl';
import { useKernel, type Implementation } from '../validate.js';
import { expandCopies } from '../webgpu/copies.js';
import { grid1d, registerGradientOnce, registerKernelOnce, runKernel, type KernelSource } from '../webgpu/runtime.js';
import { DENSE_BODY, WG, columnSums, denseKernel, rowsFor } from './kernel.js';
import { dense } from './op.js';

/**
 * tfjs kernel name. Inputs, an array as tf.addN's (their number varies): A (2-D), then B_g
 * `[K, N_g]` for g < G (the attribute `groups`, 2 or 3), then none or one bias_g `[N_g]` each;
 * outputs C_g = op(A)·B_g + bias_g `[M, N_g]`, in one dispatch (with biases, two: they are packed
 * first). Every K and N_g a multiple of 4, and M too when A is transposed ({@link groupsFit}).
 * With the attribute `onesA`, A is a row of ones `[1, K]` that no buffer holds and the inputs are
 * the B_g alone: C_g is B_g's column sums (the biases' gradients).
 */
export const DENSE_GROUPS = 'MixersDenseGroups';

/**
 * tfjs kernel name. Inputs, an array: A_g `[M, K_g]` for g < G (2 or 3), then B_g `[N, K_g]`;
 * output C = Σ_g A_g·B_gᵀ `[M, N]`, in one dispatch. N and every K_g a multiple of 4.
 */
export const DENSE_SUM = 'MixersDenseSum';

/** The attributes of {@link DENSE_GROUPS}. */
interface GroupsAttrs {
  /** As tf.matMul's. */
  transposeA: boolean;
  /** G, the number of products. */
  groups: number;
  /** The biases come packed end to end, as one input (a call that records no gradient). */
  packed?: boolean;
  /** A is a row of ones `[1, K]`, not an input (see {@link DENSE_GROUPS}). */
  onesA?: boolean;
}

const MAX_GROUPS = 3;

/** The module of `parts` for G products, their copies written out. */
function groupSource(name: string, parts: string[], G: number): KernelSource {
  return { name, code: expandCopies([`const GROUPS: u32 = ${G}u;`, grid, ...parts].join('\n'), G) };
}

/** The kernels for G products. */
function kernelsFor(G: number): Record<'groups' | 'sum' | 'pack', KernelSource> {
  return {
    groups: groupSource('DenseGroups', [DENSE_BODY, groupsJob, quads], G),
    sum: groupSource('DenseSum', [DENSE_BODY, sumJob, quads], G),
    pack: groupSource('DensePackBias', [pack], G),
  };
}

/** The kernels by G, 2 or 3. */
const KERNELS: Record<number, ReturnType<typeof kernelsFor>> = { 2: kernelsFor(2), 3: kernelsFor(3) };

const sum = (ns: number[]) => ns.reduce((s, n) => s + n, 0);

/**
 * Whether op(A)·B_g for A `[M, K]` (`[K, M]` transposed) and every B_g `[K, N_g]` fits
 * {@link DENSE_GROUPS}: 2 or 3 products, read as vec4 rows.
 */
export function groupsFit(a: readonly number[], bs: ReadonlyArray<readonly number[]>, transposeA: boolean): boolean {
  const [M, K] = transposeA ? [a[1]!, a[0]!] : [a[0]!, a[1]!];
  return bs.length >= 2 && bs.length <= MAX_GROUPS && K % 4 === 0 && bs.every((b) => b[1]! % 4 === 0) &&
    (!transposeA || M % 4 === 0);
}

registerKernelOnce({
  kernelName: DENSE_GROUPS,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const gpu = backend as WebGPUBackend;
    const { transposeA, groups: G, packed: given, onesA } = attrs as unknown as GroupsAttrs;
    const list = Object.values(inputs) as tf.TensorInfo[];
    // a row of ones is no input: B_0 stands in for its binding, never read
    const first = onesA ? 0 : 1;
    const a = list[0]!;
    const bs = list.slice(first, first + G);
    const biases = list.slice(first + G);
    const [M, K] = onesA ? [1, bs[0]!.shape[0]!] : transposeA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
    const Ns = bs.map((b) => b.shape[1]!);
    const total = sum(Ns);
    const packed = given ? biases[0]! : biases.length > 0 ? runKernel(gpu, KERNELS[G]!.pack, {
      inputs: biases,
      outputs: [[total]],
      params: [...Ns, total].map((u32) => ({ u32 })),
      constants: { WG },
      workgroups: grid1d(total, WG),
    })[0]! : null;
    const rows = rowsFor(M, transposeA);
    const outputs = runKernel(gpu, KERNELS[G]!.groups, {
      // without biases their binding is never read: `a` stands in
      inputs: [a, ...bs, packed ?? a],
      outputs: Ns.map((N) => [M, N]),
      params: [M, K, ...Ns].map((u32) => ({ u32 })),
      constants: { WG, ROWS: rows, TRANSPOSE_A: transposeA ? 1 : 0, HAS_BIAS: packed ? 1 : 0, A_ONES: onesA ? 1 : 0 },
      workgroups: grid1d(Math.ceil(M / rows) * total / 4, WG),
    });
    if (packed && !given) gpu.disposeData(packed.dataId);
    return outputs;
  },
});

registerKernelOnce({
  kernelName: DENSE_SUM,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend }) => {
    const list = Object.values(inputs) as tf.TensorInfo[];
    const as = list.slice(0, list.length / 2);
    const bs = list.slice(list.length / 2);
    const M = as[0]!.shape[0]!;
    const N = bs[0]!.shape[0]!;
    const rows = rowsFor(M, false);
    return runKernel(backend as WebGPUBackend, KERNELS[as.length]!.sum, {
      inputs: [...as, ...bs],
      outputs: [[M, N]],
      params: [M, N, ...as.map((t) => t.shape[1]!)].map((u32) => ({ u32 })),
      constants: { WG, ROWS: rows, TRANSPOSE_B: 1 },
      workgroups: grid1d(Math.ceil(M / rows) * (N / 4), WG),
    })[0]!;
  },
});

/**
 * op(A)·B_g (+ bias_g) for every g: one fused launch where the shapes fit, else a product each.
 * `packed`, the biases end to end, stands in for them in the fused launch (no gradient reaches it).
 */
function groupProducts(a: tf.Tensor2D, bs: tf.Tensor2D[], transposeA: boolean, biases: tf.Tensor1D[] = [], packed?: tf.Tensor1D): tf.Tensor2D[] {
  if (!groupsFit(a.shape, bs.map((b) => b.shape), transposeA)) {
    return bs.map((b, g) => denseKernel(a, b, transposeA, false, biases[g]));
  }
  const attrs: GroupsAttrs = { transposeA, groups: bs.length, ...(packed ? { packed: true } : {}) };
  // an array of inputs, as tf.addN passes them: their number varies
  return tf.engine().runKernel(DENSE_GROUPS, [a, ...bs, ...(packed ? [packed] : biases)] as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap) as unknown as tf.Tensor2D[];
}

/**
 * 1ᵀ·B_g `[1, N_g]` for every B_g `[K, N_g]`: one launch of {@link DENSE_GROUPS} by a row of ones
 * that no buffer holds where the shapes fit, else {@link columnSums} each.
 */
function groupColumnSums(bs: tf.Tensor2D[], K: number): tf.Tensor2D[] {
  if (!groupsFit([1, K], bs.map((b) => b.shape), false)) return bs.map((b) => columnSums(b).reshape([1, -1]) as tf.Tensor2D);
  const attrs: GroupsAttrs = { transposeA: false, groups: bs.length, onesA: true };
  return tf.engine().runKernel(DENSE_GROUPS, bs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as unknown as tf.Tensor2D[];
}

/** Σ_g A_g·B_gᵀ for A_g `[M, K_g]`, B_g `[N, K_g]`: one launch (N and every K_g are multiples of 4 wherever it is called). */
function summedProducts(as: tf.Tensor2D[], bs: tf.Tensor2D[]): tf.Tensor2D {
  return tf.engine().runKernel(DENSE_SUM, [...as, ...bs] as unknown as tf.NamedTensorMap) as tf.Tensor2D;
}

/** `{ [first + g]: () => ts[g] }`: gradients computed together, handed out one input at a time. */
function handOut(first: number, ts: tf.Tensor[]): Record<string, () => tf.Tensor> {
  return Object.fromEntries(ts.map((t, g) => [String(first + g), () => t]));
}

// The gradients of the products (B_g's, bias_g's; A_g's of the sum) come from one launch each, made
// when the gradient function is called, inside tfjs's backward scope: what no input asks for is
// disposed with that scope. The input's gradient, one launch, is made only when asked for.
registerGradientOnce({
  kernelName: DENSE_GROUPS,
  saveAllInputs: true,
  gradFunc: (dy, saved, attrs) => {
    const { transposeA, groups: G, packed, onesA } = attrs as unknown as GroupsAttrs;
    if (packed) throw new Error(`tfjs-mixers: ${DENSE_GROUPS} with packed biases has no gradient; a call that records one passes them apart.`);
    const dcs = dy as unknown as tf.Tensor2D[];
    // column sums C_g = 1ᵀ·B_g: dB_g is dC_g on every row
    if (onesA) return handOut(0, dcs.map((dc, g) => tf.broadcastTo(dc, saved[g]!.shape)));
    const a = saved[0] as tf.Tensor2D;
    const bs = saved.slice(1, 1 + G) as tf.Tensor2D[];
    const hasBias = saved.length > 1 + G;
    // C_g = op(A)·B_g: dB_g = op(A)ᵀ·dC_g, dbias_g = 1ᵀ·dC_g, and dA = Σ_g dC_g·B_gᵀ, or Σ_g B_g·dC_gᵀ when A is stored transposed
    const dbs = groupProducts(a, dcs, !transposeA);
    const rows = transposeA ? a.shape[1] : a.shape[0];
    const dbiases = hasBias ? groupColumnSums(dcs, rows).map((d) => d.reshape([-1])) : [];
    return {
      0: () => transposeA ? summedProducts(bs, dcs) : summedProducts(dcs, bs),
      ...handOut(1, dbs),
      ...handOut(1 + G, dbiases),
    };
  },
});

registerGradientOnce({
  kernelName: DENSE_SUM,
  saveAllInputs: true,
  gradFunc: (dy, saved) => {
    const dc = dy as tf.Tensor2D;
    const G = saved.length / 2;
    const as = saved.slice(0, G) as tf.Tensor2D[];
    const bs = saved.slice(G) as tf.Tensor2D[];
    // C = Σ_g A_g·B_gᵀ: dA_g = dC·B_g, dB_g = dCᵀ·A_g
    return { ...handOut(0, groupProducts(dc, bs, false)), ...handOut(G, groupProducts(dc, as, true)) };
  },
});

/**
 * The projections of one input by several kernels, `x·W_g + b_g` over the last axis, as
 * `ops.dense` computes each: on webgpu, where the shapes fit, in one launch forward and one for
 * each gradient (the inputs', the kernels', the biases'), not one per kernel. A layer's query,
 * key and value projections go through it.
 *
 * @param x `[..., K]` float32.
 * @param kernels 1 to 3 of `[K, N_g]` float32.
 * @param biases none, or one `[N_g]` per kernel.
 * @param packed the biases end to end, `[Σ N_g]`, which the fused launch then reads in their
 *   place: for a call that records no gradient (a layer keeps them packed).
 * @returns one `[..., N_g]` per kernel.
 */
export function denseGroups(
  x: tf.Tensor, kernels: tf.Tensor2D[], biases: tf.Tensor1D[] | undefined, implementation: Implementation, packed?: tf.Tensor1D,
): tf.Tensor[] {
  const K = x.shape[x.rank - 1]!;
  const M = tf.util.sizeFromShape(x.shape.slice(0, -1));
  const fits = M > 0 && groupsFit([M, K], kernels.map((w) => w.shape), false) && useKernel('dense', implementation);
  if (!fits) return kernels.map((w, g) => dense(x, w, { bias: biases?.[g], implementation }));
  return tf.tidy(() => groupProducts(x.reshape([M, K]) as tf.Tensor2D, kernels, false, biases, packed)
    .map((y, g) => y.reshape([...x.shape.slice(0, -1), kernels[g]!.shape[1]])));
}
