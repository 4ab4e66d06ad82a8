/**
 * The timing page (index.html): one mixer's WGSL kernels (`implementation: 'webgpu'`) against
 * its tfjs-ops reference (`implementation: 'reference'`) on the same random input, on tfjs's
 * WebGPU backend. Each run validates the two against each other before timing them (fenced
 * wall time, median of several runs after a warm-up), adds a row to the table and the chart,
 * and to `<pre id="results">` as JSON for scripts. **Tune** runs `tuneKernels` at the selected T
 * and shows what it timed and kept (`<pre id="tuned">`, the whole tuning as JSON).
 *
 * In an application, import the library as `'tfjs-mixers'`; build.mjs maps this path to it.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { mixers, tuneKernels, type Implementation, type KernelTuning, type MixerDescriptor } from '../../src/index.js';
import { lineChart, type ChartSeries } from '../shared/svg-chart.js';
import {
  WEBGPU_HELP, byId, fence, findWebGPU, median, setState, showMessage, yieldToBrowser,
} from './common.js';

type Pass = 'forward' | 'forward+backward';

/**
 * Every registered mixer (each has WGSL kernels), by name, from the library's registry: each runs its descriptor's
 * bench case. A case agrees when max |kernel − reference| / max |reference| is under the
 * descriptor's tolerance (float32 sums in another order give ~1e-6).
 */
const CASES = new Map(mixers.map((m) => [m.name, m]));

/** The layer class's exported name: its className less the package ('tfjs-mixers>Aaren' → 'Aaren'). */
const classOf = (m: MixerDescriptor) => m.className.slice(m.className.indexOf('>') + 1);

/** The descriptor of the page's mixer `name`. */
function descriptor(name: string): MixerDescriptor {
  const m = CASES.get(name);
  if (!m) throw new Error(`unknown mixer ${name}`);
  return m;
}

/** Fenced wall time of one implementation. */
interface Timing {
  medianMs: number;
  minMs: number;
  /** Timed runs (after the warm-up). */
  runs: number;
}

/** One row of the results: what the page shows and `<pre id="results">` holds. */
export interface ResultRow {
  mixer: string;
  op: string;
  inputs: string;
  pass: Pass;
  T: number;
  /** max |kernel − reference| / max |reference|, the worst over the outputs. */
  relativeError: number;
  /** The same, per output (`y`, then `dq`, `dk`, … for forward+backward). */
  perOutput: Record<string, number>;
  tolerance: number;
  agree: boolean;
  kernel: Timing;
  reference: Timing;
  /** reference median / kernel median. */
  speedup: number;
}

/** Untimed runs of each implementation before timing, the validation run included. */
const WARMUP = 1;
const MIN_RUNS = 3;
const MAX_RUNS = 9;
/** An implementation stops after MIN_RUNS once its timed runs have taken this long. */
const BUDGET_MS = 1500;

const rows: ResultRow[] = [];

