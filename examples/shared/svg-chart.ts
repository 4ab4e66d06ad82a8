/**
 * A small line-chart writer for the examples' and the bench's plots: plain SVG text, no plotting
 * library, no DOM (a page sets it as an element's innerHTML). Each series is one
 * `<path class="series">`, with an optional shaded band (`<path class="band">`, e.g. the spread
 * over seeds) and optional point markers; either axis may be logarithmic.
 *
 * @example
 * ```ts
 * const svg = lineChart([
 *   { label: 'softmax', color: '#000', points: [[1, 4.2], [2, 3.9], [3, 3.5]] },
 * ], { title: 'Training loss', xLabel: 'step', yLabel: 'loss (nats)' });
 * writeFileSync('loss.svg', svg);
 * ```
 *
 * @packageDocumentation
 */

/** One line of a {@link lineChart}. */
export interface ChartSeries {
  /** The legend's text. */
  label: string;
  /** Any SVG colour, e.g. `'#0072b2'`. */
  color: string;
  /** `[x, y]` points in drawing order; a non-finite y breaks the line there. */
  points: ReadonlyArray<readonly [number, number]>;
  /** Optional shaded band `[x, low, high]`, drawn under the line. */
  band?: ReadonlyArray<readonly [number, number, number]>;
  /** Draws a dot at every point: for series with few points, where a line alone hides them. */
  markers?: boolean;
  /** Dashed line. */
  dashed?: boolean;
}

/** Arguments of {@link lineChart}. */
export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** A line of small text under the title (e.g. how the curves were smoothed). */
  subtitle?: string;
  /** Width of the viewBox; default 760. */
  width?: number;
  /** Height of the viewBox; default 440. */
  height?: number;
  /** Only whole-number ticks on the x axis (e.g. steps). */
  integerX?: boolean;
  /** Logarithmic x axis (values ≤ 0 are left out); ticks at 1, 2 and 5 per decade, or {@link ChartOptions.xTicks}. */
  logX?: boolean;
  /** Logarithmic y axis (values ≤ 0 are left out); ticks at 1, 2 and 5 per decade. */
  logY?: boolean;
  /** The x axis's tick values, instead of the automatic ones (e.g. the sequence lengths measured). */
  xTicks?: readonly number[];
}

/** The plot area's margins: room for tick labels on the left; the legend's room on the right depends on its labels. */
const MARGIN = { left: 64, top: 56, bottom: 52 };

/** A generous width of a 12 px system-ui character, so legend labels fit without measuring text. */
const CHAR_WIDTH = 7.2;

/** Escapes text for SVG content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * Round tick values covering `[lo, hi]`: steps of 1, 2 or 5 times a power of ten (and at least
 * `minStep`), about `count` of them, all within `[lo, hi]`.
 */
export function niceTicks(lo: number, hi: number, count = 5, minStep = 0): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi < lo) {
    throw new Error(`niceTicks: expected finite lo ≤ hi; received lo = ${lo}, hi = ${hi}.`);
  }
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(minStep, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw)!);
  const ticks: number[] = [];
  // index-based, so that repeated addition does not accumulate rounding error
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/** 1, 2 and 5 times each power of ten within `[lo, hi]` (both > 0); the powers alone over many decades. */
export function logTicks(lo: number, hi: number): number[] {
  if (!(lo > 0) || !(hi >= lo) || !Number.isFinite(hi)) {
    throw new Error(`logTicks: expected finite 0 < lo ≤ hi; received lo = ${lo}, hi = ${hi}.`);
  }
  const first = Math.floor(Math.log10(lo));
  const last = Math.ceil(Math.log10(hi));
  const multiples = last - first > 4 ? [1] : [1, 2, 5];
  const ticks: number[] = [];
  for (let e = first; e <= last; e++) {
    for (const m of multiples) {
      const v = Number((m * 10 ** e).toPrecision(12));
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push(v);
    }
  }
  return ticks;
}

