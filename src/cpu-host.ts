import * as tf from '@tensorflow/tfjs';

// tfjs-cpu's slow kernels done on the host. tfjs-cpu works out every element's indices in JS
// (an index → location → index round trip with two array allocations) when a transpose moves
// axes, a binary op broadcasts a size-1 axis or a sum runs along an inner axis: about 300 ns an
// element on this project's machine, against about 10 for its op on equal shapes. swapMiddleAxes,
// broadcastBinary and sumAlong give the same floats, bit for bit, by loops over contiguous runs,
// and are tfjs's own ops on every other backend and dtype. Even on equal shapes tfjs-cpu's binary
// ops call a function per element through a kernel template: broadcastBinary loops over large
// ones itself. productOnHost is the products' (tfjs-cpu's reads b down its columns), for
// `matMul` in src/tensors.ts. `copy` slices, pads, joins and splits (tfjs-cpu's slices off the
// contiguous case, and its pads, go element by element the same way, about a microsecond each).

/** What `tf.customGrad` takes: the functions here are typed by their own inputs. */
type CustomGradFn = Parameters<typeof tf.customGrad>[0];

/** Whether the helpers here compute on the host: on tfjs-cpu, for float32 tensors; tfjs's ops otherwise. */
const onCpuHost = (...xs: tf.Tensor[]) => tf.getBackend() === 'cpu' && xs.every((x) => x.dtype === 'float32');

/**
 * float32 x `[A, M, N, C]` → `[A, N, M, C]`: its middle axes swapped, as
 * `x.transpose([0, 2, 1, 3])`, differentiable. On tfjs-cpu, whose transpose works out each
 * element's indices in JS, the runs of C are copied on the host (a read is free there): 13 times
 * faster at a decode step's cache of 4160 tokens of 4 heads of 16
 * (4 ms against 54, on 2 loaded cores). Elsewhere tfjs's transpose (wasm's is native, and faster
 * than a copy through the host).
 *
 * @example
 * ```ts
 * swapMiddleAxes(tf.zeros([1, 5, 2, 8]) as tf.Tensor4D).shape;   // [1, 2, 5, 8]
 * ```
 */
export function swapMiddleAxes(x: tf.Tensor4D): tf.Tensor4D {
  if (!onCpuHost(x)) return x.transpose([0, 2, 1, 3]);
  const swap = tf.customGrad(((t: tf.Tensor4D) => {
    const [A, M, N, C] = t.shape;
    const data = t.dataSync() as Float32Array;
    const out = new Float32Array(data.length);
    let o = 0;
    for (let a = 0; a < A; a++) {
      for (let n = 0; n < N; n++) {
        for (let m = 0; m < M; m++) {
          const i = ((a * M + m) * N + n) * C;
          for (let c = 0; c < C; c++) out[o++] = data[i + c]!;
        }
      }
    }
    return { value: tf.tensor4d(out, [A, N, M, C]), gradFunc: (dy: tf.Tensor4D) => swapMiddleAxes(dy) };
  }) as unknown as CustomGradFn) as (t: tf.Tensor4D) => tf.Tensor4D;
  return swap(x);
}

/**
 * `tf.sum(x, axis)`, differentiable. On tfjs-cpu, for float32 x and an axis other than the last
 * (where its Sum would transpose x first), the sum runs on the host over runs of the axes after
 * `axis`: the same floats (tfjs-cpu's order of additions, in float64). Elsewhere tfjs's sum.
 *
 * @example
 * ```ts
 * sumAlong(tf.tensor3d([[[1, 2], [3, 4]]]), 1).print();   // [[4, 6]]
 * ```
 */
