// examples/char-lm experiment: the SVG writer, the statistics and claims, results.md, and the shared training loop
import { describe, expect, it } from 'vitest';
import { Vocabulary, buildModel, withSeededRandom } from '../examples/char-lm/model.js';
import {
  acrossSeeds, assessClaims, compactJson, compareLoss, mergeRecords, renderResults, spread, summarize, thin, trailingMean, trainSeries,
  valSeries, type ExperimentRecord, type RunRecord, type RunSuccess,
} from '../examples/char-lm/report.js';
import { lineChart, logTicks, niceTicks, type ChartSeries } from '../examples/shared/svg-chart.js';
import { trainModel } from '../examples/char-lm/training.js';
import { describeOn, expectNoLeaks } from './helpers.js';

// ───────────────────────────── SVG ─────────────────────────────

/** Tags of an SVG text, checked for balance; throws on a mismatch. */
function checkBalanced(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (!closing) stack.push(name!);
    else if (stack.pop() !== name) throw new Error(`unbalanced </${name}>`);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('>, <')}>`);
}

function viewBox(svg: string): { w: number; h: number } {
  const m = /^<svg [^>]*viewBox="0 0 ([\d.]+) ([\d.]+)"/.exec(svg);
  if (!m) throw new Error('no viewBox on the root <svg>');
  return { w: Number(m[1]), h: Number(m[2]) };
}

/** The `d` of every `<path class="…">` of that class. */
function paths(svg: string, cls: string): string[] {
  return [...svg.matchAll(new RegExp(`<path class="${cls}"[^>]* d="([^"]*)"`, 'g'))].map((m) => m[1]!);
}

/** `[x, y]` pairs of a path made of M/L commands (and Z). */
function coordinates(d: string): [number, number][] {
  const numbers = d.replace(/[MLZ]/g, ' ').trim().split(/\s+/).filter((s) => s !== '').map(Number);
  const out: [number, number][] = [];
  for (let i = 0; i < numbers.length; i += 2) out.push([numbers[i]!, numbers[i + 1]!]);
  return out;
}

const line = (label: string, ys: number[], extra: Partial<ChartSeries> = {}): ChartSeries => ({
  label, color: '#123456', points: ys.map((y, i) => [i + 1, y] as const), ...extra,
});

