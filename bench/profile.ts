/**
 * `npm run bench:profile`: where the time of a few bench cases goes, for tuning on a real GPU.
 * For each case: the fenced wall time run alone (not interleaved with a reference), the GPU
 * time from timestamp queries (`tf.time`'s kernelMs: the sum over dispatches, each in a pass of
 * its own), the GPU time of all its dispatches recorded into one pass (as they run outside
 * `tf.time`), and the GPU time per kernel name. Needs an adapter with `timestamp-query`.
 * `npm run bench:profile -- <text> …` profiles only the cases whose name contains one of the texts;
 * `--each` also lists every dispatch of the last timed run, in order, with its GPU time;
 * `--scan=levels`, `--scan=walk` or `--scan=lookback` runs AverageContext's kernels with that scan, whatever the adapter.
 * A case that moves a known number of bytes also reports its share of the copy kernel's GB/s in
 * the same run, the fastest copy's and the nearest-sized copy's; an attention case reports TFLOP/s (the bench's flop count), and its share of the
 * chip's float32 peak with `--peak-tflops P`, as do the compute ceilings (`ceiling …`, bench/ceiling.ts:
 * multiply-adds fed from registers, or from workgroup memory at 1, 2 or 4 products per vec4 read),
 * which say what the attention passes' loops can reach on the adapter. `--subgroups`, `--no-robustness`, `--rows n`, `--splits n`, `--dkv-keys`, `--split-pass`, `--forward`, `--dq`, `--dkv` and `--average-run n` as in `npm run bench`.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import { ATTENTION, ATTENTION_PASSES, attentionOps, runDecode, type Pass } from './cases.js';
import { SCAN_BYTES, SCAN_SHAPE, inputsAt, runScan } from './selective-ssm.js';
import { copy } from './copy.js';
import { CEILINGS, ceilingFlops, ceilingInputs, runCeiling, type Ceiling } from './ceiling.js';
import { fence, median } from './timing.js';
import { benchFlags, startWebGPU } from './webgpu.js';
import { SCAN_FLAG } from '../src/mixers/average-context/kernel.js';
import { backendInternals, onSwiftShader } from '../src/webgpu/internals.js';
import { mixerNamed, mixers } from '../src/index.js';

const SEED = 7;
const WALL_RUNS = 20;
const GPU_RUNS = 5;
const BURST = 50;
const BURST_MS = 300;
const PASS_RUNS = 15;

// Dawn rounds timestamps (to tens of µs) unless told not to
const { gpu, backend } = await startWebGPU('profile', {
  dawnFlags: ['disable-dawn-features=timestamp_quantization'], ...benchFlags('profile', process.argv),
});
console.log(`adapter: ${gpu.description}`);
// what the passes by blocks may stage (src/attention/kernel-source.ts, byBlocks)
console.log(`workgroup memory: ${backend.device.limits.maxComputeWorkgroupStorageSize} bytes a workgroup`);
const peakArg = process.argv.indexOf('--peak-tflops');
const peakTflops = peakArg >= 0 ? Number(process.argv[peakArg + 1]) : undefined;
if (peakTflops !== undefined && !(peakTflops > 0)) {
  throw new Error(`bench:profile: --peak-tflops expects the chip's float32 peak in TFLOP/s (> 0), got ${process.argv[peakArg + 1]}.`);
}

const ATTENTION_OPS = new Map(attentionOps().map((o) => [o.name, o]));

/**
 * A profiled case; `bytes`, where given, is the least it must move (the bench's formulas), for
 * GB/s; `flops`, where given, what it counts as computed (the attention section's formula);
 * `roofline`: the copy kernel, whose rate the others' are compared with.
 */
interface Case { name: string; run: () => tf.TensorContainer; inputs: tf.Tensor[]; bytes?: number; flops?: number; roofline?: true }

const uniform = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, 'float32', seed);

