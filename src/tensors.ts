import * as tf from '@tensorflow/tfjs';
import { copyBlock, productOnHost } from './cpu-host.js';
import { onHostBackend } from './validate.js';

// Tensor helpers every reference shares: cutting a sequence into chunks, gathering tokens per
// row, clamping ints, and computing on the finite part of an input while poisoning exactly the
// outputs that see a non-finite one.

/**
 * int32 `x` clamped to `lo..hi`, by tf.maximum and tf.minimum: tfjs-wasm 4.22's ClipByValue reads
 * its input as float32 whatever its dtype, so it clamps an int32 tensor's negative numbers (NaN
 * or negative as floats) and leaves the others as they are, however large.
 *
 * @example
 * ```ts
 * clampInts(tf.tensor1d([-2, 3, 9], 'int32'), 0, 4).print();   // [0, 3, 4]
 * ```
 */
export function clampInts<R extends tf.Rank>(x: tf.Tensor<R>, lo: number, hi: number): tf.Tensor<R> {
  return tf.tidy(() => tf.minimum(tf.maximum(x, tf.scalar(lo, 'int32')), tf.scalar(hi, 'int32')));
}

/**
 * Tokens of each row: `out[b, m] = x[b, indices[b, m]]`, x `[B, L, ...]` and int32 `indices`
 * `[B, M]` (each in 0..L − 1) giving `[B, M, ...]`, tf.gather with batchDims 1. It is one gather
 * over the rows of x flattened to `[B·L, ...]`: tfjs-wasm 4.22's batched gather reads row b's
 * indices from b·B rather than b·M, so it is wrong (or reads out of bounds) wherever M ≠ B
 * (tensorflow/tfjs#8658). Differentiable where tfjs's gather is (not on wasm, which has no
 * UnsortedSegmentSum).
 *
 * @example
 * ```ts
 * const x = tf.tensor3d([[[1], [2], [3]], [[4], [5], [6]]]);               // [2, 3, 1]
 * gatherRows(x, tf.tensor2d([[2], [0]], [2, 1], 'int32')).print();      // [[[3]], [[4]]]
 * ```
 */
export function gatherRows<R extends tf.Rank>(x: tf.Tensor<R>, indices: tf.Tensor2D): tf.Tensor<R> {
  return tf.tidy(() => {
    const [B, L, ...rest] = x.shape as number[] as [number, number, ...number[]];
    const M = indices.shape[1];
    // row b's tokens start at b·L of the flattened rows
    const starts = tf.mul(tf.range(0, B, 1, 'int32'), tf.scalar(L, 'int32')).expandDims(1);
    const flat = tf.add(indices, starts).reshape([B * M]);
    return tf.gather(x.reshape([B * L, ...rest]), flat, 0).reshape([B, M, ...rest]) as tf.Tensor<R>;
  });
}

/**
 * The pieces `[t0, t1)` of float32 `x` along `axis` (default 1, the tokens of `[B, T, ...]`). On
 * cpu and wasm they are copied out of one read of x: tfjs-wasm 4.22's `Slice` copies its whole
 * input out of the heap on every call, so n slices (or a `tf.split` into n) would copy it n
 * times. Elsewhere (webgl, webgpu, tfjs-node, where a read is a sync with a device) they are
 * `tf.slice`s. The caller disposes the pieces.
 *
 * @example
 * ```ts
 * const [a, b] = chunksAlong(tf.tensor2d([[1, 2, 3]]), [[0, 2], [2, 3]]);   // [[1, 2]], [[3]]
 * ```
 */
export function chunksAlong<T extends tf.Tensor>(x: T, bounds: [number, number][], axis = 1): T[] {
  const shape = x.shape;
  const cuts = bounds.map(([t0, t1]) => ({
    at: shape.map((_, a) => (a === axis ? t0 : 0)), size: shape.map((d, a) => (a === axis ? t1 - t0 : d)),
  }));
  if (!onHostBackend()) return cuts.map(({ at, size }) => tf.slice(x, at, size) as T);
  const data = x.dataSync() as Float32Array;
  return cuts.map(({ at, size }) => {
    const piece = new Float32Array(tf.util.sizeFromShape(size));
    copyBlock(data, shape, at, piece, size, size.map(() => 0), size);
    return tf.tensor(piece, size, 'float32') as T;
  });
}

