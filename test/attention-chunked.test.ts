// The chunked attention references (src/attention/reference.ts, tiles.ts): the tile plan skips
// exactly the tiles no query sees and masks exactly the tiles some query sees in part (against a
// brute-force visibility), so a causal call visits about half the tiles, a window and a
// block-sparse layout a band that grows linearly in T; the references' peak memory stays a few
// tiles whatever T (tf.profile), far below the [Tq, Tk] scores; the kept scores and the
// recomputed ones give the same gradients. The references against the float64 oracles under every
// visibility option and random small tilings are in attention-visibility.test.ts.
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { ops } from '../src/index.js';
import { withReferenceTiling } from '../src/attention/reference.js';
import { knownTileMask, planTiles, widestKeyRange, type KnownVisibility } from '../src/attention/tiles.js';
import { blockActive } from '../src/mixers/block-sparse/layout.js';
import { describeOn, expectNoLeaks, maxAbsDiff, seededUniform, values } from './helpers.js';

const none: KnownVisibility = {
  causal: false, window: null, offsets: null, lengths: null, segments: null, layout: null, dynamic: false,
};

/** Whether key j is visible to query i of row b, straight from the definitions (MIXERS.md §5, §7). */
function visible(v: KnownVisibility, Tq: number, Tk: number, b: number, i: number, j: number): boolean {
  const p = (v.offsets ? v.offsets[b]! : Tk - Tq) + i;
  if (v.causal && j > p) return false;
  if (v.window !== null && (j <= p - v.window || (!v.causal && j >= p + v.window))) return false;
  if (v.lengths && j >= v.lengths[b]!) return false;
  if (v.segments && v.segments.query[b * Tq + i] !== v.segments.key[b * Tk + j]) return false;
  const L = v.layout;
  return !L || (j <= i && L.blockActive(Math.floor(i / L.blockSize), Math.floor(j / L.blockSize)));
}

const knowns = fc.record({
  B: fc.integer({ min: 1, max: 2 }), Tq: fc.integer({ min: 1, max: 30 }), Tk: fc.integer({ min: 1, max: 30 }),
  // key chunks of `chunk` or several of them (a few queries' longer tiles)
  chunk: fc.integer({ min: 1, max: 9 }), keyChunks: fc.integer({ min: 1, max: 4 }), causal: fc.boolean(),
  window: fc.option(fc.integer({ min: 1, max: 8 }), { nil: null }), withOffsets: fc.boolean(), withLengths: fc.boolean(),
  withSegments: fc.boolean(), withLayout: fc.boolean(), seed: fc.integer({ min: 0, max: 1e6 }),
  blockSize: fc.integer({ min: 1, max: 4 }), localBlocks: fc.integer({ min: 1, max: 3 }), stride: fc.integer({ min: 0, max: 3 }),
}).map((c) => {
  const r = seededUniform(c.seed, 4 * c.B + c.B * (c.Tq + c.Tk), 0, 1);
  let n = 0;
  const self = c.withLayout;
  const Tk = self ? c.Tq : c.Tk;
  const ids = (T: number) => Int32Array.from({ length: c.B * T }, () => Math.floor(r[n++]! * 3));
  const v: KnownVisibility = {
    causal: self || c.causal,
    window: self ? null : c.window,
    offsets: c.withOffsets && !self ? Int32Array.from({ length: c.B }, () => Math.floor(r[n++]! * (Tk + 3))) : null,
    lengths: c.withLengths ? Int32Array.from({ length: c.B }, () => Math.floor(r[n++]! * (Tk + 1))) : null,
    segments: null,
    layout: self ? { blockSize: c.blockSize, blockActive: (I, J) => blockActive(I, J, { ...c, globalBlocks: 1 }) } : null,
    dynamic: false,
  };
  if (c.withSegments) {
    const query = ids(c.Tq);
    v.segments = { query, key: self ? query : ids(Tk) };
  }
  return { s: { B: c.B, Tq: c.Tq, Tk, H: 1, Hkv: 1, K: 1 }, v, chunk: c.chunk, keyChunk: c.chunk * c.keyChunks };
});