/**
 * A mixer's bench case from the library's registry through its kernels: the op, or the op and
 * the gradients of every input for a random dOut. `bytes` is what the pass must move at least:
 * each input and the output once forward, and again with dOut and the gradients backward
 * (4·(3·Σ inputs + 2·out)); known once the case has run.
 */
function registryCase(name: string, pass: Pass, T: number): Case {
  const c = mixerNamed(name, 'bench:profile').benchCase(T, SEED);
  const inputs = [...c.inputs, ...c.constants];
  // an attention op's flops as the bench counts them, from q [B, T, H, K]
  const attention = ATTENTION_OPS.get(c.op);
  const [B, , H, K] = c.inputs[0]!.shape;
  const flops = attention && ATTENTION_PASSES[pass].forwards * 4 * B! * H! * K! * attention.pairs(T);
  const elements = c.inputs.reduce((n, x) => n + x.size, 0);
  const op = (...xs: tf.Tensor[]) => c.run('webgpu', xs);
  // dOut has the output's shape, known after a first run (made lazily: a case filtered out never runs)
  let outSize: number | undefined;
  let dOut: tf.Tensor | undefined;
  const run = pass === 'forward'
    ? () => {
      const y = op(...c.inputs);
      outSize = y.size;
      return y;
    }
    : () => tf.tidy(() => {
      if (!dOut) {
        dOut = tf.keep(uniform(op(...c.inputs).shape, SEED + 9));
        outSize = dOut.size;
        inputs.push(dOut);
      }
      return tf.grads(op)(c.inputs, dOut);
    });
  return {
    name: `${c.op} ${pass} T=${T}`, run, inputs, flops,
    get bytes() {
      return outSize === undefined ? undefined : 4 * (pass === 'forward' ? elements + outSize : 3 * elements + 2 * outSize);
    },
  };
}

function decodeCase(Tk: number): Case {
  const { B, H, Hkv, K } = ATTENTION;
  const q = uniform([B, 1, H, K], SEED) as tf.Tensor4D;
  const k = uniform([B, Tk, Hkv, K], SEED + 1) as tf.Tensor4D;
  const v = uniform([B, Tk, Hkv, K], SEED + 2) as tf.Tensor4D;
  // k and v read once (the bench's decode formula)
  return { name: `flashAttention decode split Tk=${Tk}`, run: () => runDecode('split', q, k, v), inputs: [q, k, v], bytes: 8 * B * Tk * Hkv * K };
}

/** The bench's SelectiveSSM case (bench/selective-ssm.ts): the same inputs, the same gradients. */
function scanCase(pass: Pass, T: number): Case {
  const x = inputsAt(T, SEED);
  return { name: `selectiveScan E=${SCAN_SHAPE.E} ${pass} T=${T}`, run: () => runScan(x, pass, 'webgpu'), inputs: Object.values(x),
    bytes: SCAN_BYTES[pass].bytes(T) };
}

function copyCase(elements: number): Case {
  const x = uniform([elements], SEED) as tf.Tensor1D;
  return { name: `copy ${elements} floats`, run: () => copy(backend, x, 'runKernel'), inputs: [x], bytes: 8 * elements, roofline: true };
}

/**
 * A compute ceiling (bench/ceiling.ts): 2048 workgroups of 256 invocations, each sweeping its 32
 * staged vec4s 32 times (a few hundred µs on a GPU of tens of TFLOP/s); on SwiftShader 8 workgroups.
 */
function ceilingCase(c: Ceiling): Case {
  const workgroups = onSwiftShader(backend) ? 8 : 2048;
  const passes = 32;
  const x = uniform([4 * ceilingInputs(c)], SEED) as tf.Tensor1D;
  return { name: `ceiling ${c.name}`, run: () => runCeiling(backend, c, x, workgroups, passes), inputs: [x], flops: ceilingFlops(c, workgroups, passes) };
}

const PASSES: Pass[] = ['forward', 'forward+backward'];