/**
 * Per-batch multiply-adds from which {@link matMul} runs a wasm product batch by batch. Four
 * batches, medians of 20 (Node, one wasm thread, beside a test run): at 128 × 64 × 128 (1 M each)
 * 0.64–0.75 ms where tfjs's batched call took 4.6–6.3; at 64 × 16 × 64 (64 K) 0.21–0.29 where
 * 0.32–0.40; at 32 × 16 × 32 (16 K) 0.25–0.44 where 0.10–0.29, the copies and the stack the
 * larger part.
 */
const WASM_PIECE_MACS = 1 << 16;

/**
 * `tf.matMul(a, b, transposeA, transposeB)` of tensors of one rank with equal batch dimensions,
 * differentiable to any order. On wasm, a product of many multiply-adds a batch runs as
 * batch-1 products without transposes, and so does its gradient's: tfjs-wasm 4.22 hands only
 * those to XNNPACK and computes every other one in a scalar loop, 5–15 times slower at attention's
 * tiles and a projection's weight gradient (a transpose first, each batch copied out, the results
 * stacked). On tfjs-cpu every float32 product runs on the host ({@link productOnHost}, 2.5–4.7 times
 * tfjs's speed). Elsewhere tfjs's own.
 *
 * @example
 * ```ts
 * const q = tf.randomNormal([1, 4, 256, 64]);            // [B, H, rows, K]
 * const k = tf.randomNormal([1, 4, 256, 64]);
 * matMul(q, k, false, true);                              // [1, 4, 256, 256]: q·kᵀ per head
 * ```
 */