describe('lineChart', () => {
  const series = [
    line('low', [2, 1.9, 1.8, 1.7], { band: [[1, 1.5, 2.5], [2, 1.4, 2.4], [3, 1.3, 2.3], [4, 1.2, 2.2]] }),
    line('high', [3.1, 3.0, 2.95, 2.9], { markers: true }),
    line('other', [2.5, 2.6, 2.7, 2.8]),
  ];
  const svg = lineChart(series, { title: 'T', xLabel: 'step', yLabel: 'loss', width: 500, height: 300 });

  it('writes a well-formed SVG document with the asked viewBox', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(() => checkBalanced(svg)).not.toThrow();
    expect(viewBox(svg)).toEqual({ w: 500, h: 300 });
  });

  it('draws one series path per series, one band per band, and keeps every coordinate inside the viewBox', () => {
    expect(paths(svg, 'series')).toHaveLength(3);
    expect(paths(svg, 'band')).toHaveLength(1);
    const points = [...paths(svg, 'series'), ...paths(svg, 'band')].flatMap(coordinates);
    points.push(...[...svg.matchAll(/<circle [^>]*cx="([^"]+)" cy="([^"]+)"/g)].map((m) => [Number(m[1]), Number(m[2])] as [number, number]));
    expect(points.length).toBeGreaterThan(12 + 8);
    for (const [x, y] of points) {
      expect(Number.isFinite(x) && Number.isFinite(y)).toBe(true);
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(500);
      expect(y).toBeGreaterThanOrEqual(0);
      expect(y).toBeLessThanOrEqual(300);
    }
    expect([...svg.matchAll(/<circle class="marker"/g)]).toHaveLength(4);
  });

  it('maps larger x to the right and larger y upwards (smaller SVG y)', () => {
    const [low, high] = paths(svg, 'series').map(coordinates);
    for (let i = 1; i < low!.length; i++) {
      expect(low![i]![0]).toBeGreaterThan(low![i - 1]![0]);
      // the "low" series falls, so its SVG y grows
      expect(low![i]![1]).toBeGreaterThan(low![i - 1]![1]);
    }
    const lowestHigh = Math.max(...high!.map(([, y]) => y));
    const highestLow = Math.min(...low!.map(([, y]) => y));
    expect(lowestHigh).toBeLessThan(highestLow);
  });

  it('breaks a line at a non-finite value, and draws nothing for a series without data', () => {
    const gap = lineChart([line('gap', [1, NaN, 2, 3]), line('empty', [NaN, NaN])], { title: 't', xLabel: 'x', yLabel: 'y' });
    const [d] = paths(gap, 'series');
    expect(paths(gap, 'series')).toHaveLength(1);
    expect(d!.match(/M/g)).toHaveLength(2);
    expect(coordinates(d!)).toHaveLength(3);
  });

  it('escapes labels and titles', () => {
    const text = lineChart([line('a<b & "c"', [1, 2])], { title: 'x > y', xLabel: 'x', yLabel: 'y' });
    expect(text).toContain('a&lt;b &amp; &quot;c&quot;');
    expect(text).toContain('x &gt; y');
    expect(text).not.toContain('a<b');
    expect(() => checkBalanced(text)).not.toThrow();
  });

  it('niceTicks: round, evenly spaced ticks inside the range', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(1.93, 4.31, 6)).toEqual([2, 2.5, 3, 3.5, 4]);
    for (const [lo, hi] of [[0.013, 0.0171], [-3, 7], [1, 5000], [2.1, 2.1000003]] as const) {
      const ticks = niceTicks(lo, hi, 6);
      expect(ticks.length).toBeGreaterThanOrEqual(2);
      expect(ticks.length).toBeLessThanOrEqual(13);
      const step = ticks[1]! - ticks[0]!;
      const mantissa = step / 10 ** Math.floor(Math.log10(step));
      expect([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6)).toBe(true);
      for (const t of ticks) {
        expect(t).toBeGreaterThanOrEqual(lo - 1e-12);
        expect(t).toBeLessThanOrEqual(hi + 1e-12);
      }
    }
    expect(niceTicks(3, 6, 6, 1)).toEqual([3, 4, 5, 6]);
    expect(() => niceTicks(2, 1)).toThrow(/lo ≤ hi/);
  });

  it('log axes: a power law is a straight line, values ≤ 0 are left out, ticks are 1, 2, 5 per decade', () => {
    const power: ChartSeries = { label: 'T²', color: '#000', points: [[128, 0.5], [256, 2], [0, 3], [1024, 32], [4096, 512]] };
    const text = lineChart([power], { title: 't', xLabel: 'x', yLabel: 'y', logX: true, logY: true, xTicks: [128, 256, 1024, 4096] });
    const [d] = paths(text, 'series');
    // T = 0 breaks the line: two pieces, four points
    expect(d!.match(/M/g)).toHaveLength(2);
    const pts = coordinates(d!);
    expect(pts).toHaveLength(4);
    // y ∝ T² on log-log axes: every segment has the same slope, and equal ratios of T are equal steps in x
    const slope = (a: [number, number], b: [number, number]) => (b[1] - a[1]) / (b[0] - a[0]);
    for (let i = 2; i < pts.length; i++) expect(slope(pts[i - 1]!, pts[i]!)).toBeCloseTo(slope(pts[0]!, pts[1]!), 1);
    expect(pts[3]![0] - pts[2]![0]).toBeCloseTo(pts[2]![0] - pts[1]![0], 0);
    expect(logTicks(0.3, 40)).toEqual([0.5, 1, 2, 5, 10, 20]);
    expect(logTicks(0.01, 5e5)).toEqual([0.01, 0.1, 1, 10, 100, 1000, 10000, 100000]);
    expect(() => logTicks(0, 1)).toThrow(/0 < lo ≤ hi/);
  });
});

