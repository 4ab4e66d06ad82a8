// The attention kernels under MIXERS.md §7's visibility (test/attention-kernel-visibility-cases.ts:
// every condition alone and combined against dense masked attention in float64, forward and
// gradients) through the tiled passes a row an invocation, at every row count, split into chunks,
// dK/dV reading its keys from memory, and through the split-K decode, an invocation and a
// workgroup per chunk. The passes by blocks of scores and with four lanes a row have their own
// files (-blocks, -subgroups).
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FLASH_ATTENTION } from '../src/mixers/flash-style-tiled-attention/kernel.js';
import { ATTENTION_DKV_KEYS_FLAG, ATTENTION_ROWS_FLAG, keysInMemory, rowsFillingSubgroups, tiledRows } from '../src/attention/kernel-source.js';
import { ATTENTION_SPLIT_PASS_FLAG, splitPass } from '../src/attention/split-pass.js';
import { ATTENTION_SPLITS_FLAG, tiledSplits } from '../src/attention/tile-splits.js';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { describeOn, launchedPipelines } from './helpers.js';
import {
  HOPPER, SWIFTSHADER, asAdapter, check, checkBlockSparse, checkSplit, denseCases,
} from './attention-kernel-visibility-cases.js';

// The tiled passes give each invocation RQ rows (query rows in the forward and dQ, key rows in
// dK/dV), RQ by adapter (tiledRows: 4 on SwiftShader, fewer on a GPU); every choice the flag
// allows runs here, forward and gradients, so each row count's build is checked whatever the
// adapter picks. Rows past a tile's end (Tq = 70,
// 5, 66, 150 are not multiples of 4) and scalar lanes (K = 6) are among the cases. First in the
// file, so that each count's pipelines are made in its own test, where their labels are checked.
describeOn('webgpu', 'attention kernels under visibility, at every forward row count', () => {
  const pipelines: string[] = [];
  let create: GPUDevice['createComputePipeline'];
  beforeAll(() => {
    const device = (tf.backend() as WebGPUBackend).device;
    create = device.createComputePipeline.bind(device);
    device.createComputePipeline = (d) => {
      pipelines.push(d.label ?? '');
      return create(d);
    };
  });
  afterAll(() => {
    (tf.backend() as WebGPUBackend).device.createComputePipeline = create;
    tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
  });

  for (const rows of [1, 2, 4]) {
    it(`with ${rows} row${rows > 1 ? 's' : ''} per invocation, every family's kernels equal dense masked attention, forward and gradients`, async () => {
      tf.env().set(ATTENTION_ROWS_FLAG, rows);
      pipelines.length = 0;
      try {
        for (const kind of ['softmax', 'expressive'] as const) {
          for (const c of denseCases(kind)) await check(c, 600 + rows);
        }
        await checkBlockSparse();
      } finally {
        tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
      }
      // each tiled pass once per family and K, named by its rows: FlashAttentionForwardK8R2, …K8 for
      // one; a forward once more where a lone kvLengths or queryOffsets was bound as it is (no tape)
      const tiled = pipelines.filter((label) => /Forward|BackwardDq|BackwardDkv/.test(label));
      expect(new Set(tiled).size).toBe(15);
      for (const label of new Set(tiled)) {
        expect(tiled.filter((t) => t === label).length, label).toBeLessThanOrEqual(label.includes('Forward') ? 2 : 1);
      }
      for (const label of tiled) expect(label).toMatch(rows > 1 ? new RegExp(`K\\d+R${rows}$`) : /K\d+$/);
    });
  }

  it("'auto' takes 4 rows on SwiftShader and, on a GPU, as many as keep a row's registers within 192 floats", () => {
    const rows = (gpu: WebGPUBackend, pass: 'forward' | 'dq' | 'dkv', Ks: number[], RL = 1) => Ks.map((K) => tiledRows(gpu, pass, K, RL));
    asAdapter(SWIFTSHADER, (gpu) => {
      expect(rows(gpu, 'forward', [8, 64, 256])).toEqual([4, 4, 4]);
      expect(rows(gpu, 'dkv', [8, 64, 256])).toEqual([4, 4, 4]);
    });
    asAdapter(HOPPER, (gpu) => {
      // a forward row holds 2·K + BC floats: 16 + 32, 64 + 32, 128 + 28 and 512 + 4
      expect(rows(gpu, 'forward', [8, 32, 64, 256])).toEqual([4, 2, 1, 1]);
      // dQ 3·K: 24, 96, 192, 768; dK/dV 4·K: 32, 64, 128, 256
      expect(rows(gpu, 'dq', [8, 32, 64, 256])).toEqual([4, 2, 1, 1]);
      expect(rows(gpu, 'dkv', [8, 16, 32, 64])).toEqual([4, 2, 1, 1]);
      // four lanes per row, each holding a quarter of those K-float registers: forward 8 + 32,
      // 32 + 32, 128 + 4; dQ 12, 48, 192; dK/dV 16, 64, 256
      expect(rows(gpu, 'forward', [16, 64, 256], 4)).toEqual([4, 2, 1]);
      expect(rows(gpu, 'dq', [16, 64, 256], 4)).toEqual([4, 4, 1]);
      expect(rows(gpu, 'dkv', [16, 64, 256], 4)).toEqual([4, 2, 1]);
    });
  });

  it('with four lanes per row, takes fewer rows where the workgroup would not be whole subgroups', () => {
    // 4·64 / rows invocations: 64 at 4 rows, a whole number of subgroups of 4 to 64, not of 128
    expect([4, 16, 32, 64, 128].map((lanes) => rowsFillingSubgroups(4, lanes))).toEqual([4, 4, 4, 4, 2]);
    // 128 at 2 rows and 256 at 1: whole for every size WebGPU allows
    expect([rowsFillingSubgroups(2, 128), rowsFillingSubgroups(1, 128)]).toEqual([2, 1]);
  });

  it('refuses a row count the forward has no build for', () => {
    tf.env().set(ATTENTION_ROWS_FLAG, 3);
    const q = tf.ones([1, 4, 1, 4]);
    // four queries: 'auto' would take the split-K decode, which has no rows per invocation
    expect(() => tf.engine().runKernel(FLASH_ATTENTION, { q, k: q, v: q }, { scale: 1, causal: true, window: 0, split: 'never' }))
      .toThrow(`tfjs-mixers: flag ${ATTENTION_ROWS_FLAG} must be 'auto', 1, 2 or 4; received 3.`);
    tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
    q.dispose();
  });
});

