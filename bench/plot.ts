/**
 * Log-log plots of a bench report: median time against T per mixer, one chart per pass, the
 * WGSL kernel solid and the tfjs-ops reference dashed. `npm run bench` writes them beside its
 * report; `npm run bench:plot` (bench/replot.ts) redraws them from saved reports.
 *
 * @packageDocumentation
 */
import { writeFileSync } from 'node:fs';
import { lineChart, type ChartSeries } from '../examples/shared/svg-chart.js';
import type { Pass } from './cases.js';
import type { Report } from './report.js';

/** One measured line: a mixer's medians by T, through one implementation. */
interface Line { mixer: string; side: 'kernel' | 'reference'; points: Array<[number, number]> }

const COLORS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9'];
const PASSES: Pass[] = ['forward', 'forward+backward'];

/** The report's medians as lines, per pass: the two scan mixers, the attention ops, the selective scan. */
function linesOf(r: Report, pass: Pass): Line[] {
  const lines = new Map<string, Line>();
  const add = (mixer: string, side: Line['side'], T: number, ms: number | undefined) => {
    if (ms === undefined) return;
    const key = `${mixer}|${side}`;
    if (!lines.has(key)) lines.set(key, { mixer, side, points: [] });
    lines.get(key)!.points.push([T, ms]);
  };
  for (const c of r.cases.filter((c) => c.pass === pass)) {
    const mixer = c.mixer.split(' ')[0]!;
    add(mixer, 'kernel', c.T, c.webgpu?.medianMs);
    add(mixer, 'reference', c.T, c.reference?.medianMs);
  }
  for (const op of r.attention.ops) {
    for (const c of op.cases.filter((c) => c.pass === pass)) {
      add(op.op, 'kernel', c.T, c.webgpu?.medianMs);
      add(op.op, 'reference', c.T, c.reference?.medianMs);
    }
  }
  for (const c of r.selectiveScan.cases.filter((c) => c.pass === pass)) {
    add('selectiveScan', 'kernel', c.T, c.webgpu?.medianMs);
    add('selectiveScan', 'reference', c.T, c.reference?.medianMs);
  }
  return [...lines.values()].map((l) => ({ ...l, points: l.points.sort((a, b) => a[0] - b[0]) }));
}

/** The SVG chart of one pass of a report. */
export function timeVsLengthChart(r: Report, pass: Pass): string {
  const lines = linesOf(r, pass);
  const mixers = [...new Set(lines.map((l) => l.mixer))];
  const series: ChartSeries[] = lines.map((l) => ({
    label: `${l.mixer} · ${l.side}`,
    color: COLORS[mixers.indexOf(l.mixer) % COLORS.length]!,
    points: l.points,
    dashed: l.side === 'reference',
    markers: true,
  }));
  const lengths = [...new Set(lines.flatMap((l) => l.points.map(([T]) => T)))].sort((a, b) => a - b);
  return lineChart(series, {
    title: `${pass}, ${r.adapter.length > 56 ? `${r.adapter.slice(0, 55)}…` : r.adapter}`,
    subtitle: `${r.date.slice(0, 10)} · kernel solid, reference dashed · slope 1 = linear in T, 2 = quadratic`,
    xLabel: 'sequence length T',
    yLabel: 'median ms per run',
    logX: true,
    logY: true,
    xTicks: lengths,
    width: 980,
    height: 520,
  });
}

/** Writes `<base>.<pass>.svg` for both passes; returns the paths. */
export function writePlots(base: string, r: Report): string[] {
  return PASSES.map((pass) => {
    const path = `${base}.${pass === 'forward' ? 'forward' : 'forward-backward'}.svg`;
    writeFileSync(path, timeVsLengthChart(r, pass));
    return path;
  });
}