// ───────────────────────────── statistics and claims ─────────────────────────────

function run(mixer: string, seed: number, parameters: number, valLoss: number, trainLoss = valLoss - 0.05): RunSuccess {
  return {
    status: 'ok', mixer, seed, parameters, losses: [4.2, 3, trainLoss], stepMs: [10, 10, 10],
    evals: [{ step: 2, loss: valLoss + 0.5 }, { step: 3, loss: valLoss }], trainLoss, valLoss, trainMs: 30,
    tokensPerSecond: 1000, wallMs: 40, backend: 'cpu', adapter: null, tfjs: '4.22.0',
  };
}

const runsOf = (mixer: string, parameters: number, vals: number[]) => vals.map((v, i) => run(mixer, i + 1, parameters, v));

describe('statistics', () => {
  it('spread: mean, sample standard deviation, min and max', () => {
    const s = spread([1, 2, 3]);
    expect(s.mean).toBeCloseTo(2, 12);
    expect(s.sd).toBeCloseTo(1, 12);
    expect([s.n, s.min, s.max]).toEqual([3, 1, 3]);
    expect(spread([2, 4]).sd).toBeCloseTo(Math.SQRT2, 12);
    expect(spread([5]).sd).toBeNaN();
    expect(spread([]).mean).toBeNaN();
  });

  it('trailingMean uses only the steps up to each point', () => {
    expect(trailingMean([1, 2, 3, 4], 2)).toEqual([1, 1.5, 2.5, 3.5]);
    expect(trailingMean([1, 5, 3, 7, 1], 3)).toEqual([1, 3, 3, 5, 11 / 3]);
    expect(trailingMean([4, 2], 1)).toEqual([4, 2]);
    expect(() => trailingMean([1], 0)).toThrow(/window must be a positive integer/);
  });

  it('acrossSeeds and thin', () => {
    expect(acrossSeeds([[1, 3, 8], [3, 5]])).toEqual({ mean: [2, 4, 8], min: [1, 3, 8], max: [3, 5, 8] });
    const kept = thin(1000, 50);
    expect(kept[0]).toBe(0);
    expect(kept[kept.length - 1]).toBe(999);
    expect(kept.length).toBeLessThanOrEqual(51);
    expect(thin(5, 50)).toEqual([0, 1, 2, 3, 4]);
  });

  it('summarize: per mixer in order of appearance, failed runs left out of the numbers', () => {
    const runs: RunRecord[] = [
      ...runsOf('softmax', 100, [2.2, 2.4]),
      run('causalGeneration', 1, 80, 2.0),
      { status: 'failed', mixer: 'causalGeneration', seed: 2, error: 'the loss is NaN at step 3; lower --lr.', wallMs: 5 },
    ];
    const [softmax, cg] = summarize(runs);
    expect(softmax!.mixer).toBe('softmax');
    expect(softmax!.valLoss.mean).toBeCloseTo(2.3, 12);
    expect(softmax!.valBySeed).toEqual({ 1: 2.2, 2: 2.4 });
    expect(cg!.seeds).toEqual([1]);
    expect(cg!.failedSeeds).toEqual([2]);
    expect(cg!.valLoss.n).toBe(1);
    expect(cg!.parameters).toBe(80);
  });
});