describeOn('cpu', 'chunked attention: the tile plan', () => {
  it('visits every tile some query sees, masks only those it does not see whole, and skips only unseen ones', () => {
    fc.assert(fc.property(knowns, ({ s, v, chunk, keyChunk }) => {
      const plan = planTiles(s, v, chunk, keyChunk);
      const numKeyChunks = Math.ceil(s.Tk / keyChunk);
      expect(plan.queries.map((q) => [q.start, q.end])).toEqual(
        Array.from({ length: Math.ceil(s.Tq / chunk) }, (_, c) => [c * chunk, Math.min((c + 1) * chunk, s.Tq)]));
      for (const q of plan.queries) {
        const visits = new Map<number, boolean>();
        for (const t of q.tiles) {
          expect(visits.has(t.chunk)).toBe(false);
          visits.set(t.chunk, t.masked);
        }
        // ascending key chunks
        expect(q.tiles.map((t) => t.chunk)).toEqual([...visits.keys()].sort((a, b) => a - b));
        for (let c = 0; c < numKeyChunks; c++) {
          let seen = 0;
          let total = 0;
          for (let b = 0; b < s.B; b++) {
            for (let i = q.start; i < q.end; i++) {
              for (let j = c * keyChunk; j < Math.min((c + 1) * keyChunk, s.Tk); j++) {
                total++;
                if (visible(v, s.Tq, s.Tk, b, i, j)) seen++;
              }
            }
          }
          // skipped tiles hide every pair, unmasked ones show every pair, masked ones hide some
          // (the plan may visit a tile that turns out empty: its masks then hide all of it)
          if (!visits.has(c)) expect(seen, `chunk ${c} skipped`).toBe(0);
          else if (!visits.get(c)) expect(seen, `chunk ${c} unmasked`).toBe(total);
          else expect(seen, `chunk ${c} masked`).toBeLessThan(total);
        }
      }
    }), { numRuns: 300 });
  });

  it('the widest key range holds every query\'s visible keys, and is met by some query without segments or a layout', () => {
    fc.assert(fc.property(knowns, ({ s, v }) => {
      const widest = widestKeyRange(v, s);
      let met = 0;
      for (let b = 0; b < s.B; b++) {
        for (let i = 0; i < s.Tq; i++) {
          const seen = Array.from({ length: s.Tk }, (_, j) => j).filter((j) => visible(v, s.Tq, s.Tk, b, i, j));
          if (seen.length > 0) met = Math.max(met, seen[seen.length - 1]! - seen[0]! + 1);
        }
      }
      expect(met).toBeLessThanOrEqual(widest);
      if (!v.segments && !v.layout) expect(met).toBe(widest);
    }), { numRuns: 300 });
  });

  it("a tile's known mask is the brute-force visibility of its queries and keys", () => {
    fc.assert(fc.property(knowns, fc.integer({ min: 0, max: 1e6 }), ({ s, v }, seed) => {
      const r = seededUniform(seed, 4, 0, 1);
      const i0 = Math.floor(r[0]! * s.Tq);
      const i1 = i0 + 1 + Math.floor(r[1]! * (s.Tq - i0));
      const j0 = Math.floor(r[2]! * s.Tk);
      const j1 = j0 + 1 + Math.floor(r[3]! * (s.Tk - j0));
      const { values: mask, batch } = knownTileMask(v, s, i0, i1, j0, j1);
      let n = 0;
      for (let b = 0; b < batch; b++) {
        for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) expect(mask[n++]).toBe(visible(v, s.Tq, s.Tk, b, i, j) ? 1 : 0);
      }
      expect(n).toBe(mask.length);
    }), { numRuns: 200 });
  });

  it('a causal call visits about half the tiles; a window and a block-sparse layout visit a band linear in T', () => {
    const tiles = (T: number, v: KnownVisibility, chunk = 64) =>
      planTiles({ B: 1, Tq: T, Tk: T, H: 1, Hkv: 1, K: 1 }, v, chunk).queries.reduce((n, q) => n + q.tiles.length, 0);
    for (const T of [1024, 4096, 16384]) {
      const n = T / 64;
      expect(tiles(T, { ...none, causal: true })).toBe((n * (n + 1)) / 2);
      // a window of 256 keys reaches back into 4 earlier chunks (5 when it straddles one)
      expect(tiles(T, { ...none, causal: true, window: 256 })).toBeLessThanOrEqual(6 * n);
      const layout = { blockSize: 64, blockActive: (I: number, J: number) => blockActive(I, J, { blockSize: 64, localBlocks: 4, globalBlocks: 1, stride: 0 }) };
      // the default layout: 4 local blocks and 1 global one per query block
      expect(tiles(T, { ...none, causal: true, layout })).toBe(5 * n - 10);
    }
  });
});

