// The passes by blocks' layout (kernels/common/score-blocks.wgsl), read back from the WGSL itself:
// every block formed once, neighbouring lanes paired on what they read, and the reads of the
// tiles (sTile's scores, weights and dS; the staged rows, the other side's quads, the values)
// free of bank conflicts on an NVIDIA GPU. The bank model is the one
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

/** The first 32-bit word of sTile's vec4 that holds row i's quad r4. */
const sWord = (l: Layout, i: number, r4: number) => 4 * (i * l.SS + l.column(i, r4));

/**
 * The lanes of `lanes` that read a word of a bank another of them reads at another word, for a
 * vec4 read where lane n reads the four words from first(n); [] where none.
 */
function conflicts(lanes: number[], first: (n: number) => number): number[] {
  const banks = new Map<number, Set<number>>();
  const words = (n: number) => [0, 1, 2, 3].map((w) => first(n) + w);
  for (const n of lanes) {
    for (const w of words(n)) {
      const seen = banks.get(w % BANKS) ?? new Set<number>();
      seen.add(w);
      banks.set(w % BANKS, seen);
    }
  }
  return lanes.filter((n) => words(n).some((w) => banks.get(w % BANKS)!.size > 1));
}

/** Every quarter-warp of the workgroup that meets a conflict in a vec4 read from `first`, named. */
function quartersInConflict(first: (n: number) => number): string[] {
  const found: string[] = [];
  for (let start = 0; start < NT; start += QUARTER) {
    const lanes = Array.from({ length: QUARTER }, (_, k) => start + k);
    const clashing = conflicts(lanes, first);
    if (clashing.length > 0) found.push(`lanes ${clashing.join(', ')}`);
  }
  return found;
}

/** The reads whose quarter-warps meet a conflict, with their lanes. */
const clashing = (found: Record<string, string[]>) => Object.entries(found).filter(([, lanes]) => lanes.length > 0);

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
        found[`forward's weights, row 4m + ${u}, quad ${r4}`] = quartersInConflict((n) => sWord(layout, 4 * at[n]!.m + u, r4));
        // dQ's and dK/dV's last steps: the quads taken in turns, quarter u first
        found[`dS by turns, row 4m + ${u}, turn ${r4}`] = quartersInConflict((n) => sWord(layout, 4 * at[n]!.m + u, (r4 + at[n]!.r4) % BC4));
        // the rows' steps: each invocation its own row
        found[`row steps, quad ${r4}`] = quartersInConflict((n) => sWord(layout, n, r4));
      }
      // the blocks' writes
      found[`block writes, row 4m + ${u}`] = quartersInConflict((n) => sWord(layout, 4 * at[n]!.m + u, at[n]!.r4));
    }
    expect(clashing(found)).toEqual([]);
  });

  it('reads the staged rows and the other side\'s tile without bank conflicts in any quarter-warp', () => {
    const { at } = layout;
    const KV = K / 4;
    // first words of the tiles' vec4s: RowTile [c][lane][m], QuadTile [c][lane][r4]
    // (kernels/common/attention.wgsl), and common/value-rows.wgsl's vTile [r][c]
    const rowTile = (c: number, lane: number, m: number) => 4 * ((c * 4 + lane) * (BR / 4) + m);
    const quadTile = (c: number, lane: number, r4: number) => 4 * ((c * 4 + lane) * BC4 + r4);
    const vTile = (r: number, c: number) => 4 * (r * KV + c);
    const found: Record<string, string[]> = {};
    for (let c = 0; c < KV; c++) {
      for (let lane = 0; lane < 4; lane++) {
        // a block of scores (or dP): its quad of rows, and the other side's quad
        found[`block's rows, group ${c}, lane ${lane}`] = quartersInConflict((n) => rowTile(c, lane, at[n]!.m));
        found[`block's other quad, group ${c}, lane ${lane}`] = quartersInConflict((n) => quadTile(c, lane, at[n]!.r4));
      }
    }
    for (let x = 0; x < KV / 4; x++) {
      for (let turn = 0; turn < BC4; turn++) {
        // dQ's and dK/dV's last steps: quarter u's channel group 4x + u of the quad taken in turn
        for (let lane = 0; lane < 4; lane++) {
          found[`last step's quads, group 4·${x} + u, turn ${turn}, lane ${lane}`] =
            quartersInConflict((n) => quadTile(4 * x + at[n]!.r4, lane, (turn + at[n]!.r4) % BC4));
        }
        // the forward's last step: the values of key quad `turn`, channel group 4x + u
        for (let e = 0; e < 4; e++) {
          found[`forward's values, key ${4 * turn + e}, group 4·${x} + u`] = quartersInConflict((n) => vTile(4 * turn + e, 4 * x + at[n]!.r4));
        }
      }
    }
    expect(clashing(found)).toEqual([]);
  });

  it('lets a warp\'s forward read its eight rows\' weights of a key quad in one pass over the banks', () => {
    // eight quads of rows a warp, each read by four lanes: 32 words, every bank once
    for (let first = 0; first < NT; first += WARP) {
      for (let u = 0; u < 4; u++) {
        for (let r4 = 0; r4 < BC4; r4++) {
          const lanes = Array.from({ length: WARP }, (_, k) => first + k);
          expect(conflicts(lanes, (n) => sWord(layout, 4 * layout.at[n]!.m + u, r4)), `warp from ${first}, row 4m + ${u}, quad ${r4}`).toEqual([]);
        }
      }
    }
  });
});