describe('the paper\'s claims', () => {
  const softmax = runsOf('softmax', 100, [2.20, 2.22, 2.21]);
  const cg = runsOf('causalGeneration', 80, [2.00, 2.02, 2.01]);

  it('holds / holds / inconclusive when AverageContext differs by less than the seed spread', () => {
    const ac = runsOf('averageContext', 80, [2.011, 1.995, 2.02]);
    const claims = assessClaims(summarize([...softmax, ...cg, ...ac]));
    expect(claims.map((c) => c.verdict)).toEqual(['holds', 'holds', 'inconclusive']);
    expect(claims[0]!.detail).toContain('80 vs 100 parameters (−20.0 %)');
    // the difference of the means, 2.01 − 2.21
    expect(claims[1]!.detail).toContain('−0.2000');
    expect(claims[1]!.detail).toContain('lower in 3 of 3 paired seeds');
  });

  it('does not hold when the loss is higher by more than the spread, or the model is not smaller', () => {
    const worse = runsOf('causalGeneration', 120, [2.40, 2.41, 2.42]);
    const ac = runsOf('averageContext', 120, [2.30, 2.31, 2.32]);
    const claims = assessClaims(summarize([...softmax, ...worse, ...ac]));
    expect(claims.map((c) => c.verdict)).toEqual(['does not hold', 'does not hold', 'holds']);
    expect(claims[0]!.detail).toContain('+20.0 %');
  });

  it('compareLoss: the threshold is the larger standard deviation, and one seed is never enough', () => {
    const [a, b] = summarize([...runsOf('a', 1, [1.0, 1.2]), ...runsOf('b', 1, [1.15, 1.16])]);
    const c = compareLoss(a!, b!);
    expect(c.difference).toBeCloseTo(1.1 - 1.155, 12);
    expect(c.threshold).toBeCloseTo(spread([1.0, 1.2]).sd, 12);
    expect(c.verdict).toBe('inconclusive');
    expect([c.pairedSeeds, c.lowerInSeeds]).toEqual([2, 1]);

    const [x, y] = summarize([run('x', 1, 1, 1.0), run('y', 1, 1, 3.0)]);
    expect(compareLoss(x!, y!).verdict).toBe('inconclusive');
  });

  it('says "not tested" for what was not run', () => {
    const claims = assessClaims(summarize([...softmax, ...cg]));
    expect(claims.map((c) => c.verdict)).toEqual(['holds', 'holds', 'not tested']);
    expect(assessClaims(summarize(runsOf('selectiveSSM', 10, [1, 2]))).every((c) => c.verdict === 'not tested')).toBe(true);
  });
});

// ───────────────────────────── series, results.md, JSON ─────────────────────────────