const CASES: Array<() => Case> = [
  () => copyCase(4 * 1024 * 1024),
  () => copyCase(64 * 1024 * 1024),
  // what multiply-adds reach from registers and from workgroup memory, for the attention passes
  ...CEILINGS.map((c) => () => ceilingCase(c)),
  // every registered mixer at one length, both passes
  ...mixers.flatMap((m) => PASSES.map((pass) => () => registryCase(m.name, pass, 4096))),
  // the lengths where earlier tuning looked
  ...PASSES.map((pass) => () => registryCase('causalGeneration', pass, 16384)),
  ...[16384, 262144].flatMap((T) => PASSES.map((pass) => () => registryCase('averageContext', pass, T))),
  ...[1024, 16384].flatMap((T) => PASSES.map((pass) => () => registryCase('flashStyleTiledAttention', pass, T))),
  () => registryCase('blockSparse', 'forward', 16384),
  () => decodeCase(4096),
  () => decodeCase(65536),
  // the SelectiveSSM section's wider case (E = 512)
  ...PASSES.map((pass) => () => scanCase(pass, 4096)),
];

async function wallMs(run: () => tf.TensorContainer): Promise<number> {
  const start = performance.now();
  const out = run();
  await fence(backend);
  const ms = performance.now() - start;
  tf.dispose(out);
  return ms;
}

/**
 * GPU time of a whole case recorded into one compute pass, as it runs outside `tf.time`: one
 * timestamp pair around all its dispatches, with the barriers between them and without a pass
 * per dispatch. NaN when the case ended the pass itself (a copy or a readback in it).
 */
async function onePassMs(run: () => tf.TensorContainer): Promise<number> {
  const b = backendInternals(backend, 'bench profile');
  await fence(backend);
  b.ensureCommandEncoderReady();
  const querySet = b.device.createQuerySet({ type: 'timestamp', count: 2 });
  const pass = b.commandEncoder!.beginComputePass({
    timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
  });
  b.computePassEncoder = pass;
  const batch = tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE');
  tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', Number.MAX_SAFE_INTEGER);
  const out = run();
  tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', batch);
  const whole = b.computePassEncoder === pass;
  b.endComputePassEncoder();
  const resolved = b.device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = b.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  b.commandEncoder!.resolveQuerySet(querySet, 0, 2, resolved, 0);
  b.commandEncoder!.copyBufferToBuffer(resolved, 0, read, 0, 16);
  b.submitQueue();
  await read.mapAsync(GPUMapMode.READ);
  const [begin, end] = new BigUint64Array(read.getMappedRange());
  const ms = Number(end! - begin!) / 1e6;
  read.unmap();
  for (const r of [read, resolved, querySet]) r.destroy();
  tf.dispose(out);
  return whole ? ms : NaN;
}

/** The copies of this run so far: the bytes each moved, and its rate per way of timing (tf.time, one pass). */
type CopyRate = { bytes: number; gpu: number; pass: number };
const copies: CopyRate[] = [];

/** Three significant figures, or whole numbers from 100 on. */
const figure = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));

/**
 * `, TFLOP/s (% of peak)` of a case that counts flops, else `, GB/s (% of the copy)` of one that
 * counts bytes, timed at `ms` the `way` the copies' rates were, as far as they are known. A case
 * is set against the fastest copy of the run and against the copy nearest its own size (by
 * ratio of bytes): a launch of tens of megabytes spends a share of its time starting and
 * draining that a copy of gigabytes does not, so the fastest copy is a ceiling no small case
 * reaches (on the H200, 3.0 TB/s copying 33.6 MB and 4.1 copying 537 MB).
 */