/** max |a − b| / max |b|, NaN when either holds a NaN. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    // Math.max would drop a NaN
    diff = Number.isNaN(d) || Number.isNaN(diff) ? NaN : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / Math.max(scale, Number.MIN_VALUE);
}

async function measure(mixer: string, T: number, pass: Pass, progress: (line: string) => void): Promise<ResultRow> {
  const m = descriptor(mixer);
  const tolerance = m.kernels.tolerance;
  const c = m.benchCase(T, 42);
  const { names, inputs, constants, run } = c;
  const probe = tf.tidy(() => run('reference', inputs));
  const dy = tf.randomNormal(probe.shape, 0, 1, 'float32', 7);
  probe.dispose();
  const outputNames = pass === 'forward' ? ['y'] : ['y', ...names.map((n) => `d${n}`)];
  const contender = (impl: Implementation) => (): tf.Tensor[] => tf.tidy(() => {
    if (pass === 'forward') return [run(impl, inputs)];
    const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => run(impl, xs))(inputs, dy);
    return [value, ...grads];
  });
  const contenders = { kernel: contender('webgpu'), reference: contender('reference') };
  try {
    // validate first: this run also compiles the pipelines, so it is the first warm-up run
    progress('validating the kernel against the reference…');
    const results: Record<'kernel' | 'reference', Float32Array[]> = { kernel: [], reference: [] };
    for (const impl of ['kernel', 'reference'] as const) {
      const outs = contenders[impl]();
      results[impl] = await Promise.all(outs.map((o) => o.data() as Promise<Float32Array>));
      tf.dispose(outs);
    }
    const perOutput = Object.fromEntries(outputNames.map((n, i) => [n, relativeError(results.kernel[i]!, results.reference[i]!)]));
    const worst = Object.values(perOutput).reduce((a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)), 0);

    const samples: Record<'kernel' | 'reference', number[]> = { kernel: [], reference: [] };
    const spent = { kernel: 0, reference: 0 };
    const once = async (impl: 'kernel' | 'reference') => {
      const start = performance.now();
      tf.dispose(contenders[impl]());
      await fence();
      return performance.now() - start;
    };
    for (let i = 1; i < WARMUP; i++) for (const impl of ['kernel', 'reference'] as const) await once(impl);
    const done = (impl: 'kernel' | 'reference') => samples[impl].length >= MAX_RUNS ||
      (samples[impl].length >= MIN_RUNS && spent[impl] >= BUDGET_MS);
    // alternate the two, so that load from elsewhere on the machine falls on both alike
    while (!done('kernel') || !done('reference')) {
      for (const impl of ['kernel', 'reference'] as const) {
        if (done(impl)) continue;
        progress(`timing: kernel ${samples.kernel.length} runs, reference ${samples.reference.length} runs…`);
        const ms = await once(impl);
        samples[impl].push(ms);
        spent[impl] += ms;
        await yieldToBrowser();
      }
    }
    const timing = (s: number[]): Timing => ({ medianMs: median(s), minMs: Math.min(...s), runs: s.length });
    const kernel = timing(samples.kernel);
    const reference = timing(samples.reference);
    return {
      mixer: classOf(m), op: `ops.${c.op}`, inputs: c.about, pass, T,
      relativeError: worst, perOutput, tolerance, agree: worst < tolerance,
      kernel, reference, speedup: reference.medianMs / kernel.medianMs,
    };
  } finally {
    tf.dispose([...inputs, ...constants, dy]);
  }
}

function formatMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

const COLORS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9'];

/** The log-log chart of the rows: one line per mixer, pass and implementation, by T. */
function chartOf(results: ResultRow[]): string {
  const mixers = [...new Set(results.map((r) => r.mixer))];
  const series = new Map<string, ChartSeries & { points: Array<[number, number]> }>();
  for (const r of results) {
    for (const impl of ['kernel', 'reference'] as const) {
      const label = `${r.mixer} ${r.pass === 'forward' ? 'fwd' : 'fwd+bwd'} · ${impl}`;
      if (!series.has(label)) {
        series.set(label, {
          label, color: COLORS[mixers.indexOf(r.mixer) % COLORS.length]!, points: [], dashed: impl === 'reference', markers: true,
        });
      }
      series.get(label)!.points.push([r.T, r[impl].medianMs]);
    }
  }
  for (const s of series.values()) s.points.sort((a, b) => a[0] - b[0]);
  return lineChart([...series.values()], {
    title: 'median time per run against T (log-log)',
    subtitle: 'kernel solid, reference dashed',
    xLabel: 'sequence length T',
    yLabel: 'ms',
    logX: true,
    logY: true,
    xTicks: [...new Set(results.map((r) => r.T))].sort((a, b) => a - b),
    width: 940,
    height: 400,
  });
}

function render(): void {
  const body = byId<HTMLTableSectionElement>('rows');
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    const cells = [
      r.mixer, r.pass, String(r.T), r.relativeError.toExponential(1) + (r.agree ? ' ✓' : ' ✗'),
      formatMs(r.kernel.medianMs), formatMs(r.reference.medianMs), `${r.speedup.toFixed(1)}×`,
    ];
    for (const [i, content] of cells.entries()) {
      const td = document.createElement('td');
      td.textContent = content;
      if (i === 3) {
        td.className = r.agree ? 'ok' : 'bad';
        td.title = `tolerance ${r.tolerance}; per output: ${Object.entries(r.perOutput).map(([n, e]) => `${n} ${e.toExponential(1)}`).join(', ')}`;
      }
      if (i === 0) td.title = `${r.op}: ${r.inputs}`;
      tr.appendChild(td);
    }
    return tr;
  }));
  byId('chart').innerHTML = chartOf(rows);
  byId('results').textContent = JSON.stringify(rows, null, 2);
}

