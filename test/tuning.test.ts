import { afterEach, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { applyKernelTuning, tuneKernels } from '../src/index.js';
import { disagreement, fastest, timeValues, type KernelTiming } from '../src/tuning.js';
import {
  ATTENTION_DKV_FLAG, ATTENTION_DKV_KEYS_FLAG, ATTENTION_DQ_FLAG, ATTENTION_FORWARD_FLAG, ATTENTION_ROW_LANES_FLAG,
  ATTENTION_ROWS_FLAG,
} from '../src/attention/kernel-source.js';
import { ATTENTION_SPLIT_PASS_FLAG } from '../src/attention/split-pass.js';
import { SCAN_FLAG as AVERAGE_SCAN_FLAG } from '../src/mixers/average-context/kernel.js';
import { SCAN_FLAG } from '../src/webgpu/scan.js';
import { describeOn, describeOnSubgroups, expectNoLeaks } from './helpers.js';

const FLAGS = [
  ATTENTION_FORWARD_FLAG, ATTENTION_ROW_LANES_FLAG, ATTENTION_ROWS_FLAG, ATTENTION_DKV_KEYS_FLAG, ATTENTION_DQ_FLAG,
  ATTENTION_DKV_FLAG, ATTENTION_SPLIT_PASS_FLAG, AVERAGE_SCAN_FLAG, SCAN_FLAG,
];
const resetFlags = () => { for (const flag of FLAGS) tf.env().set(flag, 'auto'); };

// small enough for SwiftShader; K = 16 lets the forward by blocks run (K a multiple of 16)
const SHAPES = {
  attention: { batch: 1, length: 40, heads: 2, headSize: 16, cacheLength: 300 },
  averageContext: { batch: 2, length: 70, width: 12 },
  selectiveScan: { batch: 2, length: 70, channels: 12, stateSize: 4 },
};

const timing = (value: string, ms: number | null): KernelTiming => ({ flag: 'F', value, ms });

describe('fastest: the value a flag keeps', () => {
  it('keeps the first value unless another beats it by the margin', () => {
    // 9.6 is 4 % under 10: within a 5 % margin, so the first stays; 9.4 is 6 % under
    expect(fastest([timing('auto', 10), timing('a', 9.6), timing('b', 11)], 0.05)).toBe('auto');
    expect(fastest([timing('auto', 10), timing('a', 9.6), timing('b', 9.4)], 0.05)).toBe('b');
    expect(fastest([timing('auto', 10), timing('a', 9.6)], 0)).toBe('a');
  });

  it('never keeps a refused value, however it timed', () => {
    expect(fastest([timing('auto', 10), timing('wrong', null), timing('a', 12)], 0.05)).toBe('auto');
    expect(fastest([timing('auto', 10), timing('wrong', null), timing('a', 5)], 0.05)).toBe('a');
  });
});

describe('disagreement: outputs against the value before tuning', () => {
  const expected = [Float32Array.from([1, -2, 0.5, 4]), Float32Array.from([3])];

  it('accepts float32 reorderings: 2·10⁻⁵ of the scale', () => {
    const got = [Float32Array.from([1 + 8e-5, -2 - 8e-5, 0.5, 4 - 8e-5]), Float32Array.from([3 + 6e-5])];
    expect(disagreement(expected, got)).toBeNull();
  });

  it('refuses a dropped element, a NaN and an output off by 1 %', () => {
    expect(disagreement(expected, [Float32Array.from([1, -2, 0, 4]), expected[1]])).toMatch(/output 0 element 2 is 0 where .* gives 0\.5/);
    expect(disagreement(expected, [expected[0], Float32Array.from([NaN])])).toMatch(/output 1 element 0 is NaN/);
    expect(disagreement(expected, [Float32Array.from([1, -2, 0.5, 4.04]), expected[1]])).toMatch(/element 3/);
  });
});

describeOn('webgpu', 'tuneKernels on this adapter', () => {
  afterEach(resetFlags);

  it('times every value of every flag once, refuses none of the (correct) kernels, keeps a timed value, and restores the flags', async () => {
    tf.env().set(ATTENTION_ROWS_FLAG, 2); // a value set before tuning is the one to beat, and comes back
    const tuning = await expectNoLeaks(() => tuneKernels({ ...SHAPES, rounds: 1, apply: false }));
    const of = (flag: string) => tuning.timings.filter((t) => t.flag === flag);
    // on SwiftShader 'auto' takes the rows, a row an invocation (the adapter has no subgroups
    // here: 4 lanes a row do not fit), 4 rows, keys in registers, an invocation per chunk
    // and the walk, twice (src/attention/kernel-source.ts, split-pass.ts, average-context/kernel.ts,
    // src/webgpu/scan.ts):
    // those values launch what 'auto' launched, and are timed as it
    const twins = (flag: string) => of(flag).map((t) => [t.value, t.sameAs ?? null]);
    expect(twins(ATTENTION_FORWARD_FLAG)).toEqual([['auto', null], ['rows', 'auto'], ['blocks', null]]);
    expect(twins(ATTENTION_ROW_LANES_FLAG)).toEqual([['auto', null], ...[1, 4, 'forward', 'dq', 'dkv', 'forward,dq', 'forward,dkv', 'dq,dkv'].map((v) => [v, 'auto'])]);
    expect(twins(ATTENTION_ROWS_FLAG)).toEqual([[2, null], ['auto', null], [1, null], [4, 'auto']]);
    expect(twins(ATTENTION_DKV_KEYS_FLAG)).toEqual([['auto', null], ['registers', 'auto'], ['memory', null]]);
    // at K = 16 'blocks' forms dP by blocks (dpByBlocks), so 'blocks-dp-rows' launches other kernels
    expect(twins(ATTENTION_DQ_FLAG)).toEqual([['auto', null], ['rows', 'auto'], ['blocks', null], ['blocks-dp-rows', null]]);
    expect(twins(ATTENTION_DKV_FLAG)).toEqual([['auto', null], ['rows', 'auto'], ['blocks', null], ['blocks-dp-rows', null]]);
    // the test adapter has no subgroups feature on tfjs's own backend
    expect(twins(ATTENTION_SPLIT_PASS_FLAG)).toEqual([['auto', null], ['invocation', 'auto'], ['workgroup', null]]);
    expect(twins(AVERAGE_SCAN_FLAG)).toEqual([['auto', null], ['levels', null], ['walk', 'auto'], ['lookback', null]]);
    expect(twins(SCAN_FLAG)).toEqual([['auto', null], ['chunks', null], ['walk', 'auto']]);
    for (const t of tuning.timings) {
      expect(t.refused).toBeUndefined();
      expect(t.ms).toBeGreaterThan(0);
      if (t.sameAs !== undefined) expect(t.ms).toBe(of(t.flag).find((twin) => twin.value === t.sameAs)!.ms);
    }
    expect(Object.keys(tuning.flags).sort()).toEqual([...FLAGS].sort());
    for (const [flag, value] of Object.entries(tuning.flags)) {
      expect(of(flag).find((t) => t.value === value)!.sameAs).toBeUndefined();
    }
    expect(tuning.adapter).toMatch(/swiftshader|google/i);
    expect(tf.env().get(ATTENTION_ROWS_FLAG)).toBe(2);
    for (const flag of FLAGS.filter((f) => f !== ATTENTION_ROWS_FLAG)) expect(tf.env().get(flag)).toBe('auto');
  });

  it('leaves the chosen values set, and tunes only the kernels it is given shapes for', async () => {
    const tuning = await tuneKernels({ attention: false, averageContext: SHAPES.averageContext, selectiveScan: false, rounds: 1 });
    expect(Object.keys(tuning.flags)).toEqual([AVERAGE_SCAN_FLAG]);
    expect(tf.env().get(AVERAGE_SCAN_FLAG)).toBe(tuning.flags[AVERAGE_SCAN_FLAG]);
    expect(tf.env().get(ATTENTION_FORWARD_FLAG)).toBe('auto');
  });

  it('fails naming a flag whose value before tuning fails, and leaves every flag as it was', async () => {
    tf.env().set(ATTENTION_FORWARD_FLAG, 'blocks');
    tf.env().set(AVERAGE_SCAN_FLAG, 'levelz'); // tuned after the attention flags, which have been chosen and set by then
    const tensors = tf.memory().numTensors;
    await expect(tuneKernels({ ...SHAPES, rounds: 1 })).rejects.toThrow(
      /tuneKernels: MIXERS_AVERAGE_CONTEXT_SCAN = "levelz", its value before tuning, failed: .*must be 'auto', 'levels', 'walk' or 'lookback'; received "levelz"/);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.env().get(ATTENTION_FORWARD_FLAG)).toBe('blocks');
    expect(tf.env().get(AVERAGE_SCAN_FLAG)).toBe('levelz');
    for (const flag of FLAGS.filter((f) => f !== ATTENTION_FORWARD_FLAG && f !== AVERAGE_SCAN_FLAG)) {
      expect(tf.env().get(flag)).toBe('auto');
    }
  });

  it('refuses a value whose outputs differ from the first value\'s, or that throws, and times the rest', async () => {
    const FLAG = 'MIXERS_TEST_TUNING';
    tf.env().registerFlag(FLAG, () => 'auto');
    const x = tf.tensor1d([1, 2, 3, 4]);
    const run = () => {
      const value = tf.env().get(FLAG);
      if (value === 'throws') throw new Error('no such kernel');
      return [value === 'wrong' ? x.add(tf.tensor1d([0, 0, 0.01, 0])) : x.mul(1)];
    };
    const timed = await expectNoLeaks(() => timeValues(tf.backend() as never, FLAG, ['auto', 'wrong', 'throws', 'same'], run, 2));
    x.dispose();
    expect(timed.map((t) => [t.value, t.ms === null])).toEqual([['auto', false], ['wrong', true], ['throws', true], ['same', false]]);
    expect(timed[1].refused).toMatch(/output 0 element 2 is 3\.0[0-9]* where the value before tuning gives 3/);
    expect(timed[2].refused).toBe('no such kernel');
    // the value before tuning failing is the caller's to see
    tf.env().set(FLAG, 'throws');
    await expect(timeValues(tf.backend() as never, FLAG, ['throws', 'auto'], run, 1)).rejects.toThrow(/MIXERS_TEST_TUNING = "throws", its value before tuning, failed: no such kernel/);
  });
});