// A split tiled pass cuts the other side (keys in the forward and dQ, queries in dK/dV) into
// chunks of whole tiles, a workgroup per (tile, chunk), then merges the forward's partial rows
// and sums the gradients' parts. 'auto' splits only on a GPU, so the flag forces it here: 2 and
// 3 chunks of the 70, 140 and 150 rows of the cases (32-row tiles at K = 8 and 6), so chunks
// start inside a window, a segment, past a row's kvLengths, and some hold no visible key.
describeOn('webgpu', 'attention kernels under visibility, split into chunks of the other side', () => {
  afterAll(() => { tf.env().set(ATTENTION_SPLITS_FLAG, 'auto'); });
  for (const splits of [2, 3]) {
    it(`in ${splits} chunks, every family's kernels equal dense masked attention, forward and gradients`, async () => {
      tf.env().set(ATTENTION_SPLITS_FLAG, splits);
      try {
        const ran = await launchedPipelines(async () => {
          for (const kind of ['softmax', 'expressive'] as const) {
            for (const c of denseCases(kind)) await check(c, 900 + splits);
          }
        });
        const sparse = await launchedPipelines(() => checkBlockSparse());
        for (const family of ['FlashAttention', 'ExpressiveAttention']) {
          expect(ran).toContain(`${family}ForwardK8R4`);
          expect(ran).toContain(`${family}MergeK8`);
        }
        // BlockSparse's merge is FlashAttention's code, whose pipeline (and label) it shares
        expect(sparse).toContain('BlockSparseForwardK8R4');
        expect(sparse).toContain('FlashAttentionMergeK8');
        // the scalar lanes' case, K = 6
        expect(ran).toContain('FlashAttentionMergeK6');
        // the gradients' parts, by vec4 (K = 8) and by float (K = 6)
        expect(ran).toContain('AttentionSumPartsVec4');
        expect(ran).toContain('AttentionSumParts');
        expect(sparse).toContain('AttentionSumPartsVec4');
      } finally {
        tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
      }
    });
  }

  it("'auto' keeps one chunk on SwiftShader and, on a GPU, cuts a launch of few workgroups into chunks of at least four tiles", () => {
    asAdapter(SWIFTSHADER, (gpu) => expect(tiledSplits(gpu, 4096, 64, 256, 64)).toBeNull());
    asAdapter(HOPPER, (gpu) => {
      // 4096 / 256 workgroups: 16 chunks of ⌈4096 / 16⌉ keys rounded up to whole 28-key tiles, so 15
      expect(tiledSplits(gpu, 4096, 64, 256, 64)).toEqual({ chunk: 280, splits: 15 });
      // 1024 workgroups: 4 chunks; 4096 or more: one
      expect(tiledSplits(gpu, 16384, 256, 1024, 64)).toEqual({ chunk: 4116, splits: 4 });
      expect(tiledSplits(gpu, 16384, 256, 4096, 64)).toBeNull();
      // few keys: chunks of at least 4 tiles (112 keys), so 300 keys make 3
      expect(tiledSplits(gpu, 300, 1, 4, 64)).toEqual({ chunk: 112, splits: 3 });
      try {
        // a forced count: chunks of whole tiles (32 keys at K = 8), so 70 keys in 3 make 3 of 32
        tf.env().set(ATTENTION_SPLITS_FLAG, 3);
        expect(tiledSplits(gpu, 70, 2, 8, 8)).toEqual({ chunk: 32, splits: 3 });
        // workgroup x = tile·chunks + chunk stays within 65535
        tf.env().set(ATTENTION_SPLITS_FLAG, 1000);
        expect(tiledSplits(gpu, 1 << 20, 16384, 16384, 64)).toEqual({ chunk: 349552, splits: 3 });
        tf.env().set(ATTENTION_SPLITS_FLAG, 0);
        expect(() => tiledSplits(gpu, 70, 2, 8, 8)).toThrow(`tfjs-mixers: flag ${ATTENTION_SPLITS_FLAG} must be 'auto' or a whole number ≥ 1; received 0.`);
      } finally {
        tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
      }
    });
  });
});

