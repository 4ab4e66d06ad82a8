// bench/timing.ts's timeRuns: contenders alternate, each sampled on its own budget, so a fast
// kernel beside a reference of seconds is not held to the reference's few samples.
import { expect, it } from 'vitest';
import { timeRuns, type Budget, type Contender } from '../bench/timing.js';

/** A contender whose run busy-waits `ms`, counting its runs and the order of its fences. */
function busy(ms: number, fences: string[], name: string): Contender & { runs: number } {
  const c = {
    runs: 0,
    run() {
      c.runs++;
      const end = performance.now() + ms;
      while (performance.now() < end) { /* a run of `ms` */ }
    },
    fence: async () => { fences.push(name); },
  };
  return c;
}

it('samples each contender on its own budget, alternating while both sample', async () => {
  const fences: string[] = [];
  const fast = busy(0.5, fences, 'fast');
  const slow = busy(12, fences, 'slow');
  const full: Budget = { warmup: 1, minIterations: 3, maxIterations: 8, budgetMs: 60_000 };
  const minimal: Budget = { warmup: 0, minIterations: 1, maxIterations: 2, budgetMs: 0 };
  const t = await timeRuns({ fast, slow }, full, { slow: minimal });
  // slow: no warm-up, one single-run sample (its budget of 0 ms is spent by the first)
  expect(slow.runs).toBe(1);
  expect(t.slow.iterations).toBe(1);
  expect(t.slow.runsPerSample).toBe(1);
  // fast: one warm-up run, then 8 samples of runs repeated to last MIN_SAMPLE_MS (5 ms)
  expect(t.fast.runsPerSample).toBeGreaterThan(1);
  expect(t.fast.iterations).toBe(8 * t.fast.runsPerSample);
  expect(fast.runs).toBe(1 + t.fast.iterations);
  // the warm-up's fence, then fast and slow alternating until slow stops
  expect(fences.slice(0, 3)).toEqual(['fast', 'fast', 'slow']);
  expect(fences.filter((f) => f === 'fast')).toHaveLength(9);
  expect(t.slow.medianMs).toBeGreaterThanOrEqual(12);
  expect(t.slow.recordMs).toBeGreaterThanOrEqual(12);
});

it('holds every contender to the shared budget when none has its own', async () => {
  const fences: string[] = [];
  const a = busy(6, fences, 'a');
  const b = busy(6, fences, 'b');
  const t = await timeRuns({ a, b }, { warmup: 0, minIterations: 2, maxIterations: 3, budgetMs: 60_000 });
  expect([t.a.iterations, t.b.iterations]).toEqual([3, 3]);
  expect(fences).toEqual(['a', 'b', 'a', 'b', 'a', 'b']);
});