export function sumAlong(x: tf.Tensor, axis: number): tf.Tensor {
  const rank = x.rank;
  const ax = axis < 0 ? axis + rank : axis;
  if (!onCpuHost(x) || ax === rank - 1) return tf.sum(x, ax);
  const run = tf.customGrad(((t: tf.Tensor) => {
    const outer = tf.util.sizeFromShape(t.shape.slice(0, ax));
    const n = t.shape[ax]!;
    const inner = tf.util.sizeFromShape(t.shape.slice(ax + 1));
    const data = t.dataSync() as Float32Array;
    const out = new Float32Array(outer * inner);
    const acc = new Float64Array(inner);
    for (let o = 0; o < outer; o++) {
      acc.fill(0);
      for (let j = 0; j < n; j++) {
        const at = (o * n + j) * inner;
        for (let i = 0; i < inner; i++) acc[i] += data[at + i]!;
      }
      out.set(acc, o * inner);
    }
    const shape = t.shape.filter((_, i) => i !== ax);
    return {
      value: tf.tensor(out, shape),
      gradFunc: (dy: tf.Tensor) => broadcast.add(tf.zeros(t.shape), dy.expandDims(ax)),
    };
  }) as unknown as CustomGradFn) as (t: tf.Tensor) => tf.Tensor;
  return run(x);
}

/**
 * op(a)·op(b) of float32 tensors of one rank (≥ 2) with equal batch dimensions, op a transpose of
 * the last two axes where asked, on the host: the product in blocks of 4 × 4 entries, each block's
 * 16 sums held in locals while the shared axis runs (8 reads a step for 16 multiply-adds), each
 * entry a float64 sum over the shared axis in its order, rounded once; a transposed operand is read
 * in place. tfjs-cpu's BatchMatMul reads b down its columns and adds float32 partial sums of 48
 * products: 2.5–4.7 times its speed on this project's machine (1.6–2.6 GFLOP/s), from
 * attention's tiles (32 batches of 64 × 16 × 64, 4 of 256 × 64 × 256) to a projection (1024 ×
 * 192 × 768).
 * Records no gradient: `matMul` (`src/tensors.ts`) is differentiable around it.
 *
 * @example
 * ```ts
 * productOnHost(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]), false, false).print();   // [[11]]
 * ```
 */
export function productOnHost(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  const [m, k] = transposeA ? a.shape.slice(-2).reverse() as [number, number] : a.shape.slice(-2) as [number, number];
  const n = transposeB ? b.shape[b.rank - 2]! : b.shape[b.rank - 1]!;
  const batchShape = a.shape.slice(0, -2);
  const batch = tf.util.sizeFromShape(batchShape);
  const A = a.dataSync() as Float32Array;
  const B = b.dataSync() as Float32Array;
  const C = new Float32Array(batch * m * n);
  // a's entry (i, p) sits at i·ai + p·ap of its batch, b's (p, j) at p·bp + j·bj
  const [ai, ap] = transposeA ? [1, m] : [k, 1];
  const [bp, bj] = transposeB ? [1, k] : [n, 1];
  for (let g = 0; g < batch; g++) {
    const [ao, bo, co] = [g * m * k, g * k * n, g * m * n];
    for (let i = 0; i < m; i += 4) {
      const rows = Math.min(4, m - i);
      // where each row's entries start; rows past m read row i's again, into sums never written
      const r0 = ao + i * ai, r1 = rows > 1 ? r0 + ai : r0, r2 = rows > 2 ? r0 + 2 * ai : r0, r3 = rows > 3 ? r0 + 3 * ai : r0;
      for (let j = 0; j < n; j += 4) {
        const cols = Math.min(4, n - j);
        // each column's offset from column j; columns past n read column j's again, likewise
        const c1 = cols > 1 ? bj : 0, c2 = cols > 2 ? 2 * bj : 0, c3 = cols > 3 ? 3 * bj : 0;
        let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
        let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
        for (let p = 0, x = 0, y = bo + j * bj; p < k; p++, x += ap, y += bp) {
          const a0 = A[r0 + x]!, a1 = A[r1 + x]!, a2 = A[r2 + x]!, a3 = A[r3 + x]!;
          const b0 = B[y]!, b1 = B[y + c1]!, b2 = B[y + c2]!, b3 = B[y + c3]!;
          s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
          s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
          s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
          s30 += a3 * b0; s31 += a3 * b1; s32 += a3 * b2; s33 += a3 * b3;
        }
        const at = co + i * n + j;
        if (rows === 4 && cols === 4) {
          C[at] = s00; C[at + 1] = s01; C[at + 2] = s02; C[at + 3] = s03;
          C[at + n] = s10; C[at + n + 1] = s11; C[at + n + 2] = s12; C[at + n + 3] = s13;
          C[at + 2 * n] = s20; C[at + 2 * n + 1] = s21; C[at + 2 * n + 2] = s22; C[at + 2 * n + 3] = s23;
          C[at + 3 * n] = s30; C[at + 3 * n + 1] = s31; C[at + 3 * n + 2] = s32; C[at + 3 * n + 3] = s33;
        } else {
          const sums = [s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33];
          for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) C[at + r * n + c] = sums[r * 4 + c]!;
        }
      }
    }
  }
  return tf.tensor(C, [...batchShape, m, n]);
}