function rates(c: Case, ms: number, way: 'gpu' | 'pass'): string {
  if (Number.isNaN(ms)) return '';
  if (c.flops) {
    const tflops = c.flops / (ms * 1e9);
    return `, ${figure(tflops)} TFLOP/s${peakTflops ? ` (${figure((100 * tflops) / peakTflops)}% of ${peakTflops})` : ''}`;
  }
  if (!c.bytes) return '';
  const rate = c.bytes / (ms * 1e6);
  if (c.roofline || copies.length === 0) return `, ${figure(rate)} GB/s`;
  const fastest = Math.max(...copies.map((k) => k[way]));
  const distance = (k: CopyRate) => Math.abs(Math.log(k.bytes / c.bytes!));
  // between two as near, the larger, the stricter
  const nearest = copies.reduce((a, k) => (distance(k) < distance(a) || (distance(k) === distance(a) && k.bytes > a.bytes) ? k : a));
  return `, ${figure(rate)} GB/s (${figure((100 * rate) / fastest)}% of the copy, ` +
    `${figure((100 * rate) / nearest[way])}% of the copy of ${figure(nearest.bytes / 1e6)} MB)`;
}

// positional arguments are case filters; a flag's value is not one
const FLAG_VALUES = new Set(['--peak-tflops', '--rows', '--splits', '--dkv-keys', '--split-pass', '--forward', '--dq', '--dkv', '--average-run']);
const filters = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !FLAG_VALUES.has(all[i - 1] ?? ''));
const each = process.argv.includes('--each');
const scan = process.argv.find((a) => a.startsWith('--scan='));
if (scan) tf.env().set(SCAN_FLAG, scan.slice('--scan='.length));
for (const make of CASES) {
  const c = make();
  try {
    if (filters.length > 0 && !filters.some((f) => c.name.includes(f))) continue;
    for (let i = 0; i < 3; i++) await wallMs(c.run);
    const walls: number[] = [];
    for (let i = 0; i < WALL_RUNS; i++) walls.push(await wallMs(c.run));
    const gpus: number[] = [];
    const perKernel = new Map<string, number>();
    let dispatches = 0;
    for (let i = 0; i < GPU_RUNS; i++) {
      let out: tf.TensorContainer = [];
      const t = await tf.time(() => { out = c.run(); });
      tf.dispose(out);
      gpus.push(t.kernelMs as number);
      if (i === GPU_RUNS - 1) {
        const info = (t as unknown as { getExtraProfileInfo?: () => string }).getExtraProfileInfo?.() ?? '';
        const list: string[] = [];
        for (const entry of info.split(', ').filter((e) => e)) {
          const at = entry.lastIndexOf(': ');
          const name = entry.slice(0, at);
          const ms = Number(entry.slice(at + 2));
          perKernel.set(name, (perKernel.get(name) ?? 0) + ms);
          list.push(`${name} ${ms.toFixed(4)}`);
          dispatches++;
        }
        if (each) console.log(`  each: ${list.join(', ')}`);
      }
    }
    // a burst without fences first, so that a GPU that idles at low clocks has ramped up
    const until = performance.now() + BURST_MS;
    for (let i = 0; i < BURST && performance.now() < until; i++) tf.dispose(c.run());
    const passes: number[] = [];
    for (let i = 0; i < PASS_RUNS; i++) passes.push(await onePassMs(c.run));
    const passMs = median(passes);
    const bestMs = Math.min(...passes);
    const top = [...perKernel].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([n, ms]) => `${n} ${ms.toFixed(3)}`).join(', ');
    const gpuMs = median(gpus);
    if (c.roofline && c.bytes) copies.push({ bytes: c.bytes, gpu: c.bytes / (gpuMs * 1e6), pass: c.bytes / (passMs * 1e6) });
    console.log(`${c.name}: wall ${median(walls).toFixed(3)} ms (min ${Math.min(...walls).toFixed(3)}), ` +
      `GPU ${gpuMs.toFixed(3)} ms in ${dispatches} dispatches${rates(c, gpuMs, 'gpu')} on the GPU; ` +
      `in one pass ${passMs.toFixed(3)} ms${rates(c, passMs, 'pass')} (min ${bestMs.toFixed(3)}) [${top}]`);
  } finally {
    tf.dispose(c.inputs);
  }
}
tf.removeBackend('webgpu');
gpu.uninstall();
