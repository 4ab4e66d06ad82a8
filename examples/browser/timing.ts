/**
 * The timing page (index.html): one mixer's WGSL kernels (`implementation: 'webgpu'`) against
 * its tfjs-ops reference (`implementation: 'reference'`) on the same random input, on tfjs's
 * WebGPU backend. Each run validates the two against each other before timing them (fenced
 * wall time, median of several runs after a warm-up), adds a row to the table and the chart,
 * and to `<pre id="results">` as JSON for scripts.
 *
 * In an application, import the library as `'tfjs-mixers'`; build.mjs maps this path to it.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { ops, type Implementation } from '../../src/index.js';
import { lineChart, type ChartSeries } from '../shared/svg-chart.js';
import {
  WEBGPU_HELP, byId, fence, findWebGPU, median, setState, showMessage, yieldToBrowser,
} from './common.js';

type Pass = 'forward' | 'forward+backward';

/** One mixer as the page runs it: fixed options, inputs at a length T. */
interface MixerCase {
  /** The op's name in `ops`. */
  op: keyof typeof ops;
  /** The layer class it belongs to. */
  layer: string;
  /** Inputs and options, in words. */
  describe: (T: number) => string;
  /**
   * max |kernel − reference| / max |reference| below which the two agree. Float32 with sums
   * in another order gives ~1e-6; 1e-4 as the library's bench. SelectiveSSM's gradients of A
   * and D are sums over all T steps (and rounding grows with T): 1e-3, as its bench section.
   */
  tolerance: number;
  /** The differentiable inputs at length T, and the op on them. */
  make: (T: number, seed: number) => { names: string[]; inputs: tf.Tensor[]; constants: tf.Tensor[]; run: (impl: Implementation, xs: tf.Tensor[]) => tf.Tensor };
}

const D = 256;
const [H, K] = [4, 64];
const [E, N] = [128, 16];

function attention(
  op: 'flashAttention' | 'expressiveAttention' | 'blockSparseAttention', layer: string, options: string,
  call: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, implementation: Implementation) => tf.Tensor,
): MixerCase {
  return {
    op, layer, tolerance: 1e-4,
    describe: (T) => `q, k, v [1, ${T}, ${H}, ${K}]; ${options}`,
    make: (T, seed) => ({
      names: ['q', 'k', 'v'],
      inputs: [0, 1, 2].map((i) => tf.randomNormal([1, T, H, K], 0, 1, 'float32', seed + i)),
      constants: [],
      run: (impl, [q, k, v]) => call(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, impl),
    }),
  };
}

const LAYOUT = { blockSize: 32, localBlocks: 2, globalBlocks: 1, stride: 0 };

/** The six mixers, each at one fixed configuration. */
const CASES: Record<string, MixerCase> = {
  causalGeneration: {
    op: 'causalGeneration', layer: 'CausalGeneration', tolerance: 1e-4,
    describe: (T) => `x [1, ${T}, ${D}]; reduce 'min'`,
    make: (T, seed) => ({
      names: ['x'], inputs: [tf.randomNormal([1, T, D], 0, 1, 'float32', seed)], constants: [],
      run: (implementation, [x]) => ops.causalGeneration(x as tf.Tensor3D, { reduce: 'min', implementation }),
    }),
  },
  averageContext: {
    op: 'averageContext', layer: 'AverageContext', tolerance: 1e-4,
    describe: (T) => `x [1, ${T}, ${D}]; combine 'max', causal`,
    make: (T, seed) => ({
      names: ['x'], inputs: [tf.randomNormal([1, T, D], 0, 1, 'float32', seed)], constants: [],
      run: (implementation, [x]) => ops.averageContext(x as tf.Tensor3D, { combine: 'max', causal: true, implementation }),
    }),
  },
  expressiveAttention: attention('expressiveAttention', 'ExpressiveAttention', 'causal',
    (q, k, v, implementation) => ops.expressiveAttention(q, k, v, { causal: true, implementation })),
  blockSparse: attention('blockSparseAttention', 'BlockSparse',
    `blockSize ${LAYOUT.blockSize}, localBlocks ${LAYOUT.localBlocks}, globalBlocks ${LAYOUT.globalBlocks}`,
    (q, k, v, implementation) => ops.blockSparseAttention(q, k, v, { ...LAYOUT, implementation })),
  selectiveSSM: {
    op: 'selectiveScan', layer: 'SelectiveSSM', tolerance: 1e-3,
    describe: (T) => `u, delta [1, ${T}, ${E}], A [${E}, ${N}], B, C [1, ${T}, ${N}]; D = 1, softplus(delta)`,
    make: (T, seed) => {
      const r = (shape: number[], s: number) => tf.randomUniform(shape, -1, 1, 'float32', seed + s);
      // as Mamba initialises them: A = −(1…N) in every channel, D = 1
      const A = tf.tidy(() => tf.neg(tf.tile(tf.range(1, N + 1).reshape([1, N]), [E, 1])));
      const Dskip = tf.ones([E]) as tf.Tensor1D;
      return {
        names: ['u', 'delta', 'A', 'B', 'C'],
        inputs: [r([1, T, E], 0), r([1, T, E], 1), A, r([1, T, N], 2), r([1, T, N], 3)],
        constants: [Dskip],
        run: (implementation, [u, delta, a, b, c]) => ops.selectiveScan(
          u as tf.Tensor3D, delta as tf.Tensor3D, a as tf.Tensor2D, b as tf.Tensor3D, c as tf.Tensor3D,
          { D: Dskip, deltaSoftplus: true, implementation }),
      };
    },
  },
  flashStyleTiledAttention: attention('flashAttention', 'FlashStyleTiledAttention', 'causal',
    (q, k, v, implementation) => ops.flashAttention(q, k, v, { causal: true, implementation })),
};

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
  const c = CASES[mixer];
  if (!c) throw new Error(`unknown mixer ${mixer}`);
  const { names, inputs, constants, run } = c.make(T, 42);
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
      mixer: c.layer, op: `ops.${c.op}`, inputs: c.describe(T), pass, T,
      relativeError: worst, perOutput, tolerance: c.tolerance, agree: worst < c.tolerance,
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

function describeSelection(): void {
  const c = CASES[byId<HTMLSelectElement>('mixer').value]!;
  byId('inputs').textContent = `ops.${c.op}: ${c.describe(Number(byId<HTMLSelectElement>('length').value))}, float32`;
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
  runButton.disabled = false;
  setState('ready');
}

main().catch((e: unknown) => {
  showMessage(`The page failed to start: ${String(e)}`, true);
  setState('error', String(e));
});