/**
 * Output entries from which {@link broadcastBinary} runs an op that broadcasts no axis on the
 * host: below it tfjs-cpu's op costs no more than the customGrad and the tensor that the host path
 * wraps around its loop (even at 4096 entries for a product, 28 ns an element either way).
 */
const HOST_MIN = 1 << 12;

/** The elementwise ops {@link broadcastBinary} computes, by tfjs's name. */
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';

const TF_BINARY: Record<BinaryOp, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor> = {
  add: tf.add, sub: tf.sub, mul: tf.mul, div: tf.div,
};

/**
 * `tf[op](a, b)` with tfjs's broadcasting, differentiable. On tfjs-cpu, when float32 a or b is
 * broadcast along an axis of size 1 (a row's maximum against its scores, a chunk's mask against
 * its channels), the result is computed on the host a run of the last axes at a time: the same
 * floats (each op is one rounding of the exact result, as tfjs-cpu's), 14–27 times faster
 * there (11–24 ns an element where tfjs took 270–320). Where one shape is a suffix of the
 * other's (a bias against its rows) tfjs-cpu's op needs no index arithmetic, but its gradient's
 * sum down the rows transposes first: there the value is tfjs's and the gradient is summed on
 * the host, the same floats. From 4096 entries the host computes equal shapes and suffixes too:
 * tfjs-cpu's op takes 19–38 ns an element through its template, the loop 9–11 with its
 * allocation. Elsewhere tfjs's op itself.
 *
 * @example
 * ```ts
 * const scores = tf.tensor2d([[1, 2], [3, 5]]);
 * broadcastBinary('sub', scores, tf.max(scores, 1, true)).print();   // [[-1, 0], [-2, 0]]
 * ```
 */
export function broadcastBinary<T extends tf.Tensor>(op: BinaryOp, a: tf.Tensor, b: tf.Tensor): T {
  const tfOp = TF_BINARY[op];
  if (!onCpuHost(a, b)) return tfOp(a, b) as T;
  const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  const expands = (s: number[]) => tf.backend_util.getBroadcastDims(s, shape).length > 0;
  const broadcasts = expands(a.shape) || expands(b.shape);
  const onHost = broadcasts || tf.util.sizeFromShape(shape) >= HOST_MIN;
  if (!onHost && a.rank === b.rank) return tfOp(a, b) as T;
  const run = tf.customGrad(((x: tf.Tensor, y: tf.Tensor, save: tf.GradSaveFunc) => {
    save([x, y]);
    return {
      value: onHost ? tf.tensor(hostBinary(op, x, y, shape), shape) : tfOp(x, y),
      gradFunc: (dy: tf.Tensor, [sx, sy]: tf.Tensor[]) => binaryGrads(op, dy, sx!, sy!),
    };
  }) as unknown as CustomGradFn) as (x: tf.Tensor, y: tf.Tensor) => T;
  return run(a, b);
}

/**
 * {@link broadcastBinary} by op: `broadcast.sub(scores, rowMax)`.
 *
 * @example
 * ```ts
 * broadcast.mul(tf.ones([2, 3]), tf.tensor2d([[2], [3]])).print();   // [[2, 2, 2], [3, 3, 3]]
 * ```
 */