/** A forward+backward of `op` at [1, T, H, K] with the given options, and its peak bytes (tf.profile). */
async function peakOf(op: 'flashAttention' | 'expressiveAttention' | 'blockSparseAttention', T: number, H: number, K: number,
  options: Record<string, unknown>): Promise<number> {
  const [q, k, v] = [0, 1, 2].map((n) => tf.tensor4d(seededUniform(n, T * H * K), [1, T, H, K]));
  const info = await tf.profile(() => {
    const grads = tf.grads((a, b, c) => tf.sum(ops[op](a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, options)))([q!, k!, v!]);
    tf.dispose(grads);
  });
  tf.dispose([q!, k!, v!]);
  return info.peakBytes;
}

describeOn('cpu', 'chunked attention: memory', () => {
  it('peak memory of forward+backward stays a few tiles whatever T, far below the [T, T] scores', async () => {
    const [H, K] = [2, 16];
    // tiles of 128 queries and keys (256 KiB of scores): a kept T² byte would show
    const tiling = { chunk: 128, keptScores: 0 };
    for (const op of ['flashAttention', 'expressiveAttention', 'blockSparseAttention'] as const) {
      const options = op === 'blockSparseAttention' ? { blockSize: 16, localBlocks: 2 } : { window: 100 };
      const small = await withReferenceTiling(tiling, () => peakOf(op, 512, H, K, options));
      const large = await withReferenceTiling(tiling, () => peakOf(op, 2048, H, K, options));
      // the [T, T] scores of the H heads, what a dense reference holds (several times over)
      const scores = 4 * H * 2048 * 2048;
      expect(large, `${op}: ${large} bytes at T = 2048`).toBeLessThan(scores / 4);
      // 4× the tokens: the O(T·K) part grows 4×, the tiles not at all (a T² part would grow 16×)
      expect(large, `${op}: ${small} → ${large}`).toBeLessThan(4.5 * small);
    }
  });
});

describeOn('cpu', 'chunked attention: kept scores', () => {
  it('the backward from the kept scores equals the backward that recomputes them, bit for bit', async () => {
    const [B, T, H, Hkv, K] = [2, 70, 4, 2, 8];
    const q = tf.tensor4d(seededUniform(1, B * T * H * K), [B, T, H, K]);
    const k = tf.tensor4d(seededUniform(2, B * T * Hkv * K), [B, T, Hkv, K]);
    const v = tf.tensor4d(seededUniform(3, B * T * Hkv * K), [B, T, Hkv, K]);
    for (const op of ['flashAttention', 'expressiveAttention'] as const) {
      const run = (keptScores: number) => withReferenceTiling({ chunk: 16, keptScores }, () => tf.tidy(() =>
        tf.grads((a, b, c) => tf.sum(tf.square(ops[op](a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, { window: 30, kvLengths: [50, 70] }))))([q, k, v])));
      const kept = await expectNoLeaks(async () => {
        const g = run(1 << 20);
        const out = await Promise.all(g.map(values));
        tf.dispose(g);
        return out;
      });
      const recomputed = run(0);
      for (let n = 0; n < 3; n++) expect(maxAbsDiff(kept[n]!, await values(recomputed[n]!)), `${op} d${'qkv'[n]}`).toBe(0);
      tf.dispose(recomputed);
    }
    tf.dispose([q, k, v]);
  });
});
