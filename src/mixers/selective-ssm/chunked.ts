import * as tf from '@tensorflow/tfjs';
import { scanOnFinite, type Recurrence, type ScanArgs } from './reference.js';

// The selective scan in O(CHUNK + log T) launches of tfjs ops, for webgl, which has neither WGSL
// nor plain-JS kernels and launches a shader per op, where the per-step reference takes ~30 a step.

/**
 * Steps per chunk. The loops run CHUNK steps on all chunks at once and the rounds across chunks
 * grow as log₂(T / CHUNK); on webgl (SwiftShader) 8 and 16 measured alike, 8 launching fewer.
 */
const CHUNK = 8;

/**
 * The states entering each of n chunks, `[B, n, E, N]`, from each chunk's own contribution (its
 * last state from zero) and the product of its decays, `[B, n, E, N]`, and h0 entering the first:
 * the inclusive scan of `s[k] = decay[k−1]·s[k−1] + own[k−1]` from s[0] = h0, by recursive
 * doubling (Hillis and Steele): ⌈log₂ n⌉ rounds, each combining every chunk with the one `d`
 * before it. The last chunk's own contribution enters no chunk.
 */
function enteringStates(own: tf.Tensor, decay: tf.Tensor, h0: tf.Tensor): tf.Tensor {
  const [Bsz, n, E, N] = own.shape as [number, number, number, number];
  const first = tf.reshape(h0, [Bsz, 1, E, N]);
  const before = (x: tf.Tensor) => tf.slice(x, [0, 0, 0, 0], [Bsz, n - 1, E, N]);
  // h0 heads the scan as a chunk of its own, with a decay that multiplies nothing
  let a = tf.concat([tf.zerosLike(first), before(decay)], 1);
  let s = tf.concat([first, before(own)], 1);
  // x moved d chunks later, the first d filled with `fill`
  const later = (x: tf.Tensor, d: number, fill: number) =>
    tf.pad(tf.slice(x, [0, 0, 0, 0], [Bsz, n - d, E, N]), [[0, 0], [d, 0], [0, 0], [0, 0]], fill);
  for (let d = 1; d < n; d *= 2) {
    s = tf.add(s, tf.mul(a, later(s, d, 0)));
    if (2 * d < n) a = tf.mul(a, later(a, d, 1));
  }
  return s;
}

/**
 * The recurrence chunk-parallel: the sequence cut into chunks of {@link CHUNK} steps, a loop over
 * a chunk's steps runs in every chunk at once from a zero state, the states entering the chunks
 * follow by a scan across them, and the loop runs again from those, forming the outputs. Twice the
 * per-step loop's arithmetic in CHUNK + log₂ T rounds of launches instead of T; tfjs's autodiff
 * takes the gradient.
 */
const chunked: Recurrence = (decays, inputs, B, C, h0) => {
  const [Bsz, T, E, N] = decays.shape as [number, number, number, number];
  const c = Math.min(CHUNK, T);
  const n = Math.ceil(T / c);
  // zeros after the last step make every chunk whole; what they produce is sliced off
  const view = (x: tf.Tensor) =>
    tf.reshape(tf.pad(x, x.shape.map((_, i): [number, number] => [0, i === 1 ? n * c - T : 0])), [Bsz, n, c, ...x.shape.slice(2)]);
  // the chunks' step t, for t < c: [B, n, ...]; tfjs 4.22's unstack has no usable gradient for one slice
  const steps = (x: tf.Tensor) => (c === 1 ? [tf.squeeze(x, [2])] : tf.unstack(x, 2));
  const a = steps(view(decays));                        // c × [B, n, E, N]
  const x = steps(tf.expandDims(view(inputs), 4));      // c × [B, n, E, 1]
  const Bs = steps(tf.expandDims(view(B), 3));          // c × [B, n, 1, N]
  const Cs = steps(tf.expandDims(view(C), 3));
  let own = tf.mul(x[0]!, Bs[0]!);
  let decay = a[0]!;
  for (let t = 1; t < c; t++) {
    own = tf.add(tf.mul(a[t]!, own), tf.mul(x[t]!, Bs[t]!));
    decay = tf.mul(a[t]!, decay);
  }
  let h = enteringStates(own, decay, h0);
  const ys: tf.Tensor[] = [];
  const last = (T - 1) % c;
  let state: tf.Tensor | undefined;
  for (let t = 0; t < c; t++) {
    h = tf.add(tf.mul(a[t]!, h), tf.mul(x[t]!, Bs[t]!));
    ys.push(tf.sum(tf.mul(h, Cs[t]!), 3));
    if (t === last) state = tf.reshape(tf.slice(h, [0, n - 1, 0, 0], [Bsz, 1, E, N]), [Bsz, E, N]);
  }
  return { y: tf.slice(tf.reshape(tf.stack(ys, 2), [Bsz, n * c, E]), [0, 0, 0], [Bsz, T, E]), state: state! };
};

/**
 * The selective scan in tfjs ops, chunk-parallel: a loop over the 8 steps of every chunk at once,
 * the states entering the chunks by recursive doubling across them, and the loop again from those.
 * Where the per-step {@link selectiveScanReference} launches ~30 kernels a step, forward and
 * backward, this launches O(8 + log T); the non-finite inputs are treated as the reference treats them.
 *
 * @returns the output `[B, T, E]` and the final state `[B, E, N]`.
 *
 * @example
 * ```ts
 * const [b, t, e, n] = [1, 1024, 64, 16];
 * const A = tf.neg(tf.tile(tf.range(1, n + 1).reshape([1, n]), [e, 1])) as tf.Tensor2D;
 * const { output, state } = selectiveScanChunked({ u: tf.randomNormal([b, t, e]), delta: tf.randomNormal([b, t, e]),
 *   A, B: tf.randomNormal([b, t, n]), C: tf.randomNormal([b, t, n]), deltaSoftplus: true });   // [1, 1024, 64], [1, 64, 16]
 * ```
 */
export function selectiveScanChunked(args: ScanArgs): { output: tf.Tensor3D; state: tf.Tensor3D } {
  return scanOnFinite(args, chunked);
}
