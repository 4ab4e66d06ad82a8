import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { grid1d } from '../webgpu/runtime.js';
import { onSwiftShader } from '../webgpu/internals.js';
import { SUBGROUP_WG, subgroupGrid, subgroupLanes } from '../webgpu/subgroups.js';
import { rowQuartersFit, rowsPerTile, type SkeletonPass } from './kernel-source.js';

/**
 * The tfjs flag that sets who folds each chunk of the split-K decode's keys: 'auto' (the
 * default, {@link splitPass}), 'invocation', 'workgroup' or, on a device with subgroups,
 * 'subgroup', on every adapter.
 */
export const ATTENTION_SPLIT_PASS_FLAG = 'MIXERS_ATTENTION_SPLIT_PASS';
tf.env().registerFlag(ATTENTION_SPLIT_PASS_FLAG, () => 'auto');

/** Who folds a chunk of keys in the split-K decode's first pass. */
export type SplitFolder = 'invocation' | 'workgroup' | 'subgroup';

/** Keys per chunk of the split-K decode with an invocation per chunk. */
const SPLIT_CHUNK = 128;
/** Invocations per workgroup of the first pass with an invocation per chunk. */
const SPLIT_WG = 64;
/** The most folders (invocations, or four lanes each) of a workgroup per chunk. */
const CHUNK_FOLDERS = 64;
/**
 * Workgroup memory a workgroup per chunk may take for the states its lanes hand down (WebGPU's
 * guaranteed 16 KiB, less room for the visibility helpers' segment-id span and the subgroups'
 * counter).
 */
const HANDED_BYTES = 16384 - 256;

/** How the split-K decode's first pass runs on this device at head dimension K. */
export interface SplitPass {
  /** The skeleton pass, and the kernel name's part after the family's label. */
  pass: Extract<SkeletonPass, 'split' | 'splitWorkgroup' | 'splitSubgroups'>;
  label: string;
  /** Invocations per workgroup. */
  WG: number;
  /**
   * Lanes per query row: 4 in the workgroup pass where the device has subgroups, the lanes of a
   * folder holding a quarter of its channels each (`kernels/common/row-quarters.wgsl`); else 1.
   */
  RL: 1 | 4;
  /** Keys per chunk: at least 128, a whole number of key tiles for each lane folding a chunk. */
  chunk: number;
  /** The workgroups of a launch of `jobs` chunks (over heads, query rows and chunks). */
  grid(jobs: number): [number, number, number];
}

/**
 * Who folds each chunk of keys in the split-K decode's first pass
 * (`kernels/common/attention-split*.wgsl`), and so how long its chunks are. With subgroups, a
 * subgroup per chunk, its lanes each folding tiles of it. Without, on a GPU, a workgroup per chunk
 * whose lanes merge their row states in workgroup memory: with an invocation per chunk of 128
 * keys, a 65536-key cache at H = 4 was read by 2048 invocations, and the H200 read it at 3.4 % of
 * its copy kernel's rate where a subgroup per chunk read it at 19 % (bench/results/profiles). On
 * SwiftShader, which runs a workgroup's invocations on a few CPU threads, an invocation per chunk.
 * {@link ATTENTION_SPLIT_PASS_FLAG} overrides the choice; asked for on a device with subgroups,
 * the workgroup pass gives each row four lanes of a subgroup where K allows
 * ({@link rowQuartersFit}), 64 folders of four lanes a workgroup at K = 64 where a subgroup per
 * chunk has 32 or 64 lanes.
 *
 * @example
 * ```ts
 * const backend = tf.backend() as WebGPUBackend;
 * splitPass(backend, 64).chunk;  // on a GPU without subgroups: 1792, a tile of 28 keys for each of 64 lanes
 * ```
 */
export function splitPass(backend: WebGPUBackend, K: number): SplitPass {
  const lanes = subgroupLanes(backend);
  const BC = rowsPerTile(K);
  const folder = splitFolder(backend, lanes !== null);
  const round = (each: number) => each * Math.ceil(SPLIT_CHUNK / each);
  if (folder === 'subgroup') {
    return { pass: 'splitSubgroups', label: 'SplitSubgroups', WG: SUBGROUP_WG, RL: 1, chunk: round(lanes! * BC), grid: (jobs) => subgroupGrid(jobs, lanes!) };
  }
  if (folder === 'workgroup') {
    const RL = quartersFit(K, lanes, rowQuartersFit(backend, K)) ? 4 : 1;
    const WG = chunkWorkgroup(K, RL);
    const label = RL === 4 ? 'SplitWorkgroupQuarters' : 'SplitWorkgroup';
    return { pass: 'splitWorkgroup', label, WG, RL, chunk: round(WG / RL * BC), grid: (jobs) => grid1d(jobs, 1) };
  }
  return { pass: 'split', label: 'Split', WG: SPLIT_WG, RL: 1, chunk: SPLIT_CHUNK, grid: (jobs) => grid1d(jobs, SPLIT_WG) };
}

/**
 * Whether the workgroup pass takes four lanes per row: where they fit a row (`fit`: subgroups,
 * and K / lanes a multiple of 4), whatever the tiled passes take, and its workgroup is a whole
 * number of the adapter's largest subgroups, so that every subgroup is full.
 */
function quartersFit(K: number, lanes: number | null, fit: boolean): boolean {
  return fit && lanes !== null && chunkWorkgroup(K, 4) % lanes === 0;
}

function splitFolder(backend: WebGPUBackend, subgroups: boolean): SplitFolder {
  const chosen = tf.env().get(ATTENTION_SPLIT_PASS_FLAG);
  if (chosen === 'auto') return subgroups ? 'subgroup' : onSwiftShader(backend) ? 'invocation' : 'workgroup';
  if (chosen === 'invocation' || chosen === 'workgroup' || (chosen === 'subgroup' && subgroups)) return chosen;
  const allowed = subgroups ? "'auto', 'invocation', 'workgroup' or 'subgroup'" : "'auto', 'invocation' or 'workgroup' (the device has no subgroups)";
  throw new Error(`tfjs-mixers: flag ${ATTENTION_SPLIT_PASS_FLAG} must be ${allowed}; received ${JSON.stringify(chosen)}.`);
}

/**
 * Invocations of a workgroup per chunk at head dimension K with RL lanes per row: RL times the
 * most folders, a power of two up to {@link CHUNK_FOLDERS}, whose lower half's lanes can take the
 * upper half's row states (two floats) and accumulators (K / RL floats each) in
 * {@link HANDED_BYTES}. A folder per invocation: 64 up to K = 124, 32 up to 250, 16 beyond; four
 * lanes per folder: 256 lanes up to K = 118, 128 up to 244, 64 beyond.
 */
function chunkWorkgroup(K: number, RL: 1 | 4): number {
  const bytes = 4 * K / RL + 8;
  let WG = CHUNK_FOLDERS * RL;
  while (WG > 2 * RL && (WG / 2) * bytes > HANDED_BYTES) WG /= 2;
  return WG;
}