// dK/dV's invocations read their key rows' keys and values from k and v where those would take
// too many registers on a GPU ('auto' holds them on SwiftShader): the flag forces it here, at
// every row count (each row's key base is its own) and with the other side split.
describeOn('webgpu', 'attention kernels under visibility, dK/dV reading keys from memory', () => {
  afterAll(() => {
    tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'auto');
    tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
    tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
  });
  for (const [rows, splits] of [[1, 1], [4, 3]] as const) {
    it(`with ${rows} key row${rows > 1 ? 's' : ''} per invocation in ${splits} chunk${splits > 1 ? 's' : ''}, every family's gradients equal dense masked attention's`, async () => {
      tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'memory');
      tf.env().set(ATTENTION_ROWS_FLAG, rows);
      tf.env().set(ATTENTION_SPLITS_FLAG, splits);
      try {
        for (const kind of ['softmax', 'expressive'] as const) {
          for (const c of denseCases(kind)) await check(c, 960 + rows);
        }
        await checkBlockSparse();
      } finally {
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'auto');
        tf.env().set(ATTENTION_ROWS_FLAG, 'auto');
        tf.env().set(ATTENTION_SPLITS_FLAG, 'auto');
      }
    });
  }

  it("'auto' reads them from memory on a GPU where the rows' registers pass 192 floats", () => {
    asAdapter(SWIFTSHADER, (gpu) => expect(keysInMemory(gpu, 64, 1)).toBe(false));
    asAdapter(HOPPER, (gpu) => {
      // 4·K floats a row: 256 at K = 64, 128 at 32 (two rows 256); a quarter with four lanes
      expect([keysInMemory(gpu, 64, 1), keysInMemory(gpu, 32, 1), keysInMemory(gpu, 32, 2)]).toEqual([true, false, true]);
      expect([keysInMemory(gpu, 64, 2, 4), keysInMemory(gpu, 256, 1, 4)]).toEqual([false, true]);
      try {
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'registers');
        expect(keysInMemory(gpu, 64, 1)).toBe(false);
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'cache');
        expect(() => keysInMemory(gpu, 64, 1)).toThrow(`tfjs-mixers: flag ${ATTENTION_DKV_KEYS_FLAG} must be 'auto', 'registers' or 'memory'; received "cache".`);
      } finally {
        tf.env().set(ATTENTION_DKV_KEYS_FLAG, 'auto');
      }
    });
  });
});