/** The tuning's table: each value of each flag, its time (or why it was refused), and whether it was kept. */
function renderTuning(tuning: KernelTuning): void {
  byId('tuning').replaceChildren(...tuning.timings.map((t) => {
    const tr = document.createElement('tr');
    const ms = t.ms === null ? `refused: ${t.refused}` : formatMs(t.ms) + (t.sameAs !== undefined ? ` (as ${JSON.stringify(t.sameAs)})` : '');
    for (const content of [t.flag, JSON.stringify(t.value), ms, tuning.flags[t.flag] === t.value ? '✓' : '']) {
      const td = document.createElement('td');
      td.textContent = content;
      tr.appendChild(td);
    }
    return tr;
  }));
  byId('tuned').textContent = JSON.stringify(tuning, null, 2);
}

function describeSelection(): void {
  const c = descriptor(byId<HTMLSelectElement>('mixer').value).benchCase(Number(byId<HTMLSelectElement>('length').value), 42);
  byId('inputs').textContent = `ops.${c.op}: ${c.about}, float32`;
  tf.dispose([...c.inputs, ...c.constants]);
}

async function main(): Promise<void> {
  setState('loading');
  render();
  const gpu = await findWebGPU();
  if (!gpu.ok) {
    showMessage(`No WebGPU: ${gpu.reason} ${WEBGPU_HELP}`, true);
    setState('no-webgpu', gpu.reason);
    return;
  }
  if (!(await tf.setBackend('webgpu'))) {
    showMessage(`tfjs could not start its WebGPU backend on ${gpu.adapter}. ${WEBGPU_HELP}`, true);
    setState('no-webgpu', 'tf.setBackend(\'webgpu\') failed');
    return;
  }
  // tfjs would otherwise run small tensors' ops on the CPU, and time those instead
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  byId('adapter').textContent = `tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}, adapter ${gpu.adapter}`;

  const mixer = byId<HTMLSelectElement>('mixer');
  mixer.replaceChildren(...[...CASES.values()].map((m) => new Option(classOf(m), m.name, false, m.name === 'flashStyleTiledAttention')));
  const length = byId<HTMLSelectElement>('length');
  const pass = byId<HTMLSelectElement>('pass');
  const runButton = byId<HTMLButtonElement>('run');
  mixer.addEventListener('change', describeSelection);
  length.addEventListener('change', describeSelection);
  describeSelection();
  byId<HTMLButtonElement>('clear').addEventListener('click', () => {
    rows.length = 0;
    render();
  });
  runButton.addEventListener('click', async () => {
    runButton.disabled = true;
    setState('running');
    const label = `${mixer.value}, T = ${length.value}, ${pass.value}`;
    try {
      const row = await measure(mixer.value, Number(length.value), pass.value as Pass, (line) => showMessage(`${label}: ${line}`));
      rows.push(row);
      render();
      showMessage(row.agree ? '' : `${label}: the kernel and the reference disagree (${row.relativeError.toExponential(2)}).`, !row.agree);
      setState('ready');
    } catch (e) {
      showMessage(`${label} failed: ${String(e)}`, true);
      setState('error', String(e));
    } finally {
      runButton.disabled = false;
    }
  });
  const tuneButton = byId<HTMLButtonElement>('tune');
  tuneButton.addEventListener('click', async () => {
    runButton.disabled = tuneButton.disabled = true;
    setState('running');
    const T = Number(length.value);
    showMessage(`tuning the kernels at T = ${T}…`);
    try {
      renderTuning(await tuneKernels({
        attention: { length: T, heads: 4, headSize: 64, cacheLength: 8 * T },
        averageContext: { length: T, width: 256 },
        selectiveScan: { length: T, channels: 512, stateSize: 16 },
        rounds: 3,
      }));
      showMessage('');
      setState('ready');
    } catch (e) {
      showMessage(`tuning failed: ${String(e)}`, true);
      setState('error', String(e));
    } finally {
      runButton.disabled = tuneButton.disabled = false;
    }
  });
  runButton.disabled = tuneButton.disabled = false;
  setState('ready');
}

main().catch((e: unknown) => {
  showMessage(`The page failed to start: ${String(e)}`, true);
  setState('error', String(e));
});
