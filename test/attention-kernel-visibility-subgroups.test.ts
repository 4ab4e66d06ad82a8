// The attention kernels under MIXERS.md §7's visibility (test/attention-kernel-visibility-cases.ts:
// every condition alone and combined against dense masked attention in float64, forward and
// gradients) on a device with subgroups: the tiled passes with four lanes a row, and a row an
// invocation where asked for; the split-K decode, a subgroup and a workgroup of four-lane folders
// per chunk.
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import { FLASH_ATTENTION } from '../src/mixers/flash-style-tiled-attention/kernel.js';
import { ATTENTION_ROW_LANES_FLAG, ATTENTION_ROWS_FLAG } from '../src/attention/kernel-source.js';
import { ATTENTION_SPLIT_PASS_FLAG, splitPass } from '../src/attention/split-pass.js';
import { ATTENTION_SPLITS_FLAG } from '../src/attention/tile-splits.js';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { describeOnSubgroups, launchedPipelines } from './helpers.js';
import { check, checkBlockSparse, checkSplit, denseCases } from './attention-kernel-visibility-cases.js';

// With subgroups the tiled passes share each row among four lanes where K / lanes is a multiple of
// 4 (row-quarters.wgsl): K = 32 gives each lane two channel groups, so a lane's channels
// interleave with the others'; the scalar lanes' case (K = 6) keeps a row per invocation. Every
// row count the flag allows, as above (4 fits SwiftShader's subgroups of 4).
describeOnSubgroups('attention kernels under visibility: the tiled passes, four lanes per row', (pipelines) => {
  afterAll(() => { tf.env().set(ATTENTION_ROWS_FLAG, 'auto'); });
  for (const rows of [1, 2, 4]) {
    it(`with ${rows} row${rows > 1 ? 's' : ''} per four lanes, every family's kernels equal dense masked attention, forward and gradients`, async () => {
      tf.env().set(ATTENTION_ROWS_FLAG, rows);
      pipelines.length = 0;
      try {
        for (const kind of ['softmax', 'expressive'] as const) {
          for (const c of denseCases(kind, 32)) await check(c, 700 + rows);
        }
        await checkBlockSparse(32);
        // lane 0 of a row's four holds channel groups 0 and 4 (channels 0–3, 16–19): with the
        // output gradient 0 there, only the others' channels tell that a query's is live
        await check({ ...denseCases('softmax', 32)[0]!, name: 'softmax, output gradients zero in one lane\'s channels', zeroGradientChannels: (c) => c % 16 < 4 }, 800 + rows);
      } finally {
        tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
      }
      const suffix = rows > 1 ? `R${rows}` : '';
      for (const family of ['FlashAttention', 'ExpressiveAttention', 'BlockSparse']) {
        for (const pass of ['Forward', 'BackwardDq', 'BackwardDkv']) expect(pipelines).toContain(`${family}${pass}SubgroupsK32${suffix}`);
      }
      // the scalar lanes' case, K = 6 (6 channel groups, not a multiple of 4), one invocation per
      // row: each pass of the two families, and their forwards once more with a lone int input
      expect(new Set(pipelines.filter((label) => label.endsWith(`K6${suffix}`))).size).toBe(6);
      expect(pipelines.filter((label) => label.includes('Subgroups') && label.includes('K6'))).toEqual([]);
    });
  }
});

