import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { backendInternals } from '../src/webgpu/internals.js';
import { HOW_TO_GET_AN_ADAPTER, installWebGPU, type InstallWebGPUOptions, type InstalledWebGPU } from '../src/node.js';
import { registerSubgroupBackend } from '../src/index.js';
import {
  ATTENTION_DKV_FLAG, ATTENTION_DKV_KEYS_FLAG, ATTENTION_DQ_FLAG, ATTENTION_FORWARD_FLAG, ATTENTION_ROWS_FLAG,
} from '../src/attention/kernel-source.js';
import { ATTENTION_SPLITS_FLAG } from '../src/attention/tile-splits.js';
import { ATTENTION_SPLIT_PASS_FLAG, type SplitFolder } from '../src/attention/split-pass.js';
import { RUN_FLAG } from '../src/mixers/average-context/kernel.js';

/**
 * What the scripts' `--subgroups`, `--no-robustness`, `--rows n`, `--splits n`, `--dkv-keys`, `--split-pass`,
 * `--forward`, `--dq`, `--dkv` and `--average-run n` ask of {@link startWebGPU}.
 */
export interface BenchFlags {
  subgroups: boolean;
  noRobustness: boolean;
  rows?: number;
  splits?: number;
  dkvKeys?: 'registers' | 'memory';
  splitPass?: SplitFolder;
  forward?: 'rows' | 'blocks';
  dq?: 'rows' | 'blocks' | 'blocks-dp-rows';
  dkv?: 'rows' | 'blocks' | 'blocks-dp-rows';
  averageRun?: number;
}

/**
 * The scripts' `--subgroups`, `--no-robustness`, `--rows n`, `--splits n`, `--dkv-keys registers|memory`,
 * `--split-pass invocation|workgroup|subgroup`, `--forward rows|blocks`, `--dq rows|blocks|blocks-dp-rows`, `--dkv rows|blocks|blocks-dp-rows` and `--average-run n`, for
 * {@link startWebGPU}; exits on a bad value.
 */
export function benchFlags(who: string, argv: readonly string[]): BenchFlags {
  const flags: BenchFlags = { subgroups: argv.includes('--subgroups'), noRobustness: argv.includes('--no-robustness') };
  const value = (name: string, ok: (n: number) => boolean, expected: string) => {
    const at = argv.indexOf(name);
    if (at < 0) return undefined;
    const n = Number(argv[at + 1]);
    if (!ok(n)) {
      console.error(`${who}: ${name} expects ${expected}, got ${argv[at + 1]}.`);
      process.exit(1);
    }
    return n;
  };
  const rows = value('--rows', (n) => [1, 2, 4].includes(n), '1, 2 or 4 (rows per invocation of the tiled attention passes)');
  if (rows !== undefined) flags.rows = rows;
  const splits = value('--splits', (n) => Number.isInteger(n) && n >= 1, 'a whole number ≥ 1 (chunks of the tiled attention passes\' other side)');
  if (splits !== undefined) flags.splits = splits;
  const averageRun = value('--average-run', (n) => [1, 2, 4, 8, 16].includes(n), '1, 2, 4, 8 or 16 (chunks per invocation of AverageContext\'s levels scan)');
  if (averageRun !== undefined) flags.averageRun = averageRun;
  const word = <W extends string>(name: string, allowed: readonly W[], expected: string): W | undefined => {
    const at = argv.indexOf(name);
    if (at < 0) return undefined;
    const w = argv[at + 1] as W;
    if (!allowed.includes(w)) {
      console.error(`${who}: ${name} expects ${expected}, got ${w}.`);
      process.exit(1);
    }
    return w;
  };
  const dkvKeys = word('--dkv-keys', ['registers', 'memory'], 'registers or memory (where dK/dV keeps its key rows)');
  if (dkvKeys !== undefined) flags.dkvKeys = dkvKeys;
  const splitPass = word('--split-pass', ['invocation', 'workgroup', 'subgroup'], 'invocation, workgroup or subgroup (who folds a chunk of the split-K decode)');
  if (splitPass !== undefined) flags.splitPass = splitPass;
  const forward = word('--forward', ['rows', 'blocks'], 'rows or blocks (how the tiled attention forward cuts a tile\'s work)');
  if (forward !== undefined) flags.forward = forward;
  const dq = word('--dq', ['rows', 'blocks', 'blocks-dp-rows'], 'rows, blocks or blocks-dp-rows (how the attention backward\'s dQ cuts a tile\'s work)');
  if (dq !== undefined) flags.dq = dq;
  const dkv = word('--dkv', ['rows', 'blocks', 'blocks-dp-rows'], 'rows, blocks or blocks-dp-rows (how the attention backward\'s dK/dV cuts a tile\'s work)');
  if (dkv !== undefined) flags.dkv = dkv;
  return flags;
}

