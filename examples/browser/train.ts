/**
 * The training page (train.html): every op and layer of the library takes a few Adam steps on
 * the webgl backend (or cpu, to compare), the cases and checks of `training.ts` that
 * `test/backend-training.test.ts` runs on cpu and wasm; then every decoding layer runs the decode
 * check of `decoding.ts` (`test/backend-decoding.test.ts` on cpu and wasm). Each training case
 * adds a row; the whole run is in `<pre id="results">` as a {@link TrainingPageResult}, which
 * `scripts/browser-test.mjs` reads in headless Chromium.
 *
 * `train.html?halfFloat` runs webgl on half-float textures (`WEBGL_FORCE_F16_TEXTURES`, what tfjs
 * does by itself on a device that cannot render float32) and checks each case at its initial
 * weights instead: a finite loss close to the cpu's, finite gradients, no leak. No Adam steps
 * there: on SwiftShader's half-float textures tfjs 4.22's webgl reports float32 precision, so its
 * Adam takes an ε of 10⁻⁷, too small for half floats, and diverges on any model (a plain
 * `tf.matMul` regression's loss went from 2.5 to 1368 in one step; with ε = 10⁻⁴ it trains).
 *
 * In an application, import the library as `'tfjs-mixers'`; build.mjs maps this path to it.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { DECODING_CASES, decodeCase, concatenatingSteps, type ConcatenatingRun, type DecodingResult } from './decoding.js';
import { TRAINING_CASES, initialGradients, initialLoss, trainCase, uncovered, type InitialResult, type TrainingResult } from './training.js';
import { byId, setState, showMessage, webglRenderer, yieldToBrowser } from './common.js';

/** What `<pre id="results">` holds after a run. */
export interface TrainingPageResult {
  /** `tf.getBackend()` during the run. */
  backend: string;
  /** The WebGL renderer (e.g. SwiftShader through ANGLE), or '' off webgl. */
  renderer: string;
  /** tfjs's `WEBGL_VERSION` (0 off webgl). */
  webglVersion: number;
  /** Whether tfjs renders float32 textures (full precision) on this device. */
  float32: boolean;
  /** Whether the page ran on half-float textures (`?halfFloat`): then `initial` holds the cases, and `cases` none. */
  halfFloat: boolean;
  /** One per case run, in the order of `TRAINING_CASES` (all of them unless `?case=` picks some). */
  cases: TrainingResult[];
  /** With `halfFloat`, one per case run: its loss and gradients at the initial weights. */
  initial: InitialResult[];
  /** Each case's first loss on the cpu backend, beside `cases` or `initial` (empty where the run is on cpu). */
  cpuLosses: number[];
  /** How many cases `TRAINING_CASES` holds. */
  total: number;
  /** Exported ops and layer factories that no case trains. */
  uncovered: string[];
  failed: number;
  /** One per decoding case, in the order of `DECODING_CASES` (none when `?case=` picks training cases). */
  decoding: DecodingResult[];
  /** How many cases `DECODING_CASES` holds. */
  decodingTotal: number;
  /** Per preallocated-cache case, its layer stepping a concatenating cache instead (`null` off webgl; none on half floats). */
  concatenating: { name: string; run: ConcatenatingRun | null }[];
  totalMs: number;
}

/** Switches to `backend`, or says why it cannot. */
async function useBackend(backend: string): Promise<void> {
  let ok = false;
  try {
    ok = await tf.setBackend(backend);
  } catch (e) {
    throw new Error(`tf.setBackend('${backend}') threw: ${String(e)}`);
  }
  if (!ok) throw new Error(`tf.setBackend('${backend}') returned false: the backend did not start (see the console).`);
  if (tf.getBackend() !== backend) throw new Error(`tf.setBackend('${backend}') left the backend at ${tf.getBackend()}.`);
}

const cell = (text: string, className?: string) => {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
};

function addRow(r: TrainingResult): void {
  const ok = r.problems.length === 0;
  const [first, last] = [r.losses[0], r.losses[r.losses.length - 1]];
  const predicted = r.predicted.reduce((a, b) => a + b, 0);
  const ratio = first !== undefined && last !== undefined && predicted > 0 ? (first - last) / predicted : NaN;
  const row = document.createElement('tr');
  const verdict = cell(ok ? 'trains' : r.problems.join('; '), ok ? 'ok' : 'bad');
  row.append(cell(r.name), cell(r.covers), cell(first?.toFixed(4) ?? '–'), cell(last?.toFixed(4) ?? '–'),
    cell(Number.isFinite(ratio) ? ratio.toFixed(3) : '–'), cell(r.ms.toFixed(0)), verdict);
  byId('rows').append(row);
}

function addInitialRow(r: InitialResult): void {
  const ok = r.problems.length === 0;
  const row = document.createElement('tr');
  row.append(cell(r.name), cell(''), cell(r.loss.toFixed(4)), cell('–'), cell('–'), cell(r.ms.toFixed(0)),
    cell(ok ? 'finite' : r.problems.join('; '), ok ? 'ok' : 'bad'));
  byId('rows').append(row);
}

