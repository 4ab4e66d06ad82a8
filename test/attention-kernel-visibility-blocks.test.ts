// The attention kernels' passes by blocks of scores under MIXERS.md §7's visibility
// (test/attention-kernel-visibility-cases.ts: every condition alone and combined against dense
// masked attention in float64, forward and gradients).
import * as tf from '@tensorflow/tfjs';
import { afterAll, expect, it } from 'vitest';
import { ATTENTION_FORWARD_FLAG, ATTENTION_DQ_FLAG, ATTENTION_DKV_FLAG, byBlocks, dpByBlocks } from '../src/attention/kernel-source.js';
import { ATTENTION_SPLITS_FLAG } from '../src/attention/tile-splits.js';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { describeOn, launchedPipelines } from './helpers.js';
import { check, checkBlockSparse, denseCases } from './attention-kernel-visibility-cases.js';

// The passes by blocks of scores (score-blocks.wgsl: tiles of 16 of the other side, a block of 4×4
// scores, then a row, then a quad of rows' outputs an invocation; the forward's,
// attention-forward-blocks.wgsl, dQ's, attention-backward-dq-blocks.wgsl, and dK/dV's, whose rows
// are keys, attention-backward-dkv-blocks.wgsl), which 'auto' does not take yet: the flags force
// them. At K = 16 (one channel group an output quarter) each pass alone, beside the others by
// rows, each of which reads the forward's statistic or writes what the other reads; then all
// three at once, at K = 16 in 3 chunks of the other side, at K = 32 (two channel groups,
// interleaved) and at K = 64, where dQ and dK/dV form dP by rows on an adapter of 32 KB
// (common/dq-dp-rows.wgsl, dkv-dp-rows.wgsl), as against by blocks at K ≤ 32 (dq-dp-blocks.wgsl,
// dkv-dp-blocks.wgsl), as 'blocks-dp-rows' asks at K = 16 too. Each pass is checked against
// the oracle whatever builds the others, so the runs of all three add every size and split at
// the cost of one build of each pass. The 70 and 150 query rows leave a tile's last quads partly
// or wholly past its end; 35, 70 and 140 keys end inside a 16-key tile (and 70 and 150 queries
// inside dK/dV's). K = 6 (the scalar lanes' case) keeps the rows.
describeOn('webgpu', 'attention kernels under visibility: the passes by blocks of scores', () => {
  afterAll(() => {
    for (const flag of [ATTENTION_FORWARD_FLAG, ATTENTION_DQ_FLAG, ATTENTION_DKV_FLAG, ATTENTION_SPLITS_FLAG]) tf.env().set(flag, 'auto');
  });
  const PASSES = {
    forward: { flag: ATTENTION_FORWARD_FLAG, kernel: 'Forward' },
    dQ: { flag: ATTENTION_DQ_FLAG, kernel: 'BackwardDq' },
    'dK/dV': { flag: ATTENTION_DKV_FLAG, kernel: 'BackwardDkv' },
  } as const;
  type Pass = keyof typeof PASSES;
  const all: Pass[] = ['forward', 'dQ', 'dK/dV'];
  const runs: { passes: Pass[]; K: number; splits: number; value: 'blocks' | 'blocks-dp-rows' }[] = [
    { passes: ['forward'], K: 16, splits: 1, value: 'blocks' },
    { passes: ['dQ'], K: 16, splits: 1, value: 'blocks' },
    { passes: ['dK/dV'], K: 16, splits: 1, value: 'blocks' },
    { passes: all, K: 16, splits: 3, value: 'blocks' },
    { passes: ['dQ', 'dK/dV'], K: 16, splits: 1, value: 'blocks-dp-rows' },
    { passes: all, K: 32, splits: 1, value: 'blocks' },
    { passes: all, K: 64, splits: 1, value: 'blocks' },
  ];
  runs.forEach(({ passes, K, splits, value }, run) => {
    const named = passes.length === 3 ? 'forward, dQ and dK/dV' : passes.join(' and ');
    it(`${named} at K = ${K}${splits > 1 ? `, in ${splits} chunks of the other side` : ''}${value === 'blocks' ? '' : `, ${value}`}: every family's forward equals dense masked attention, and its gradients`, async () => {
      for (const pass of passes) tf.env().set(PASSES[pass].flag, value);
      tf.env().set(ATTENTION_SPLITS_FLAG, splits);
      try {
        const ran = await launchedPipelines(async () => {
          for (const kind of ['softmax', 'expressive'] as const) {
            for (const c of denseCases(kind, K)) await check(c, 1100 + 10 * run);
          }
          await checkBlockSparse(K);
        });
        const gpu = tf.backend() as WebGPUBackend;
        for (const pass of passes) {
          const { kernel } = PASSES[pass];
          const built = pass !== 'forward' && dpByBlocks(gpu, pass === 'dQ' ? 'dq' : 'dkv', K) ? 'BlocksDp' : 'Blocks';
          // 'blocks' stages dP's other factor at K = 16 on any adapter; 'blocks-dp-rows' never
          if (K === 16) expect(built).toBe(value === 'blocks' && pass !== 'forward' ? 'BlocksDp' : 'Blocks');
          for (const family of ['FlashAttention', 'ExpressiveAttention', 'BlockSparse']) {
            expect(ran).toContain(`${family}${kernel}${built}K${K}R4`);
            expect(ran.filter((label) => label.startsWith(`${family}${kernel}K${K}`))).toEqual([]);
          }
          expect(ran.some((label) => label.startsWith(`FlashAttention${kernel}K6`))).toBe(true);
        }
        // a split forward merges its chunks' rows; a split dQ's parts are summed as the rows' are
        expect(ran.includes(`FlashAttentionMergeK${K}`)).toBe(splits > 1);
      } finally {
        for (const pass of passes) tf.env().set(PASSES[pass].flag, 'auto');
        tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
      }
    });
  });

  it("are taken where their flag asks for them and the workgroup memory fits; 'auto' keeps the rows", () => {
    const gpu = tf.backend() as WebGPUBackend;
    const limit = gpu.device.limits.maxComputeWorkgroupStorageSize;
    const Ks = [16, 64, 8, 40, 128];
    const none = [false, false, false, false, false];
    try {
      const flags = { forward: ATTENTION_FORWARD_FLAG, dq: ATTENTION_DQ_FLAG, dkv: ATTENTION_DKV_FLAG } as const;
      for (const [pass, flag] of Object.entries(flags) as [keyof typeof flags, string][]) {
        expect(Ks.map((K) => byBlocks(gpu, pass, K))).toEqual(none);
        tf.env().set(flag, 'blocks');
        // 4·(64·K + 32·K + 64·20 + 128) + 16 bytes: 11 792 at K = 16, 30 224 at 64, 54 800 at 128;
        // 8 and 40 are not multiples of 16
        expect(Ks.map((K) => byBlocks(gpu, pass, K))).toEqual([true, limit >= 30224, false, false, limit >= 54800]);
        // dK/dV's values staged beside its keys: 4·64·K bytes more, 15 888 at K = 16, 46 608 at 64;
        // dQ's output gradients, and 8 bytes a row more: 16 400 and 47 120
        if (pass !== 'forward') expect([16, 64].map((K) => dpByBlocks(gpu, pass, K))).toEqual([true, limit >= (pass === 'dq' ? 47120 : 46608)]);
        // one flag chooses one pass
        for (const other of Object.keys(flags) as (keyof typeof flags)[]) expect(byBlocks(gpu, other, 16)).toBe(other === pass);
        tf.env().set(flag, 'blocks-dp-rows');
        if (pass !== 'forward') {
          // by blocks as 'blocks', dP by rows wherever the memory would hold it by blocks
          expect(Ks.map((K) => byBlocks(gpu, pass, K))).toEqual([true, limit >= 30224, false, false, limit >= 54800]);
          expect([16, 64].map((K) => dpByBlocks(gpu, pass, K))).toEqual([false, false]);
        } else {
          // the forward has no dP
          expect(() => byBlocks(gpu, pass, 16)).toThrow(`tfjs-mixers: flag ${flag} must be 'auto', 'rows' or 'blocks'; received "blocks-dp-rows".`);
        }
        tf.env().set(flag, 'rows');
        expect(byBlocks(gpu, pass, 64)).toBe(false);
        if (pass !== 'forward') expect(dpByBlocks(gpu, pass, 16)).toBe(false);
        tf.env().set(flag, 'tiles');
        const values = pass === 'forward' ? "'auto', 'rows' or 'blocks'" : "'auto', 'rows', 'blocks' or 'blocks-dp-rows'";
        expect(() => byBlocks(gpu, pass, 64)).toThrow(`tfjs-mixers: flag ${flag} must be ${values}; received "tiles".`);
        tf.env().set(flag, 'auto');
      }
    } finally {
      for (const flag of [ATTENTION_FORWARD_FLAG, ATTENTION_DQ_FLAG, ATTENTION_DKV_FLAG]) tf.env().set(flag, 'auto');
    }
  });
});