/**
 * The bench scripts' start: Dawn's WebGPU installed, tfjs's webgpu backend set, and small
 * tensors kept on the GPU. Exits with {@link HOW_TO_GET_AN_ADAPTER} when there is no adapter.
 * `subgroups` (the scripts' `--subgroups`) makes the backend with registerSubgroupBackend, and
 * names the adapter "subgroups: …", so that its reports are files of their own; it exits when
 * the adapter offers none. `noRobustness` (`--no-robustness`, a diagnostic) has Dawn compile the kernels
 * without the bounds checks WebGPU requires (its `disable_robustness` toggle: no clamp of each array
 * index, no guard against endless loops), as no browser runs them, and names the adapter
 * "no robustness: …", so that a profile shows what the checks cost. `rows` (`--rows n`) sets the attention kernels' rows per invocation
 * (the `MIXERS_ATTENTION_ROWS` flag: 1, 2 or 4) and names the adapter "rows n: …" likewise;
 * `splits` (`--splits n`) the chunks of their other side (`MIXERS_ATTENTION_SPLITS`), "splits n: …";
 * `dkvKeys` (`--dkv-keys`) where dK/dV keeps its key rows (`MIXERS_ATTENTION_DKV_KEYS`);
 * `splitPass` (`--split-pass`) who folds a chunk of the split-K decode (`MIXERS_ATTENTION_SPLIT_PASS`);
 * `forward` (`--forward`) how the tiled forward cuts a tile's work (`MIXERS_ATTENTION_FORWARD`),
 * "forward by blocks: …"; `dq` (`--dq`) and `dkv` (`--dkv`) how dQ and dK/dV cut theirs
 * (`MIXERS_ATTENTION_DQ`, `MIXERS_ATTENTION_DKV`), "dq by blocks: …", "dkv by blocks: …";
 * `averageRun` (`--average-run n`) the chunks per invocation of AverageContext's levels scan
 * (`MIXERS_AVERAGE_CONTEXT_RUN`), "average run n: …".
 */
export async function startWebGPU(
  who: string, options: InstallWebGPUOptions & Partial<BenchFlags> = {},
): Promise<{ gpu: InstalledWebGPU; backend: WebGPUBackend }> {
  const dawnFlags = [...options.dawnFlags ?? [], ...options.noRobustness ? ['enable-dawn-features=disable_robustness'] : []];
  const installed = await installWebGPU({ ...options, dawnFlags });
  if (!installed) {
    console.error(HOW_TO_GET_AN_ADAPTER);
    process.exit(1);
  }
  let gpu = options.noRobustness ? { ...installed, description: `no robustness: ${installed.description}` } : installed;
  // the backend registers itself only if navigator.gpu exists when it is first imported
  await import('@tensorflow/tfjs-backend-webgpu');
  if (options.subgroups) {
    if (!(await registerSubgroupBackend())) {
      console.error(`${who}: --subgroups: the adapter (${installed.description}) offers no subgroups.`);
      process.exit(1);
    }
    gpu = { ...gpu, description: `subgroups: ${gpu.description}` };
  }
  if (options.rows !== undefined) {
    tf.env().set(ATTENTION_ROWS_FLAG, options.rows);
    gpu = { ...gpu, description: `rows ${options.rows}: ${gpu.description}` };
  }
  if (options.splits !== undefined) {
    tf.env().set(ATTENTION_SPLITS_FLAG, options.splits);
    gpu = { ...gpu, description: `splits ${options.splits}: ${gpu.description}` };
  }
  if (options.dkvKeys !== undefined) {
    tf.env().set(ATTENTION_DKV_KEYS_FLAG, options.dkvKeys);
    gpu = { ...gpu, description: `dkv keys in ${options.dkvKeys}: ${gpu.description}` };
  }
  if (options.splitPass !== undefined) {
    tf.env().set(ATTENTION_SPLIT_PASS_FLAG, options.splitPass);
    gpu = { ...gpu, description: `split-K by ${options.splitPass}: ${gpu.description}` };
  }
  if (options.forward !== undefined) {
    tf.env().set(ATTENTION_FORWARD_FLAG, options.forward);
    gpu = { ...gpu, description: `forward by ${options.forward}: ${gpu.description}` };
  }
  if (options.dq !== undefined) {
    tf.env().set(ATTENTION_DQ_FLAG, options.dq);
    gpu = { ...gpu, description: `dq by ${options.dq}: ${gpu.description}` };
  }
  if (options.dkv !== undefined) {
    tf.env().set(ATTENTION_DKV_FLAG, options.dkv);
    gpu = { ...gpu, description: `dkv by ${options.dkv}: ${gpu.description}` };
  }
  if (options.averageRun !== undefined) {
    tf.env().set(RUN_FLAG, options.averageRun);
    gpu = { ...gpu, description: `average run ${options.averageRun}: ${gpu.description}` };
  }
  if (!(await tf.setBackend('webgpu'))) throw new Error(`${who}: the webgpu backend failed to initialise.`);
  // otherwise small tensors silently run on tfjs's cpu kernels
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  // fail here, naming the member and version, if this tfjs-backend-webgpu lacks what the runtime drives
  backendInternals(tf.backend(), who);
  return { gpu, backend: tf.backend() as WebGPUBackend };
}