export const broadcast = {
  add: <T extends tf.Tensor>(a: tf.Tensor, b: tf.Tensor) => broadcastBinary<T>('add', a, b),
  sub: <T extends tf.Tensor>(a: tf.Tensor, b: tf.Tensor) => broadcastBinary<T>('sub', a, b),
  mul: <T extends tf.Tensor>(a: tf.Tensor, b: tf.Tensor) => broadcastBinary<T>('mul', a, b),
  div: <T extends tf.Tensor>(a: tf.Tensor, b: tf.Tensor) => broadcastBinary<T>('div', a, b),
};

/** The gradients of `op` at (a, b) from dy, each summed over the axes it was broadcast along. */
function binaryGrads(op: BinaryOp, dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Tensor[] {
  const to = (d: tf.Tensor, x: tf.Tensor) => {
    const axes = tf.backend_util.getReductionAxes(x.shape, d.shape);
    return (axes.length ? sumOver(d, axes) : d).reshape(x.shape);
  };
  // as tfjs's own gradients, op for op: the same floats
  if (op === 'add') return [to(dy, a), to(dy, b)];
  if (op === 'sub') return [to(dy, a), tf.neg(to(dy, b))];
  if (op === 'mul') return [to(broadcast.mul(dy, b), a), to(broadcast.mul(dy, a), b)];
  return [to(broadcast.div(dy, b), a), tf.neg(tf.div(to(broadcast.mul(dy, a), b), tf.square(b)))];
}

/**
 * `tf.sum(x, axes)` for ascending `axes`; on cpu, where they are adjacent, {@link sumAlong} over
 * them merged into one: tfjs-cpu's additions in its order (it moves the axes last, then sums
 * each output's run in float64).
 */
function sumOver(x: tf.Tensor, axes: number[]): tf.Tensor {
  const [p, q] = [axes[0]!, axes[axes.length - 1]! + 1];
  if (!onCpuHost(x) || q - p !== axes.length) return tf.sum(x, axes);
  const s = x.shape;
  return sumAlong(x.reshape([...s.slice(0, p), tf.util.sizeFromShape(s.slice(p, q)), ...s.slice(q)]), p);
}

/**
 * `op` over float32 a and b broadcast to `shape`, on the host. Adjacent axes that both operands
 * walk alike (each contiguous across them, or broadcast along both) are merged, and the last
 * merged axis is the inner loop: a run of its length, at stride 1 or 0 in each operand.
 */
function hostBinary(op: BinaryOp, a: tf.Tensor, b: tf.Tensor, shape: number[]): Float32Array {
  const [A, B] = [a.dataSync() as Float32Array, b.dataSync() as Float32Array];
  const out = new Float32Array(tf.util.sizeFromShape(shape));
  if (out.length === 0) return out;
  // each operand's stride along each axis of the result, 0 where it is broadcast
  const stridesOf = (s: number[]) => {
    const strides = shape.map(() => 0);
    for (let i = s.length - 1, acc = 1; i >= 0; acc *= s[i]!, i--) strides[shape.length - s.length + i] = s[i] === 1 ? 0 : acc;
    return strides;
  };
  const dims: { n: number; sa: number; sb: number }[] = [];
  const [sa, sb] = [stridesOf(a.shape), stridesOf(b.shape)];
  shape.forEach((n, i) => {
    if (n === 1) return;
    const last = dims[dims.length - 1];
    if (last && last.sa === sa[i]! * n && last.sb === sb[i]! * n) Object.assign(last, { n: last.n * n, sa: sa[i]!, sb: sb[i]! });
    else dims.push({ n, sa: sa[i]!, sb: sb[i]! });
  });
  const inner = dims.pop() ?? { n: 1, sa: 0, sb: 0 };
  const loop = RUNS[op];
  // an odometer over the outer axes: where each operand's run starts
  const at = dims.map(() => 0);
  let [ia, ib] = [0, 0];
  for (let o = 0; o < out.length; o += inner.n) {
    loop(out, o, inner.n, A, ia, inner.sa, B, ib, inner.sb);
    for (let d = dims.length - 1; d >= 0; d--) {
      const { n, sa: da, sb: db } = dims[d]!;
      ia += da; ib += db;
      if (++at[d]! < n) break;
      at[d] = 0; ia -= da * n; ib -= db * n;
    }
  }
  return out;
}

type Run = (out: Float32Array, o: number, n: number, a: Float32Array, ia: number, sa: number, b: Float32Array, ib: number, sb: number) => void;

// one loop per op, so that each stays monomorphic
const RUNS: Record<BinaryOp, Run> = {
  add: (out, o, n, a, ia, sa, b, ib, sb) => { for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa]! + b[ib + i * sb]!; },
  sub: (out, o, n, a, ia, sa, b, ib, sb) => { for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa]! - b[ib + i * sb]!; },
  mul: (out, o, n, a, ia, sa, b, ib, sb) => { for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa]! * b[ib + i * sb]!; },
  div: (out, o, n, a, ia, sa, b, ib, sb) => { for (let i = 0; i < n; i++) out[o + i] = a[ia + i * sa]! / b[ib + i * sb]!; },
};