// On a GPU without subgroups a workgroup folds each chunk of the split-K decode, its lanes
// merging their row states in workgroup memory; 'auto' keeps an invocation per chunk on
// SwiftShader, so the flag forces it here.
describeOn('webgpu', 'attention kernels under visibility: the split-K decode, a workgroup per chunk', () => {
  afterAll(() => { tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto'); });
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s honours every condition as the tiled kernel does`, async () => {
      tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'workgroup');
      try {
        const ran = await launchedPipelines(() => checkSplit(kind, [4500, 300, 99]));
        expect(ran.some((label) => label.includes('SplitWorkgroupK8'))).toBe(true);
      } finally {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
      }
    });
  }

  it("'auto' takes it on a GPU without subgroups, with fewer lanes where their states would not fit 16 KiB", () => {
    asAdapter(SWIFTSHADER, (gpu) => expect([splitPass(gpu, 64).pass, splitPass(gpu, 64).chunk]).toEqual(['split', 128]));
    asAdapter(HOPPER, (gpu) => {
      // a tile of 28 keys for each of 64 lanes at K = 64; 32 lanes of 12 at K = 128; 16 of 4 at
      // K = 256, rounded up to 128 keys; 64 of 32 at K = 6
      const chosen = [64, 128, 256, 6].map((K) => { const p = splitPass(gpu, K); return [p.pass, p.WG, p.chunk]; });
      expect(chosen).toEqual([['splitWorkgroup', 64, 1792], ['splitWorkgroup', 32, 384], ['splitWorkgroup', 16, 128], ['splitWorkgroup', 64, 2048]]);
      try {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'invocation');
        expect(splitPass(gpu, 64).pass).toBe('split');
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'subgroup');
        expect(() => splitPass(gpu, 64)).toThrow(`tfjs-mixers: flag ${ATTENTION_SPLIT_PASS_FLAG} must be 'auto', 'invocation' or 'workgroup' (the device has no subgroups); received "subgroup".`);
      } finally {
        tf.env().set(ATTENTION_SPLIT_PASS_FLAG, 'auto');
      }
    });
  });
});

describeOn('webgpu', 'attention kernels under visibility', () => {
  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s kernels equal dense masked attention, forward and gradients`, async () => {
      for (const c of denseCases(kind)) await check(c, 100);
    });
  }

  for (const kind of ['softmax', 'expressive'] as const) {
    it(`${kind === 'softmax' ? 'flashAttention' : 'expressiveAttention'}'s split-K decode honours every condition as the tiled kernel does`, async () => {
      await checkSplit(kind);
    });
  }

  it('blockSparseAttention\'s kernels honour kvLengths, segmentIds and mask with the layout', () => checkBlockSparse());
});

