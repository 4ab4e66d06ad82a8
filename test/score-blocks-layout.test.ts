// The passes by blocks' layout (kernels/common/score-blocks.wgsl), read back from the WGSL itself:
// every block formed once, neighbouring lanes paired on what they read, and the reads of sTile's
// scores, weights and dS free of bank conflicts on an NVIDIA GPU. The bank model is the one
// docs/benchmarks.md counts by: 32 banks of 4 bytes, warps of 32 lanes whose vec4 reads are served
// a quarter-warp at a time (8 lanes, 128 bytes), where two lanes of a quarter reading different
// words of one bank wait on each other. Correctness does not depend on any of this (the kernel
// tests check the results); a change that breaks it costs the passes their speed unseen on
// SwiftShader, so it is checked here.
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { beforeAll, expect, it } from 'vitest';
import scoreBlocks from '../kernels/common/score-blocks.wgsl';
import probe from './kernels/score-blocks-probe.wgsl';
import { attentionKernel, BLOCKS_TILE, BR } from '../src/attention/kernel-source.js';
import { runKernel } from '../src/webgpu/runtime.js';
import { describeOn } from './helpers.js';

const K = 64;
const NT = BLOCKS_TILE.NT;
const BC4 = BLOCKS_TILE.BC / 4;
const WARP = 32;
const QUARTER = 8;
const BANKS = 32;

interface Layout {
  /** blockAt(lid): the invocation's quad of rows m and quad of the tile (or quarter of channels) r4 */
  at: { m: number; r4: number }[];
  /** sColumn(i, r4) for every row i */
  column: (i: number, r4: number) => number;
  /** sTile's row stride in vec4s */
  SS: number;
}

/** The 32-bit words of sTile that hold row i's quad r4. */
function words(l: Layout, i: number, r4: number): number[] {
  const first = 4 * (i * l.SS + l.column(i, r4));
  return [first, first + 1, first + 2, first + 3];
}

/**
 * The lanes of `lanes` that read a word of a bank another of them reads at another word, for a
 * read where lane n takes row rows[n]'s quad quads[n]; [] where none.
 */
function conflicts(l: Layout, lanes: number[], row: (n: number) => number, quad: (n: number) => number): number[] {
  const banks = new Map<number, Set<number>>();
  for (const n of lanes) {
    for (const w of words(l, row(n), quad(n))) {
      const seen = banks.get(w % BANKS) ?? new Set<number>();
      seen.add(w);
      banks.set(w % BANKS, seen);
    }
  }
  return lanes.filter((n) => words(l, row(n), quad(n)).some((w) => banks.get(w % BANKS)!.size > 1));
}

/** Every quarter-warp of the workgroup that meets a conflict reading as `row`/`quad` say, named. */
function quartersInConflict(l: Layout, row: (n: number) => number, quad: (n: number) => number): string[] {
  const found: string[] = [];
  for (let first = 0; first < NT; first += QUARTER) {
    const lanes = Array.from({ length: QUARTER }, (_, k) => first + k);
    const clashing = conflicts(l, lanes, row, quad);
    if (clashing.length > 0) found.push(`lanes ${clashing.join(', ')}`);
  }
  return found;
}

describeOn('webgpu', 'the passes by blocks of scores: their layout (common/score-blocks.wgsl)', () => {
  let layout: Layout;

  beforeAll(async () => {
    const kernel = attentionKernel('ScoreBlocksProbe', [scoreBlocks, probe], K, 4, '', 1, BLOCKS_TILE);
    const size = 2 * NT + BC4 * NT + 1;
    // attention.wgsl's Params: 13 words, unread by the probe
    const [info] = runKernel(tf.backend() as WebGPUBackend, kernel, {
      inputs: [], outputs: [{ shape: [size], dtype: 'int32' }], params: Array.from({ length: 13 }, () => ({ u32: 0 })), workgroups: [1, 1, 1],
    });
    const out = tf.engine().makeTensorFromTensorInfo(info!);
    const got = Array.from(await out.data());
    out.dispose();
    layout = {
      at: Array.from({ length: NT }, (_, n) => ({ m: got[2 * n]!, r4: got[2 * n + 1]! })),
      column: (i, r4) => got[2 * NT + BC4 * i + r4]!,
      SS: got[2 * NT + BC4 * NT]!,
    };
  });

  it('forms each block of scores once, and keeps each row\'s quads in distinct columns of sTile', () => {
    const blocks = new Set(layout.at.map(({ m, r4 }) => `${m},${r4}`));
    expect(blocks.size).toBe(NT);
    for (const { m, r4 } of layout.at) {
      expect(m).toBeLessThan(BR / 4);
      expect(r4).toBeLessThan(BC4);
    }
    for (let i = 0; i < BR; i++) {
      const columns = Array.from({ length: BC4 }, (_, r4) => layout.column(i, r4));
      expect(new Set(columns).size, `row ${i}`).toBe(BC4);
      for (const c of columns) expect(c).toBeLessThan(layout.SS);
    }
  });

  it('pairs its lanes: lanes 2k and 2k + 1 read the same quad of the tile, lanes two apart the same quad of rows', () => {
    for (let n = 0; n < NT; n += 2) expect(layout.at[n + 1]!.r4, `lane ${n + 1}`).toBe(layout.at[n]!.r4);
    for (let n = 0; n < NT; n++) expect(layout.at[n ^ 2]!.m, `lane ${n ^ 2}`).toBe(layout.at[n]!.m);
  });

  it('reads and writes sTile without bank conflicts in any quarter-warp', () => {
    const { at } = layout;
    const found: Record<string, string[]> = {};
    for (let u = 0; u < 4; u++) {
      for (let r4 = 0; r4 < BC4; r4++) {
        // the forward's last step: row 4m + u's weights of key quad r4, one quad at a time
        found[`forward's weights, row 4m + ${u}, quad ${r4}`] = quartersInConflict(layout, (n) => 4 * at[n]!.m + u, () => r4);
        // dQ's and dK/dV's last steps: the quads taken in turns, quarter u first
        found[`dS by turns, row 4m + ${u}, turn ${r4}`] = quartersInConflict(layout, (n) => 4 * at[n]!.m + u, (n) => (r4 + at[n]!.r4) % BC4);
        // the rows' steps: each invocation its own row
        found[`row steps, quad ${r4}`] = quartersInConflict(layout, (n) => n, () => r4);
      }
      // the blocks' writes
      found[`block writes, row 4m + ${u}`] = quartersInConflict(layout, (n) => 4 * at[n]!.m + u, (n) => at[n]!.r4);
    }
    const clashes = Object.entries(found).filter(([, lanes]) => lanes.length > 0);
    expect(clashes).toEqual([]);
  });

  it('lets a warp\'s forward read its eight rows\' weights of a key quad in one pass over the banks', () => {
    // eight quads of rows a warp, each read by four lanes: 32 words, every bank once
    for (let first = 0; first < NT; first += WARP) {
      for (let u = 0; u < 4; u++) {
        for (let r4 = 0; r4 < BC4; r4++) {
          const lanes = Array.from({ length: WARP }, (_, k) => first + k);
          expect(conflicts(layout, lanes, (n) => 4 * layout.at[n]!.m + u, () => r4), `warp from ${first}, row 4m + ${u}, quad ${r4}`).toEqual([]);
        }
      }
    }
  });
});