/**
 * Copies the block of `size` at `fromAt` in `src` (laid out as `from`) to `toAt` in `dst` (laid
 * out as `to`). The axes after the last one where the block is not whole in both make one run,
 * copied at once; an odometer walks the axes before it. The {@link copy} helpers' loop, and
 * `chunksAlong`'s (`src/tensors.ts`).
 *
 * @example
 * ```ts
 * const dst = new Float32Array(2);
 * copyBlock(Float32Array.from([1, 2, 3, 4]), [2, 2], [0, 1], dst, [2, 1], [0, 0], [2, 1]);   // column 1 of [[1, 2], [3, 4]]
 * tf.tensor(dst).print();   // [2, 4]
 * ```
 */
export function copyBlock(src: Float32Array, from: number[], fromAt: number[], dst: Float32Array, to: number[], toAt: number[], size: number[]): void {
  let a = size.length - 1;
  while (a >= 0 && size[a] === from[a] && size[a] === to[a]) a--;
  if (a < 0) { dst.set(src); return; }
  const run = tf.util.sizeFromShape(size.slice(a));
  const [fromStrides, toStrides] = [from, to].map((shape) => shape.map((_, i) => tf.util.sizeFromShape(shape.slice(i + 1))));
  let s = 0, d = 0;
  for (let i = 0; i <= a; i++) { s += fromAt[i]! * fromStrides[i]!; d += toAt[i]! * toStrides[i]!; }
  const at = new Array<number>(a).fill(0);
  for (let o = tf.util.sizeFromShape(size.slice(0, a)); o > 0; o--) {
    // a short run costs less as a loop than as a subarray and a set
    if (run < 16) for (let i = 0; i < run; i++) dst[d + i] = src[s + i]!;
    else dst.set(src.subarray(s, s + run), d);
    for (let i = a - 1; i >= 0; i--) {
      s += fromStrides[i]!; d += toStrides[i]!;
      if (++at[i]! < size[i]!) break;
      at[i] = 0; s -= fromStrides[i]! * size[i]!; d -= toStrides[i]! * size[i]!;
    }
  }
}


/** `tf.slice(x, begin, size)` (a size of −1 runs to the end), differentiable; see {@link copy}. */
function slice<T extends tf.Tensor>(x: T, begin: number[], size: number[]): T {
  if (!onCpuHost(x)) return tf.slice(x, begin, size);
  const [at, sizes] = tf.slice_util.parseSliceParams(x, begin, size);
  tf.slice_util.assertParamsValid(x, at, sizes);
  // even a contiguous slice, which tfjs-cpu takes as a view: its gradient is tfjs's pad
  const run = tf.customGrad(((t: tf.Tensor) => {
    const out = new Float32Array(tf.util.sizeFromShape(sizes));
    copyBlock(t.dataSync() as Float32Array, t.shape, at, out, sizes, sizes.map(() => 0), sizes);
    return {
      value: tf.tensor(out, sizes),
      gradFunc: (dy: tf.Tensor) => pad(dy, t.shape.map((n, i): [number, number] => [at[i]!, n - at[i]! - sizes[i]!])),
    };
  }) as unknown as CustomGradFn) as (t: tf.Tensor) => T;
  return run(x);
}