export function matMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  const [m, k] = transposeA ? a.shape.slice(-2).reverse() : a.shape.slice(-2);
  const n = transposeB ? b.shape[b.rank - 2]! : b.shape[b.rank - 1]!;
  const batch = a.shape.slice(0, -2);
  const backend = tf.getBackend();
  const batched = a.rank >= 2 && a.rank === b.rank && batch.every((d, i) => d === b.shape[i]);
  const onHost = backend === 'cpu' && batched && a.dtype === 'float32' && b.dtype === 'float32';
  if (!onHost && (backend !== 'wasm' || !batched || m! * k! * n < WASM_PIECE_MACS)) return tf.matMul(a, b, transposeA, transposeB);
  // one batch without transposes is XNNPACK's already; its gradient's products are transposed
  const plain = batch.every((d) => d === 1) && !transposeA && !transposeB;
  const product = tf.customGrad(((x: tf.Tensor, y: tf.Tensor, save: tf.GradSaveFunc) => {
    save([x, y]);
    return {
      value: onHost ? productOnHost(x, y, transposeA, transposeB)
        : plain ? tf.matMul(x, y) : piecewiseMatMul(x, y, transposeA, transposeB),
      // tfjs's BatchMatMul gradient, through this function again
      gradFunc: (dz: tf.Tensor, [x0, y0]: tf.Tensor[]) => {
        if (!transposeA && !transposeB) return [matMul(dz, y0!, false, true), matMul(x0!, dz, true, false)];
        if (!transposeA) return [matMul(dz, y0!), matMul(dz, x0!, true, false)];
        if (!transposeB) return [matMul(y0!, dz, false, true), matMul(x0!, dz)];
        return [matMul(y0!, dz, true, true), matMul(dz, x0!, true, true)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor, y: tf.Tensor) => tf.Tensor;
  return product(a, b);
}

/**
 * e^x for x ≤ 0 (a softmax's shifted scores, a decay): `tf.exp`, except on wasm, where it is
 * σ(x)/(1 − σ(x)): tfjs-wasm 4.22's Exp took 11 ns an element and its Sigmoid 1.5 (4 × 256 ×
 * 256 floats), and the quotient is within 4 float32 ulps of e^x for x ≤ 0, where 1 − σ(x) ≥ ½
 * loses nothing (measured 3.6e-7 relative at most). It is e^x wherever defined and
 * differentiable, but for x well above 0, where 1 − σ(x) cancels, it loses digits.
 *
 * @example
 * ```ts
 * expNonPositive(tf.tensor1d([0, -1, -1e30])).print();   // [1, 0.3678794, 0]
 * ```
 */
export function expNonPositive<T extends tf.Tensor>(x: T): T {
  if (tf.getBackend() !== 'wasm') return tf.exp(x);
  return tf.tidy(() => {
    const s = tf.sigmoid(x);
    return tf.div(s, tf.sub(1, s)) as T;
  });
}

/** {@link matMul}'s wasm path: each batch's product as a 2-D one, without transposes; records no gradient. */
function piecewiseMatMul(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  return tf.tidy(() => {
    const batch = a.shape.slice(0, -2);
    const G = batch.reduce((x, y) => x * y, 1);
    const flat = (x: tf.Tensor, transpose: boolean) => {
      const x3 = x.reshape([G, ...x.shape.slice(-2)]) as tf.Tensor3D;
      return transpose ? tf.transpose(x3, [0, 2, 1]) : x3;
    };
    const [a3, b3] = [flat(a, transposeA), flat(b, transposeB)];
    // each batch `[1, rows, cols]`, copied out of one read (wasm's Gather took 2 ms a 256 × 256
    // batch); no gradient is recorded here: customGrad's forward
    const batches = Array.from({ length: G }, (_, g): [number, number] => [g, g + 1]);
    const [as, bs] = [chunksAlong(a3, batches, 0), chunksAlong(b3, batches, 0)];
    return tf.concat(as.map((x, g) => tf.matMul(x, bs[g]!)), 0).reshape([...batch, a3.shape[1], b3.shape[2]]);
  });
}

/**
 * The states entering each of n chunks of a linear recurrence, `[B, n, ...]`, from each chunk's
 * own contribution (its last state from zero) `[B, n, ...]`, the product of its decays (of a
 * shape that broadcasts against it, `[B, n, ...]`) and h0 `[B, ...]` entering the first: the
 * inclusive scan of `s[i] = decay[i−1] ⊙ s[i−1] + own[i−1]` from s[0] = h0, by recursive doubling
 * (Hillis and Steele): ⌈log₂ n⌉ rounds of a few launches, each combining every chunk with the one
 * `d` before it. The last chunk's own contribution enters no chunk. With `fromEnd` the scan runs
 * the other way, as an adjoint does: s[n−1] = h0 and `s[i] = decay[i+1] ⊙ s[i+1] + own[i+1]`.
 *
 * @example
 * ```ts
 * // h ↦ 0.5·h + 1 over three chunks from h0 = 4: 4, 3, 2.5
 * enteringStates(tf.ones([1, 3, 1]), tf.fill([1, 3, 1], 0.5), tf.tensor2d([[4]])).print();  // [[[4], [3], [2.5]]]
 * ```
 */
export function enteringStates(own: tf.Tensor, decay: tf.Tensor, h0: tf.Tensor, fromEnd = false): tf.Tensor {
  return tf.tidy(() => {
    const [Bsz, n] = own.shape as [number, number];
    // chunks from..from+m−1 of x
    const part = (x: tf.Tensor, from: number, m: number) =>
      tf.slice(x, x.shape.map((_, i) => (i === 1 ? from : 0)), x.shape.map((d, i) => (i === 1 ? m : d)));
    // h0 heads the scan (or ends it, from the end) as a chunk of its own, with a decay that multiplies nothing
    const withStart = (start: tf.Tensor, x: tf.Tensor) =>
      tf.concat(fromEnd ? [part(x, 1, n - 1), start] : [start, part(x, 0, n - 1)], 1);
    let a = withStart(tf.zeros([Bsz, 1, ...decay.shape.slice(2)]), decay);
    let s = withStart(tf.expandDims(h0, 1), own);
    // x moved d chunks along the scan's direction, the d chunks left empty filled with `fill`
    const moved = (x: tf.Tensor, d: number, fill: number) =>
      tf.pad(part(x, fromEnd ? d : 0, n - d), x.shape.map((_, i): [number, number] => (i !== 1 ? [0, 0] : fromEnd ? [0, d] : [d, 0])), fill);
    for (let d = 1; d < n; d *= 2) {
      // each round's temporaries and the last round's s and a freed as it ends: ~4 states live, not 4 a round
      const [s1, a1] = tf.tidy(() => [tf.add(s, tf.mul(a, moved(s, d, 0))), 2 * d < n ? tf.mul(a, moved(a, d, 1)) : a]);
      if (a1 !== a) a.dispose();
      s.dispose();
      [s, a] = [s1!, a1!];
    }
    return s;
  });
}

/**
 * The running sum of `x` along `axis` from its end: y[t] = Σ_{s ≥ t} x[s]. On webgpu as
 * reverse · cumsum · reverse, since tfjs 4.22's shader for a reverse cumsum keeps a stale axis
 * length after a shape change; elsewhere cumsum's own reverse (tfjs-cpu's Reverse works out each
 * element's indices in JS, about 1.5 µs an element here). The same additions in the same order
 * either way.
 *
 * @example
 * ```ts
 * reverseCumsum(tf.tensor2d([[1, 2, 3]]), 1).print();   // [[6, 5, 3]]
 * ```
 */
export function reverseCumsum<T extends tf.Tensor>(x: T, axis: number): T {
  if (tf.getBackend() !== 'webgpu') return tf.cumsum(x, axis, false, true) as T;
  return tf.tidy(() => tf.reverse(tf.cumsum(tf.reverse(x, axis), axis), axis)) as T;
}

/**
 * x at chunk k of `[B, n, ...]` (the layout of {@link enteringStates}), as `[B, ...]`.
 *
 * @example
 * ```ts
 * chunkAt(tf.tensor3d([[[1], [2], [3]]]), 2).print();   // [[3]]
 * ```
 */
export function chunkAt(x: tf.Tensor, k: number): tf.Tensor {
  const [Bsz, , ...rest] = x.shape;
  return tf.reshape(tf.slice(x, [0, k, ...rest.map(() => 0)], [Bsz!, 1, ...rest]), [Bsz!, ...rest]);
}

/**
 * `x` with its NaN and ±∞ entries replaced by 0 (a select, so that no 0 · NaN can follow), and
 * `ok` (bool), true where `x` was finite: what a reference needs to compute on finite numbers and,
 * through {@link notFinite}, poison only the outputs that see a non-finite input.
 *
 * @example
 * ```ts
 * const { finite, ok } = finitePart(tf.tensor1d([1, NaN, Infinity]));
 * finite.print();  // [1, 0, 0]
 * ok.print();      // [true, false, false]
 * ```
 */
export function finitePart<T extends tf.Tensor>(x: T): { finite: T; ok: tf.Tensor } {
  const ok = tf.isFinite(x);
  return { finite: keptWhere(ok, x), ok };
}

/**
 * 1 where any of the bool `oks` (one shape) is false, else 0, float32: entry by entry, or, with
 * `axis`, along it (kept) in one reduction of the bools. Whether an output that reads those
 * entries sees a non-finite input, as {@link poisonWhere} wants it; {@link detached}, since a
 * flag made of bools has no gradient (tfjs has none for LogicalNot).
 *
 * @example
 * ```ts
 * const ok = tf.tensor2d([[true, false], [true, true]]);
 * notFinite([ok]).print();      // [[0, 1], [0, 0]]
 * notFinite([ok], -1).print();  // [[1], [0]]
 * ```
 */
export function notFinite(oks: readonly tf.Tensor[], axis?: number): tf.Tensor {
  const flags = tf.tidy(() => {
    const ok = oks.reduce((a, b) => tf.logicalAnd(a, b));
    return tf.cast(tf.logicalNot(axis === undefined ? ok : tf.all(ok, axis, true)), 'float32');
  });
  const off = detached(flags);
  flags.dispose();
  return off;
}

/**
 * x where `ok`, 0 elsewhere (a select, so that no 0 · NaN can follow). The zeros have x's shape:
 * tfjs broadcasts a scalar by a tile, a few ms for 64k floats on wasm.
 */
function keptWhere<T extends tf.Tensor>(ok: tf.Tensor, x: T): T {
  return tf.where(ok, x, tf.zerosLike(x)) as T;
}

/**
 * `x` with its NaN and ±∞ entries replaced by 0, its temporaries freed: {@link finitePart}'s
 * `finite` alone, without the ops that make `bad`.
 *
 * @example
 * ```ts
 * finiteOnly(tf.tensor1d([1, NaN, -Infinity])).print();  // [1, 0, 0]
 * ```
 */
export function finiteOnly<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => keptWhere(tf.isFinite(x), x));
}

/**
 * How many entries of `x` along `axis` are NaN or ±∞: the count a reference turns into poison
 * (see {@link poisonWhere}) for the outputs that see them.
 *
 * @example
 * ```ts
 * nonFiniteCount(tf.tensor2d([[1, NaN], [Infinity, -Infinity]]), 1).print();  // [1, 2]
 * ```
 */
export function nonFiniteCount(x: tf.Tensor, axis: number): tf.Tensor {
  return tf.tidy(() => tf.sum(tf.sub(1, tf.cast(tf.isFinite(x), 'float32')), axis));
}

/**
 * The gradient `d` with 0 wherever the input `x` (same shape) was NaN or ±∞: a reference that
 * computed on {@link finitePart} read 0 there, so such an input gets no gradient.
 *
 * @example
 * ```ts
 * zeroWhereNotFinite(tf.tensor1d([1, NaN]), tf.tensor1d([5, 7])).print();  // [5, 0]
 * ```
 */
export function zeroWhereNotFinite<T extends tf.Tensor>(x: tf.Tensor, d: T): T {
  return tf.tidy(() => tf.where(tf.isFinite(x), d, tf.zerosLike(d)));
}

/**
 * A score below every real one, added to the scores of hidden keys: exp(score − max) of it is
 * exactly 0 beside any visible key, yet it is finite, so a row whose every key is hidden keeps
 * finite sums (and a softplus of it is 0). −10³⁰ where the active backend stores float32;
 * −2¹⁴ where it stores half floats (tfjs's webgl on a device that cannot render to float32
 * textures, or with `WEBGL_FORCE_F16_TEXTURES`), whose largest value is 65504, so that −10³⁰
 * uploads as −∞ or NaN and −∞ − (−∞) is NaN. At 2¹⁴, two of them added to a score (Aaren's
 * padded tokens beyond a chunk's future) are still a half float, and it loses to every score
 * within 16000 of the row's max, far beyond what a half float's three decimal digits make
 * useful.
 *
 * @example
 * ```ts
 * hiddenScore();   // -1e30
 * ```
 */
export function hiddenScore(): number {
  return halfFloatStorage() ? -(2 ** 14) : -1e30;
}

/**
 * The max of no scores: −∞, or −65504, the lowest half float, where the active backend stores
 * half floats (see {@link hiddenScore}): SwiftShader's half-float textures store −∞ as NaN. Below
 * the hidden score either way, so exp(it − m) is 0 for any max m of real or hidden scores.
 *
 * @example
 * ```ts
 * noScore();   // -Infinity
 * ```
 */
export function noScore(): number {
  return halfFloatStorage() ? -65504 : -Infinity;
}

/**
 * Whether the active backend stores float32 tensors as half floats (see {@link hiddenScore}).
 *
 * @example
 * ```ts
 * halfFloatStorage();   // false
 * ```
 */
export function halfFloatStorage(): boolean {
  // tfjs 4.22's webgl floatPrecision() answers 16 where it renders float32 (and 32 on
  // SwiftShader's half-float textures), so webgl is judged by the flag it renders by
  if (tf.getBackend() === 'webgl') return !tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED');
  return tf.backend().floatPrecision() === 16;
}

/**
 * `[...]` → `[...]`: NaN where `count` (a non-negative count of non-finite inputs) is not 0,
 * and 0 elsewhere; added to an output, it makes exactly the rows that see such an input NaN.
 *
 * @example
 * ```ts
 * poisonWhere(tf.tensor1d([0, 2])).print();  // [0, NaN]
 * ```
 */
export function poisonWhere<T extends tf.Tensor>(count: T): T {
  return nanWhere(tf.greaterEqual(count, 0.5)) as T;
}

/**
 * NaN where the bool `bad` is true and 0 where it is false, computed without a NaN or an
 * infinity where it is false: b·log(1 − 2b) for b = 1 or 0, tfjs's log of a negative number
 * being NaN on every backend, and of 1 finite (on webgl not exactly 0, hence the product). A
 * select from a NaN-filled tensor, the plain way, made tfjs's debug mode (`tf.enableDebugMode()`)
 * report "Found NaN in the result of 'Fill'" at every call, on finite inputs too.
 *
 * @example
 * ```ts
 * nanWhere(tf.tensor1d([false, true], 'bool')).print();  // [0, NaN]
 * ```
 */
export function nanWhere(bad: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const b = tf.cast(bad, 'float32');
    return tf.mul(b, tf.log(tf.sub(1, tf.mul(b, 2))));
  });
}

/**
 * x's values in a tensor that tfjs's gradient tape does not know (it shares x's data): an op on it
 * is off the path from every variable, so tfjs neither keeps its inputs for a backward nor
 * computes a gradient for it, not even a zero one. For what has no gradient by definition: a
 * poison mask found from an input's non-finite entries.
 *
 * @example
 * ```ts
 * const x = tf.scalar(3);
 * tf.grad((a) => tf.add(a, detached(a)))(x).print();   // 1: the detached term adds no gradient
 * ```
 */
export function detached<T extends tf.Tensor>(x: T): T {
  // a second reference to the data on the backend that holds it, as tfjs's own reshape takes
  // one: each tensor is disposed on its own
  const backend = tf.engine().state.tensorInfo.get(x.dataId)!.backend;
  backend.incRef(x.dataId);
  return tf.engine().makeTensorFromTensorInfo({ dataId: x.dataId, shape: x.shape, dtype: x.dtype }, backend) as T;
}
