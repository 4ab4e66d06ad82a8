/**
 * How the bench checks a kernel against its reference before timing it. Kept apart from
 * report.ts, which writes files, so that the browser pages (bench/peers) can use it.
 *
 * @packageDocumentation
 */

/** Kernel output against reference output, before any timing. */
export interface Validation {
  maxAbsDiff: number;
  maxAbsReference: number;
  /** `maxAbsDiff / maxAbsReference`; the case is timed only when it is below the tolerance. */
  relative: number;
  ok: boolean;
}

/**
 * Kernel output against reference output, pair by pair: the largest absolute difference over
 * all pairs, relative to the largest reference magnitude. A NaN anywhere fails.
 */
export function agreement(pairs: Array<[ArrayLike<number>, ArrayLike<number>]>, tolerance: number): Validation {
  let maxAbsDiff = 0;
  let maxAbsReference = 0;
  for (const [k, r] of pairs) {
    if (k.length !== r.length) throw new Error(`bench: comparing ${k.length} values against ${r.length}.`);
    for (let i = 0; i < r.length; i++) {
      // Math.max would swallow a NaN
      const diff = Math.abs(k[i]! - r[i]!);
      maxAbsDiff = Number.isNaN(diff) || Number.isNaN(maxAbsDiff) ? NaN : Math.max(maxAbsDiff, diff);
      maxAbsReference = Math.max(maxAbsReference, Math.abs(r[i]!));
    }
  }
  const relative = maxAbsDiff / Math.max(maxAbsReference, Number.MIN_VALUE);
  return { maxAbsDiff, maxAbsReference, relative, ok: relative < tolerance };
}