describeOnSubgroups('tuneKernels on this adapter', (pipelines) => {
  afterEach(resetFlags);

  it('times the subgroup paths too, and refuses none of them', async () => {
    const tuning = await expectNoLeaks(() => tuneKernels({ attention: SHAPES.attention, averageContext: false, selectiveScan: false, rounds: 1, apply: false }));
    // 'auto' with subgroups: four lanes per row of the tiled passes, a subgroup per split-K chunk
    const twins = (flag: string) => tuning.timings.filter((t) => t.flag === flag).map((t) => [t.value, t.sameAs ?? null]);
    // with the forward by blocks (kept if faster here), the forward takes no lanes: naming it
    // changes nothing
    const blocks = tuning.flags[ATTENTION_FORWARD_FLAG] === 'blocks';
    expect(twins(ATTENTION_ROW_LANES_FLAG)).toEqual([['auto', null], [1, null], [4, 'auto'], ['forward', blocks ? 1 : null], ['dq', null],
      ['dkv', null], ['forward,dq', blocks ? 'dq' : null], ['forward,dkv', blocks ? 'dkv' : null], ['dq,dkv', blocks ? 'auto' : null]]);
    expect(twins(ATTENTION_SPLIT_PASS_FLAG)).toEqual([['auto', null], ['invocation', null], ['workgroup', null], ['subgroup', 'auto']]);
    expect(pipelines.some((label) => label.includes('ForwardSubgroups'))).toBe(true);
    expect(pipelines.some((label) => label.includes('SplitSubgroups'))).toBe(true);
    expect(pipelines.some((label) => label.includes('SplitWorkgroupQuarters'))).toBe(true);
    for (const t of tuning.timings) expect(t.refused).toBeUndefined();
  });
});

