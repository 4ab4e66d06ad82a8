/**
 * mulberry32: a tiny seeded generator, uniform in [0, 1) in float64. One copy for the examples
 * (batches, sampling, seeded initialisation) and the tests (inputs, oracles).
 *
 * @example
 * ```ts
 * const random = mulberry32(1337);
 * const u = random(); // the same sequence for the same seed
 * ```
 *
 * @packageDocumentation
 */

/** A seeded uniform generator on [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