async function main(): Promise<void> {
  setState('loading');
  // tfjs-webgl runs ops on small tensors on its CPU kernels by default: every op here is small
  tf.env().set('WEBGL_CPU_FORWARD', false);
  const halfFloat = new URLSearchParams(location.search).has('halfFloat');
  // tfjs reads it as the webgl backend starts: set before
  if (halfFloat) tf.env().set('WEBGL_FORCE_F16_TEXTURES', true);
  const backendSelect = byId<HTMLSelectElement>('backend');
  const info = byId('backend-info');
  const noWebgl = await useBackend('webgl').then(() => null, (e: unknown) => String(e));
  if (noWebgl) {
    info.textContent = 'No WebGL: the page can train on cpu only.';
    showMessage(`No WebGL: ${noWebgl} Headless Chromium without a GPU gets WebGL from SwiftShader ` +
      '(--use-angle=swiftshader --enable-unsafe-swiftshader).', true);
    backendSelect.querySelector<HTMLOptionElement>('option[value="webgl"]')!.disabled = true;
    backendSelect.value = 'cpu';
  } else {
    info.textContent = `tfjs ${tf.version.tfjs}, webgl backend: WebGL ${tf.env().getNumber('WEBGL_VERSION')}, ` +
      `${webglRenderer()}, float32 textures ${tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED') ? 'yes' : 'no'}`;
  }

  const button = byId<HTMLButtonElement>('train');
  const summary = byId('summary');
  button.addEventListener('click', async () => {
    button.disabled = true;
    setState('running');
    showMessage('');
    byId('rows').replaceChildren();
    try {
      await useBackend(backendSelect.value);
      const onWebgl = tf.getBackend() === 'webgl';
      const result: TrainingPageResult = {
        backend: tf.getBackend(),
        renderer: webglRenderer(),
        webglVersion: onWebgl ? tf.env().getNumber('WEBGL_VERSION') : 0,
        float32: onWebgl && tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED'),
        halfFloat, cases: [], initial: [], cpuLosses: [], total: TRAINING_CASES.length, uncovered: uncovered(), failed: 0,
        decoding: [], decodingTotal: DECODING_CASES.length, concatenating: [], totalMs: 0,
      };
      const started = performance.now();
      // `train.html?case=flashAttention` runs only the cases whose name holds that text
      const only = new URLSearchParams(location.search).get('case') ?? '';
      const cases = TRAINING_CASES.filter((c) => c.name.includes(only));
      for (const [i, c] of cases.entries()) {
        summary.textContent = `${i} / ${cases.length} cases on ${result.backend}: ${c.name}…`;
        if (halfFloat) {
          const r = await initialGradients(c);
          result.initial.push(r);
          if (r.problems.length > 0) result.failed++;
          addInitialRow(r);
        } else {
          const r = await trainCase(c);
          result.cases.push(r);
          if (r.problems.length > 0) result.failed++;
          addRow(r);
        }
        await yieldToBrowser();
      }
      if (result.backend !== 'cpu') {
        // the same first losses on tfjs's cpu backend: the page's values, not only its training, checked
        summary.textContent = `first losses on cpu…`;
        await useBackend('cpu');
        for (const c of cases) result.cpuLosses.push(await initialLoss(c));
        await useBackend(result.backend);
      }
      if (!only) {
        for (const c of DECODING_CASES) {
          summary.textContent = `decoding on ${result.backend}: ${c.name}…`;
          result.decoding.push(await decodeCase(c));
          if (c.cache && !halfFloat) result.concatenating.push({ name: c.name, run: await concatenatingSteps(c) });
          await yieldToBrowser();
        }
        const wrong = result.decoding.filter((r) => r.problems.length > 0);
        byId('decoding').textContent = `${result.decoding.length - wrong.length} of ${result.decoding.length} decoding layers decode a ` +
          `ragged batch as each row alone` + wrong.map((r) => `; ${r.name}: ${r.problems.join(', ')}`).join('');
      }
      result.totalMs = performance.now() - started;
      summary.textContent = `${cases.length - result.failed} of ${cases.length} cases ${halfFloat ? 'give finite losses and gradients' : 'train'} on ` +
        `${result.backend}${halfFloat ? ' with half-float textures' : ''} ` +
        `(${(result.totalMs / 1000).toFixed(1)} s)` + (result.uncovered.length > 0 ? `; no case for ${result.uncovered.join(', ')}` : '');
      byId('results').textContent = JSON.stringify(result, null, 2);
      setState('done');
    } catch (e) {
      showMessage(`Training failed: ${String(e)}`, true);
      setState('error', String(e));
    } finally {
      button.disabled = false;
    }
  });
  button.disabled = false;
  if (noWebgl) {
    // the test script reads this state: a failure under CI, a loud skip elsewhere
    setState('no-webgl', noWebgl);
  } else {
    setState('ready');
  }
}

main().catch((e: unknown) => {
  showMessage(`The page failed to start: ${String(e)}`, true);
  setState('error', String(e));
});