describe('results', () => {
  const runs: RunRecord[] = [...runsOf('softmax', 112577, [2.2, 2.3]), ...runsOf('causalGeneration', 87617, [2.0, 2.1])];

  it('trainSeries and valSeries: mean over seeds as the line, min–max as the band', () => {
    const r1 = { ...run('m', 1, 1, 2), losses: [4, 2, 2] };
    const r2 = { ...run('m', 2, 1, 3), losses: [2, 4, 4] };
    const [train] = trainSeries([r1, r2], 2);
    // trailing means of 2: r1 → [4, 3, 2], r2 → [2, 3, 4]
    expect(train!.points).toEqual([[1, 3], [2, 3], [3, 3]]);
    expect(train!.band).toEqual([[1, 2, 4], [2, 3, 3], [3, 2, 4]]);
    const [val] = valSeries([r1, r2]);
    expect(val!.points).toEqual([[2, 3], [3, 2.5]]);
    expect(val!.band).toEqual([[2, 2.5, 3.5], [3, 2, 3]]);
    expect(valSeries([r1])[0]!.band).toBeUndefined();
    // a mixer with a failed seed says how many seeds its line averages
    const failed: RunRecord = { status: 'failed', mixer: 'n', seed: 2, error: 'x', wallMs: 1 };
    expect(valSeries([r1, r2, { ...r1, mixer: 'n' }, failed]).map((s) => s.label)).toEqual(['m', 'n (1 of 2 seeds)']);
  });

  const record = (quick: boolean): ExperimentRecord => {
    const summary = summarize(runs);
    return {
      question: 'Q', date: '2024-01-01T00:00:00.000Z',
      config: {
        args: ['--seeds', '1,2'], quick, mixers: ['softmax', 'causalGeneration'], seeds: [1, 2], steps: 3, batch: 8,
        context: 64, width: 64, blocks: 2, heads: 4, lr: 3e-3, clip: 1, evalEvery: 2, evalBatches: 8, backend: 'cpu',
        jobs: 1, data: '/data.txt',
      },
      machine: { cpu: 'CPU X', cores: 16, memoryGiB: 128, platform: 'linux', node: 'v20', tfjs: '4.22.0', backends: ['cpu'], adapters: [] },
      smoothing: { kind: 'trailing mean', window: 1 }, wallMs: 1000, pending: 0,
      summary, claims: assessClaims(summary), runs,
    };
  };
  const links = { train: 'results/train-loss.svg', val: 'results/val-loss.svg', charLm: 'cl.md', averageContext: 'ac.md' };

  it('results.md: a table row per mixer, the plots, and a verdict per claim', () => {
    const md = renderResults(record(false), links);
    expect(md).toMatch(/\| `softmax` \| 112,577 \| [\d.]+ ± [\d.]+ \| 2\.2500 ± 0\.0707 \| 1,000 \|/);
    expect(md).toMatch(/\| `causalGeneration` \| 87,617 \| .* \| 2\.0500 ± 0\.0707 \|/);
    expect(md).toContain('![Training loss per mixer](results/train-loss.svg)');
    expect(md).toContain('![Validation loss per mixer](results/val-loss.svg)');
    expect(md).toContain('lower validation loss than softmax attention: holds.**');
    expect(md).toContain('than CausalGeneration: not tested.**');
    expect(md).not.toContain('--quick');
    expect(renderResults(record(true), links)).toContain('`--quick` check run');
    expect(md).not.toContain('**Note:**');
    const noted = renderResults({ ...record(false), notes: ['ran on a busy machine', 'merged'] }, links);
    expect(noted).toContain('- **Note:** ran on a busy machine\n- **Note:** merged\n');
  });

  it('mergeRecords: the runs of split invocations as one experiment, with a note per later invocation', () => {
    const base = record(false);
    // the first invocation was stopped after softmax seed 1 and causalGeneration seed 2 of its 2 × 2
    const first: ExperimentRecord = {
      ...base, wallMs: 1000, pending: 2, runs: [run('causalGeneration', 2, 87617, 2.1), run('softmax', 1, 112577, 2.2)],
    };
    const later: ExperimentRecord = {
      ...base, date: '2024-01-02T00:00:00.000Z', wallMs: 500, pending: 0,
      config: { ...base.config, args: ['--mixers', 'softmax,averageContext', '--seeds', '2,3'], mixers: ['softmax', 'averageContext'], seeds: [2, 3], jobs: 2 },
      machine: { ...base.machine, backends: ['wasm'] }, notes: ['ran beside a test run'],
      runs: [run('softmax', 2, 112577, 2.3), run('averageContext', 3, 87617, 2.0)],
    };
    const merged = mergeRecords([first, later], ['softmax', 'causalGeneration', 'averageContext']);
    expect(merged.runs.map((r) => `${r.mixer} ${r.seed}`)).toEqual(['softmax 1', 'softmax 2', 'causalGeneration 2', 'averageContext 3']);
    expect(merged.config.mixers).toEqual(['softmax', 'causalGeneration', 'averageContext']);
    expect(merged.config.seeds).toEqual([1, 2, 3]);
    expect(merged.config.args).toEqual(base.config.args);
    // 3 mixers × 3 seeds configured, 4 trained
    expect(merged.pending).toBe(5);
    expect(merged.wallMs).toBe(1500);
    expect(merged.date).toBe(base.date);
    expect(merged.machine.backends).toEqual(['cpu', 'wasm']);
    expect(merged.summary.map((s) => [s.mixer, s.seeds])).toEqual([['softmax', [1, 2]], ['causalGeneration', [2]], ['averageContext', [3]]]);
    expect(merged.summary[0]!.valLoss.mean).toBeCloseTo(2.25, 12);
    expect(merged.notes).toEqual([
      'ran beside a test run',
      '`softmax` (seed 2), `averageContext` (seed 3) trained by a further invocation, 2024-01-02T00:00:00.000Z, 2 run(s) at a time: ' +
        '`npm run example:experiment -- --mixers softmax,averageContext --seeds 2,3` (1 s), merged into this record with `--merge`.',
    ]);
    expect(renderResults(merged, links)).toContain('**Incomplete:** 5 run(s)');
    expect(mergeRecords([first], ['softmax']).notes).toBeUndefined();
  });

  it('mergeRecords refuses records trained differently, and a (mixer, seed) trained twice', () => {
    const base = record(false);
    const wider = { ...base, date: '2024-01-02T00:00:00.000Z', config: { ...base.config, width: 128 }, runs: [] };
    expect(() => mergeRecords([base, wider], [])).toThrow(/differ in width: the first has 64, record 2 \(2024-01-02T00:00:00.000Z\) has 128/);
    const again = { ...base, date: '2024-01-02T00:00:00.000Z', runs: [run('softmax', 2, 112577, 2.4)] };
    expect(() => mergeRecords([base, again], [])).toThrow(/softmax seed 2 was trained twice/);
    expect(() => mergeRecords([], [])).toThrow(/at least one record/);
  });

  it('compactJson parses back to the same value', () => {
    const value = { a: [1, 2.5, null], b: { step: 3, loss: 1.25 }, c: { n: 1, mean: NaN, deep: { x: ['s p', '[{'] } }, d: [] };
    const text = compactJson(value);
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
    expect(text).toContain('"a": [1,2.5,null]');
    expect(text).toContain('"b": {"step":3,"loss":1.25}');
    expect(JSON.parse(compactJson(record(false)))).toEqual(JSON.parse(JSON.stringify(record(false))));
  });
});