// MIXERS_ATTENTION_ROW_LANES on a device with subgroups: 1, the tiled passes take a row an
// invocation (the kernels without subgroups), while the split-K decode's workgroup pass still
// takes four lanes a row where asked for; 'dkv', dK/dV alone takes four
describeOnSubgroups('attention kernels under visibility: the tiled passes, a row an invocation though the device has subgroups', (pipelines) => {
  afterAll(() => { tf.env().set(ATTENTION_ROW_LANES_FLAG, 'auto'); });
  it('every family\'s kernels equal dense masked attention, forward and gradients, and the split-K workgroup pass keeps its quarters', async () => {
    tf.env().set(ATTENTION_ROW_LANES_FLAG, 1);
    pipelines.length = 0;
    for (const c of denseCases('softmax', 32)) await check(c, 960);
    await checkBlockSparse(32);
    for (const family of ['FlashAttention', 'BlockSparse']) {
      for (const pass of ['Forward', 'BackwardDq', 'BackwardDkv']) expect(pipelines.some((l) => l.startsWith(`${family}${pass}K32`))).toBe(true);
    }
    // the gradient's row sums (AttentionDeltaSubgroups) keep their subgroup per row
    expect(pipelines.filter((label) => /(Forward|Backward).*Subgroups/.test(label))).toEqual([]);
    tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'workgroup');
    try {
      expect(splitPass(tf.backend() as WebGPUBackend, 16).label).toBe('SplitWorkgroupQuarters');
    } finally {
      tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
    }
    const q = tf.ones([1, 4, 1, 32]);
    for (const wrong of [2, 'dkv,dkv', 'dk', '']) {
      tf.env().set(ATTENTION_ROW_LANES_FLAG, wrong);
      expect(() => tf.engine().runKernel(FLASH_ATTENTION, { q, k: q, v: q }, { scale: 1, causal: true, window: 0, split: 'never' }))
        .toThrow(`tfjs-mixers: flag ${ATTENTION_ROW_LANES_FLAG} must be 'auto', 1, 4 or the passes that take four lanes, ` +
          `some of 'forward', 'dq' and 'dkv' separated by commas (e.g. 'dkv'); received ${JSON.stringify(wrong)}.`);
    }
    q.dispose();
  });

  it('with four lanes a row in dK/dV alone, the kernels equal dense masked attention, forward and gradients', async () => {
    tf.env().set(ATTENTION_ROW_LANES_FLAG, 'dkv');
    const ran = await launchedPipelines(async () => {
      for (const c of denseCases('softmax', 32)) await check(c, 970);
    });
    const passes = [...new Set(ran.filter((l) => /^FlashAttention(Forward|Backward)/.test(l) && l.includes('K32')).map((l) => l.replace(/R\d$/, '')))];
    expect(passes.sort()).toEqual(['FlashAttentionBackwardDkvSubgroupsK32', 'FlashAttentionBackwardDqK32', 'FlashAttentionForwardK32']);
  });
});

describeOnSubgroups('attention kernels under visibility: the tiled passes, four lanes per row, split into chunks', (pipelines) => {
  it('in 3 chunks of the other side, each family\'s kernels equal dense masked attention, forward and gradients', async () => {
    tf.env().set(ATTENTION_SPLITS_FLAG, 3);
    pipelines.length = 0;
    try {
      for (const c of denseCases('expressive', 32)) await check(c, 950);
      await checkBlockSparse(32);
    } finally {
      tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
    }
    for (const family of ['ExpressiveAttention', 'BlockSparse']) {
      for (const pass of ['Forward', 'BackwardDq', 'BackwardDkv']) expect(pipelines.some((l) => l.startsWith(`${family}${pass}SubgroupsK32`))).toBe(true);
    }
    expect(pipelines).toContain('ExpressiveAttentionMergeK32');
    expect(pipelines).toContain('AttentionSumPartsVec4');
  });
});

describeOnSubgroups('attention kernels under visibility: the split-K decode', (pipelines) => {
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s, a subgroup per chunk, honours every condition as the tiled kernel does`, async () => {
      await checkSplit(kind);
      expect(pipelines.some((label) => label.includes('SplitSubgroups'))).toBe(true);
    });
  }

  // A workgroup per chunk with four lanes per folder: at K = 16 each lane holds one channel
  // group, at K = 64 four. SwiftShader's subgroups are of 4, so each is one folder, and the 64
  // folders' merge runs in workgroup memory; 4500 keys make three chunks of 2048 (a merge), 300
  // one (finished in place), most of whose folders see no key.
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s, a workgroup of four-lane folders per chunk, honours every condition as the tiled kernel does`, async () => {
      tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'workgroup');
      try {
        const gpu = tf.backend() as WebGPUBackend;
        expect([16, 64, 8].map((K) => { const p = splitPass(gpu, K); return [p.label, p.WG, p.RL, p.chunk]; })).toEqual([
          ['SplitWorkgroupQuarters', 256, 4, 2048], ['SplitWorkgroupQuarters', 256, 4, 1792],
          // K = 8: two channel groups, too few for four lanes
          ['SplitWorkgroup', 64, 1, 2048],
        ]);
        const ran = await launchedPipelines(async () => {
          await checkSplit(kind, [4500, 300], 16);
          await checkSplit(kind, [2000], 64);
        });
        expect([...new Set(ran.filter((label) => label.includes('SplitWorkgroup')))]).toEqual(
          ['SplitWorkgroupQuartersK16', 'SplitWorkgroupQuartersK64'].map((l) => `${kind === 'softmax' ? 'FlashAttention' : 'ExpressiveAttention'}${l}`));
      } finally {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
      }
    });
  }
});