/** `tf.pad(x, paddings)` with zeros, differentiable; see {@link copy}. */
function pad<T extends tf.Tensor>(x: T, paddings: [number, number][]): T {
  if (!onCpuHost(x) || paddings.every(([b, e]) => b === 0 && e === 0)) return tf.pad(x, paddings);
  const run = tf.customGrad(((t: tf.Tensor) => {
    const shape = t.shape.map((n, i) => paddings[i]![0] + n + paddings[i]![1]);
    const before = paddings.map(([b]) => b);
    const out = new Float32Array(tf.util.sizeFromShape(shape));
    copyBlock(t.dataSync() as Float32Array, t.shape, t.shape.map(() => 0), out, shape, before, t.shape);
    return { value: tf.tensor(out, shape), gradFunc: (dy: tf.Tensor) => slice(dy, before, t.shape) };
  }) as unknown as CustomGradFn) as (t: tf.Tensor) => T;
  return run(x);
}

/** `tf.concat(xs, axis)`, differentiable; see {@link copy}. */
function concat<T extends tf.Tensor>(xs: T[], axis = 0): T {
  if (xs.length < 2 || !onCpuHost(...xs)) return tf.concat(xs, axis);
  const ax = axis < 0 ? axis + xs[0]!.rank : axis;
  // tfjs-cpu's Concat copies row by row, fast; its gradient is tfjs's split, which is not
  const run = tf.customGrad(((...ts: tf.Tensor[]) => ({
    value: tf.concat(ts.slice(0, xs.length), ax),
    gradFunc: (dy: tf.Tensor) => split(dy, xs.map((x) => x.shape[ax]!), ax),
  })) as unknown as CustomGradFn) as (...ts: tf.Tensor[]) => T;
  return run(...xs);
}

/** `tf.split(x, sizes, axis)`, differentiable; see {@link copy}. */
function split<T extends tf.Tensor>(x: T, sizes: number | number[], axis = 0): T[] {
  const ax = axis < 0 ? axis + x.rank : axis;
  // pieces that are runs of x: tfjs-cpu's split takes views, and its gradient is one concat
  if (!onCpuHost(x) || x.shape.slice(0, ax).every((d) => d === 1)) return tf.split(x, sizes, axis);
  const n = x.shape[ax]!;
  const lengths = typeof sizes === 'number' ? new Array<number>(sizes).fill(n / sizes) : sizes;
  if (!lengths.every(Number.isInteger) || lengths.reduce((a, b) => a + b, 0) !== n) return tf.split(x, sizes, axis);   // tfjs's own error
  let at = 0;
  return lengths.map((m) => {
    const from = at;
    at += m;
    return slice(x, x.shape.map((_, i) => (i === ax ? from : 0)), x.shape.map((d, i) => (i === ax ? m : d)));
  });
}

/**
 * tfjs's slice, pad (with zeros), concat and split, differentiable, for the references' cuts
 * and joins. On tfjs-cpu, for float32 tensors, slices and pads copy runs on the host, and
 * concat's gradient and a split off the leading axes are such slices, where tfjs-cpu would work
 * out each element's indices (about a microsecond an element); the same floats, bit for bit.
 * Elsewhere, and for other dtypes, tfjs's own ops.
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[1], [2], [3]], [[4], [5], [6]]]);   // [2, 3, 1]
 * copy.slice(x, [0, 1, 0], [-1, 2, -1]).print();              // [[[2], [3]], [[5], [6]]]
 * copy.concat([x, x], 1).shape;                                // [2, 6, 1]
 * ```
 */
export const copy = { slice, pad, concat, split };