/** A tick label on a log axis: no trailing zeros, no exponent between 1e-4 and 1e6. */
function logLabel(v: number): string {
  return v >= 1e-4 && v < 1e6 ? String(Number(v.toPrecision(3))) : v.toExponential(0);
}

function decimalsOf(ticks: number[]): number {
  if (ticks.length < 2) return 2;
  const step = Math.abs(ticks[1]! - ticks[0]!);
  return Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
}

/** The data's extent over points and bands, ignoring non-finite values; null when empty. */
function extent(series: readonly ChartSeries[]): { x0: number; x1: number; y0: number; y1: number } | null {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  const see = (x: number, ...ys: number[]) => {
    if (!Number.isFinite(x)) return;
    for (const y of ys) {
      if (!Number.isFinite(y)) continue;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  };
  for (const s of series) {
    for (const [x, y] of s.points) see(x, y);
    for (const [x, lo, hi] of s.band ?? []) see(x, lo, hi);
  }
  return x0 <= x1 ? { x0, x1, y0, y1 } : null;
}

const fmt = (v: number) => String(Math.round(v * 10) / 10);

/**
 * An SVG line chart of `series` (in legend order) on shared axes (linear, or logarithmic by
 * {@link ChartOptions.logX} and {@link ChartOptions.logY}) that fit all points and bands. Returns the SVG document as text; every coordinate lies inside its viewBox.
 */
export function lineChart(series: readonly ChartSeries[], options: ChartOptions): string {
  const W = options.width ?? 760;
  const H = options.height ?? 440;
  const right = 48 + CHAR_WIDTH * Math.max(8, ...series.map((s) => s.label.length));
  const plot = { x: MARGIN.left, y: MARGIN.top, w: W - MARGIN.left - right, h: H - MARGIN.top - MARGIN.bottom };
  if (plot.w <= 0 || plot.h <= 0) {
    throw new Error(`lineChart: width and height must leave room for the margins and the legend; received ${W}×${H}.`);
  }
  // a log axis plots log10 of its values; the ticks are labelled with the values themselves
  const log = (v: number) => (v > 0 ? Math.log10(v) : NaN);
  const tx = options.logX ? log : (v: number) => v;
  const ty = options.logY ? log : (v: number) => v;
  const plotted = series.map((s) => ({
    ...s,
    points: s.points.map(([x, y]) => [tx(x), ty(y)] as const),
    band: s.band?.map(([x, lo, hi]) => [tx(x), ty(lo), ty(hi)] as const),
  }));
  const e = extent(plotted) ?? { x0: 0, x1: 1, y0: 0, y1: 1 };
  // a single x or y value still needs a non-empty axis
  if (e.x1 === e.x0) { e.x0 -= 1; e.x1 += 1; }
  const pad = e.y1 > e.y0 ? 0.04 * (e.y1 - e.y0) : options.logY ? 0.5 : Math.max(0.5, Math.abs(e.y0) * 0.05);
  const y0 = e.y0 - pad, y1 = e.y1 + pad;
  const sx = (x: number) => plot.x + ((x - e.x0) / (e.x1 - e.x0)) * plot.w;
  const sy = (y: number) => plot.y + plot.h - ((y - y0) / (y1 - y0)) * plot.h;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" ` +
    'font-family="system-ui, sans-serif" font-size="12">');
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escapeXml(options.title)}</text>`);
  if (options.subtitle) {
    out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555555">${escapeXml(options.subtitle)}</text>`);
  }

  // grid and ticks
  // each tick: its position (in plotted units) and its label
  const linear = (ticks: number[]) => {
    const decimals = decimalsOf(ticks);
    return ticks.map((t) => ({ at: t, label: t.toFixed(decimals) }));
  };
  const logarithmic = (ticks: number[]) => ticks.map((t) => ({ at: Math.log10(t), label: logLabel(t) }));
  const xTicks = options.xTicks
    ? options.xTicks.map((t) => ({ at: tx(t), label: String(t) })).filter((t) => t.at >= e.x0 && t.at <= e.x1)
    : options.logX ? logarithmic(logTicks(10 ** e.x0, 10 ** e.x1)) : linear(niceTicks(e.x0, e.x1, 6, options.integerX ? 1 : 0));
  const yTicks = options.logY ? logarithmic(logTicks(10 ** y0, 10 ** y1)) : linear(niceTicks(y0, y1, 6));
  out.push('<g class="grid" stroke="#e5e5e5" stroke-width="1">');
  for (const { at } of xTicks) out.push(`<line x1="${fmt(sx(at))}" y1="${plot.y}" x2="${fmt(sx(at))}" y2="${plot.y + plot.h}"/>`);
  for (const { at } of yTicks) out.push(`<line x1="${plot.x}" y1="${fmt(sy(at))}" x2="${plot.x + plot.w}" y2="${fmt(sy(at))}"/>`);
  out.push('</g>');
  out.push(`<rect x="${plot.x}" y="${plot.y}" width="${plot.w}" height="${plot.h}" fill="none" stroke="#888888"/>`);
  out.push('<g class="ticks" fill="#333333">');
  for (const { at, label } of xTicks) {
    out.push(`<text x="${fmt(sx(at))}" y="${plot.y + plot.h + 16}" text-anchor="middle">${escapeXml(label)}</text>`);
  }
  for (const { at, label } of yTicks) {
    out.push(`<text x="${plot.x - 6}" y="${fmt(sy(at) + 4)}" text-anchor="end">${escapeXml(label)}</text>`);
  }
  out.push('</g>');
  out.push(`<text x="${fmt(plot.x + plot.w / 2)}" y="${H - 12}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  out.push(`<text x="16" y="${fmt(plot.y + plot.h / 2)}" text-anchor="middle" ` +
    `transform="rotate(-90 16 ${fmt(plot.y + plot.h / 2)})">${escapeXml(options.yLabel)}</text>`);

  // bands first, so that every line lies on top of every band
  for (const s of plotted) {
    const band = (s.band ?? []).filter(([x, lo, hi]) => Number.isFinite(x) && Number.isFinite(lo) && Number.isFinite(hi));
    if (band.length < 2) continue;
    const upper = band.map(([x, , hi]) => `${fmt(sx(x))} ${fmt(sy(hi))}`);
    const lower = band.map(([x, lo]) => `${fmt(sx(x))} ${fmt(sy(lo))}`).reverse();
    out.push(`<path class="band" data-label="${escapeXml(s.label)}" d="M${upper.join(' L')} L${lower.join(' L')} Z" ` +
      `fill="${escapeXml(s.color)}" fill-opacity="0.15" stroke="none"/>`);
  }
  for (const s of plotted) {
    const parts: string[] = [];
    let pen = 'M';
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = 'M'; continue; }
      parts.push(`${pen}${fmt(sx(x))} ${fmt(sy(y))}`);
      pen = 'L';
    }
    if (parts.length === 0) continue;
    out.push(`<path class="series" data-label="${escapeXml(s.label)}" d="${parts.join(' ')}" fill="none" ` +
      `stroke="${escapeXml(s.color)}" stroke-width="1.75" stroke-linejoin="round"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (s.markers) {
      for (const [x, y] of s.points) {
        if (Number.isFinite(x) && Number.isFinite(y)) {
          out.push(`<circle class="marker" data-label="${escapeXml(s.label)}" cx="${fmt(sx(x))}" cy="${fmt(sy(y))}" r="2.5" ` +
            `fill="${escapeXml(s.color)}"/>`);
        }
      }
    }
  }

  // legend, right of the plot
  out.push('<g class="legend">');
  series.forEach((s, i) => {
    const y = plot.y + 8 + i * 20;
    const x = plot.x + plot.w + 16;
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${escapeXml(s.color)}" stroke-width="2.5"` +
      `${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${x + 28}" y="${y + 4}">${escapeXml(s.label)}</text>`);
  });
  out.push('</g>');
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