describeOn('cpu', 'tuneKernels off WebGPU', () => {
  it('has nothing to tune', async () => {
    const tuning = await tuneKernels(SHAPES);
    expect(tuning).toEqual({ adapter: "no WebGPU: the backend is 'cpu'", flags: {}, timings: [] });
  });
});

describe('tuneKernels and applyKernelTuning: bad arguments', () => {
  afterEach(resetFlags);

  it('names the option, what it expects and what it received', async () => {
    await expect(tuneKernels({ rounds: 0 })).rejects.toThrow("tuneKernels: option 'rounds' must be a positive integer; received 0 (a number).");
    await expect(tuneKernels({ margin: 1 })).rejects.toThrow("tuneKernels: option 'margin' must be a number in [0, 1); received 1 (a number).");
    await expect(tuneKernels({ attention: { headSize: 6.5 } })).rejects.toThrow("tuneKernels: option 'attention.headSize' must be a positive integer; received 6.5 (a number).");
    await expect(tuneKernels({ attention: { length: 8, keys: 4 } as never })).rejects.toThrow(/tuneKernels \(option 'attention'\): unknown option 'keys'/);
    await expect(tuneKernels({ selectiveScan: { stateSize: 0 } })).rejects.toThrow("tuneKernels: option 'selectiveScan.stateSize' must be a positive integer; received 0 (a number).");
    await expect(tuneKernels({ averageContext: { width: 8, height: 2 } as never })).rejects.toThrow(/tuneKernels \(option 'averageContext'\): unknown option 'height'; the options are 'batch', 'length', 'width'\./);
    await expect(tuneKernels({ round: 2 } as never)).rejects.toThrow(/tuneKernels: unknown option 'round'; the options are 'attention', /);
  });

  it('applyKernelTuning sets the flags it is given, and refuses others', () => {
    applyKernelTuning({ [ATTENTION_FORWARD_FLAG]: 'blocks', [AVERAGE_SCAN_FLAG]: 'lookback' });
    expect(tf.env().get(ATTENTION_FORWARD_FLAG)).toBe('blocks');
    expect(tf.env().get(AVERAGE_SCAN_FLAG)).toBe('lookback');
    expect(() => applyKernelTuning({ WEBGPU_CPU_FORWARD: 1 })).toThrow(/applyKernelTuning: unknown flag 'WEBGPU_CPU_FORWARD'; the tuned flags are 'MIXERS_ATTENTION_FORWARD', /);
    expect(() => applyKernelTuning({ [ATTENTION_ROWS_FLAG]: [2] as never })).toThrow("applyKernelTuning: flag 'MIXERS_ATTENTION_ROWS' must be a string or a number; received [2 (a number)].");
    expect(() => applyKernelTuning(null as never)).toThrow("applyKernelTuning: argument 'flags' must be an object of flag names and values; received null.");
  });
});