// ───────────────────────────── the shared training loop ─────────────────────────────

describeOn('cpu', 'examples/char-lm trainModel', () => {
  const text = 'To be, or not to be, that is the question:\nWhether \'tis nobler in the mind to suffer\n'.repeat(4);
  const vocab = Vocabulary.fromText(text);
  const data = vocab.encode(text);
  const corpus = { train: data.subarray(0, 250), val: data.subarray(250) };
  const options = { steps: 4, batch: 2, context: 8, lr: 1e-2, clip: 1, evalEvery: 2, evalBatches: 2 };
  const train = async (seed: number) => {
    const model = withSeededRandom(seed, () => buildModel({ mixer: 'averageContext', vocab: vocab.size, context: 8, width: 8, blocks: 1, heads: 2 }));
    const result = await expectNoLeaks(() => trainModel(model, corpus, { ...options, seed }));
    model.dispose();
    return result;
  };

  it('records every step and each validation, is seeded, and leaks nothing', async () => {
    const a = await train(3);
    const b = await train(3);
    const c = await train(4);
    expect(a.losses).toHaveLength(4);
    expect(a.stepMs).toHaveLength(4);
    expect(a.evals.map((e) => e.step)).toEqual([2, 4]);
    expect(a.trainLoss).toBe(a.losses[3]);
    expect(a.valLoss).toBe(a.evals[1]!.loss);
    expect(a.tokensPerSecond).toBeCloseTo((4 * 2 * 8) / (a.trainMs / 1000), 6);
    expect(b.losses).toEqual(a.losses);
    expect(b.valLoss).toBe(a.valLoss);
    expect(c.losses).not.toEqual(a.losses);
  });

  it('stops with an error naming --lr when the loss is not finite', async () => {
    const model = withSeededRandom(1, () => buildModel({ mixer: 'causalGeneration', vocab: vocab.size, context: 8, width: 8, blocks: 1 }));
    await expect(trainModel(model, corpus, { ...options, lr: 1e30, clip: 0, seed: 1, steps: 30 })).rejects.toThrow(/lower --lr/);
    model.dispose();
  });
});
