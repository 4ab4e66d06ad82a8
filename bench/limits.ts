/**
 * The attention section's limits: when a side is skipped for memory or time, and how many
 * samples a case gets. The bench as a whole has a deadline, checked case by case.
 *
 * @packageDocumentation
 */
import type { AttentionReport } from './report.js';
import type { Budget } from './timing.js';

/** When a side is skipped or timed with the minimum iterations (see {@link AttentionReport}). */
export const LIMITS: AttentionReport['limits'] = {
  referenceGiB: 2,
  referenceRunS: 20,
  benchMinutes: 9,
  minimalRunS: 1,
  slice: 128,
};

// validation has already run each side once, so one warm-up run suffices
const CASE_BUDGET: Budget = { warmup: 1, minIterations: 3, maxIterations: 30, budgetMs: 2000 };
// runs over a second: the validation run (same op, same shapes) is the warm-up
const MINIMAL_BUDGET: Budget = { warmup: 0, minIterations: 1, maxIterations: 3, budgetMs: 10_000 };

/** Seconds, to one decimal below 10 s. */
export const seconds = (ms: number) => (ms / 1000).toFixed(ms >= 10_000 ? 0 : 1);

/**
 * The sides of a case timed with the minimum iterations: those whose run is predicted over
 * {@link LIMITS} `minimalRunS` (predictions from the previous length only: a first validation
 * run also compiles the pipelines). A side predicted shorter keeps the case's whole budget
 * beside them.
 */
export function minimalSides<K extends string>(predictedMs: Partial<Record<K, number>>): K[] {
  return (Object.keys(predictedMs) as K[]).filter((k) => predictedMs[k]! > LIMITS.minimalRunS * 1000);
}

/** The sampling budgets of a case's sides, for `timeInterleaved`: the minimum for the `minimal` ones. */
export function budgetsOf<K extends string>(minimal: K[]): [Budget, Partial<Record<K, Budget>>] {
  return [CASE_BUDGET, Object.fromEntries(minimal.map((k) => [k, MINIMAL_BUDGET])) as Partial<Record<K, Budget>>];
}

/**
 * Why work whose runs are predicted to take `runMs` together cannot be validated and sampled
 * once: that would end the bench, begun at `started` (a `performance.now()`), after
 * {@link LIMITS} `benchMinutes`. Undefined when it fits, or nothing predicts it yet.
 */
export function overBudget(runMs: number | undefined, started: number, what: string): string | undefined {
  if (runMs === undefined) return undefined;
  // the validation run and one sample at least
  const endMinutes = (performance.now() + 2 * runMs - started) / 60_000;
  if (endMinutes <= LIMITS.benchMinutes) return undefined;
  return `skipped: over time budget (${what} predicted ~${seconds(runMs)} s; validated and timed, ` +
    `the bench would end at ~${endMinutes.toFixed(0)} min > ${LIMITS.benchMinutes})`;
}
