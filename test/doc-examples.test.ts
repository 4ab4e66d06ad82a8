// Every TypeScript example of the documentation (the TSDoc of src/, README.md, docs/) runs, on
// webgpu, and gives what its comments say: `x; // 6` states x's value (a tensor's shape, or its
// values), `x.print(); // [1, 2]` the values printed, `f(); // throws: …` an error. A comment
// that starts with a word states nothing and is not checked.
import * as tf from '@tensorflow/tfjs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as library from '../src/index.js';
import * as node from '../src/node.js';
import { describeOn } from './helpers.js';
import {
  parseSnippet, publicValuesWithoutExample, repositorySnippets, runnable, statedValue, typeErrors, type Claim, type Snippet,
} from './examples/snippets.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const snippets = repositorySnippets(root);

/**
 * The examples this test does not run, by file and first line, and why; each must still name
 * an example, so that none stays here after its example changed. All but those `untyped` are
 * type-checked.
 */
const NOT_RUN: { file: string; starts: string; why: string; untyped?: true }[] = [
  { file: 'src/node.ts', starts: "import { installWebGPU } from 'tfjs-mixers/node';", why: 'installs WebGPU, as test/setup/webgpu.ts did before any test; test/node.test.ts checks installWebGPU' },
  { file: 'src/node.ts', starts: "import { installWebGPU, HOW_TO_GET_AN_ADAPTER } from 'tfjs-mixers/node';", why: 'the same' },
  { file: 'README.md', starts: "import { installWebGPU, HOW_TO_GET_AN_ADAPTER } from 'tfjs-mixers/node';", why: 'the same' },
  { file: 'src/webgpu/subgroups.ts', starts: "import * as tf from '@tensorflow/tfjs';", why: 'registers the webgpu backend, which must come before its first use; test/runtime.test.ts checks registerSubgroupBackend' },
  { file: 'README.md', starts: "import * as tf from '@tensorflow/tfjs';\nimport '@tensorflow/tfjs-backend-webgpu';   // in Node, after installWebGPU()", why: 'the same' },
  { file: 'src/tuning.ts', starts: "import * as tf from '@tensorflow/tfjs';", why: "a browser's localStorage, and minutes of timing on SwiftShader; test/tuning.test.ts checks tuneKernels" },
  { file: 'README.md', starts: "import { applyKernelTuning, tuneKernels } from 'tfjs-mixers';", why: 'the same' },
  { file: 'docs/adding-a-mixer.md', starts: 'export const AAREN: MixerDescriptor = {', why: "a template of a new mixer's file, its inputs left out", untyped: true },
];

const notRun = (s: Snippet) => NOT_RUN.find((n) => n.file === s.file && s.code.trimStart().startsWith(n.starts));

/** What a snippet may import, module by module: the packages, Node's modules, and a source's neighbours by relative path. */
const MODULES: Record<string, Record<string, unknown>> = {
  'tfjs-mixers': library,
  'tfjs-mixers/node': node,
  '@tensorflow/tfjs': tf,
  '@tensorflow/tfjs-backend-webgpu': {},
};

async function moduleOf(file: string, from: string): Promise<Record<string, unknown> | undefined> {
  if (from.startsWith('node:')) return (await import(from)) as Record<string, unknown>;
  if (!from.startsWith('.') || !file.startsWith('src/')) return MODULES[from];
  return (await import(join(root, dirname(file), from.replace(/\.js$/, '.ts')))) as Record<string, unknown>;
}

/**
 * a and e equal: a tensor's numbers to `rel` relative (1e-5, float32 sums of a few terms), a plain
 * value's exactly (rel 0); a bool tensor's 1/0 as true/false.
 */
function agrees(a: unknown, e: unknown, rel = 0): boolean {
  if (typeof e === 'number' && typeof a === 'number') {
    return Number.isNaN(e) ? Number.isNaN(a) : a === e || Math.abs(a - e) <= rel * Math.max(1, Math.abs(e));
  }
  if (typeof e === 'boolean' && typeof a === 'number') return a === (e ? 1 : 0);
  if (Array.isArray(e)) {
    const list = ArrayBuffer.isView(a) ? Array.from(a as unknown as ArrayLike<number>) : a;
    return Array.isArray(list) && list.length === e.length && e.every((x, i) => agrees(list[i], x, rel));
  }
  if (e !== null && typeof e === 'object') {
    if (a === null || typeof a !== 'object') return false;
    const keys = (o: object) => Object.entries(o).filter(([, v]) => v !== undefined).map(([k]) => k).sort();
    const [ka, ke] = [keys(a), keys(e)];
    return ka.length === ke.length && ka.every((k, i) => k === ke[i] &&
      agrees((a as Record<string, unknown>)[k], (e as Record<string, unknown>)[k], rel));
  }
  return Object.is(a, e);
}

/** A statement's stated value checked: see the file's head. */
async function check(thunk: () => Promise<unknown>, claim: Claim, literal: string | null, where: string): Promise<void> {
  if (claim === 'throws') {
    await expect(thunk(), `${where}: said to throw`).rejects.toThrow();
    return;
  }
  const value = await thunk();
  const expected: unknown = new Function(`return (${literal});`)();
  if (value instanceof tf.SymbolicTensor) {
    expect(agrees(value.shape, expected), `${where}: a symbolic tensor of shape ${JSON.stringify(value.shape)}, where the comment says ${literal}`).toBe(true);
  } else if (claim === 'print' || value instanceof tf.Tensor) {
    expect(value, `${where}: a tensor`).toBeInstanceOf(tf.Tensor);
    const t = value as tf.Tensor;
    const values = await t.array();
    const flat = Array.from(await t.data());
    const ok = claim === 'print' ? agrees(values, expected, 1e-5)
      : agrees(t.shape, expected) || agrees(values, expected, 1e-5) || agrees(flat, expected, 1e-5);
    const shown = JSON.stringify(values);
    expect(ok, `${where}: ${claim === 'print' ? 'prints' : 'gives'} a tensor of shape ${JSON.stringify(t.shape)} and values ` +
      `${shown.length > 200 ? `${shown.slice(0, 200)}…` : shown}, where the comment says ${literal}`).toBe(true);
  } else {
    expect(agrees(value, expected), `${where}: gives ${JSON.stringify(value)}, where the comment says ${literal}`).toBe(true);
  }
}

/** The names a snippet of `file` may use without importing them: tf, the package's, its own module's. */
async function scopeOf(file: string): Promise<Record<string, unknown>> {
  const own = file.startsWith('src/') ? (await import(join(root, file))) as Record<string, unknown> : {};
  return { tf, ...library, ...own };
}

describe("the documentation's examples, as TypeScript", () => {
  it('type-check under the project\'s tsconfig, with their imports from the package', () => {
    const checked = snippets.filter((s) => !notRun(s)?.untyped);
    expect(typeErrors(root, checked).flatMap((e) => e.messages)).toEqual([]);
  });

  it('cover every public value: the TSDoc of each export of the package has one', () => {
    expect(publicValuesWithoutExample(root)).toEqual([]);
  });
});

describeOn('webgpu', "the documentation's examples", () => {
  let flags: ReturnType<tf.Environment['getFlags']>;
  let print: tf.Tensor['print'];
  beforeEach(() => {
    flags = { ...tf.env().getFlags() };
    print = tf.Tensor.prototype.print;
    // tfjs prints by reading values synchronously, which Node's webgpu cannot (README)
    tf.Tensor.prototype.print = function print() {};
  });
  afterEach(async () => {
    tf.Tensor.prototype.print = print;
    // the flags an example set, as they were (setFlags runs no set hooks: the flags examples set have none)
    tf.env().setFlags({ ...flags });
    if (tf.getBackend() !== 'webgpu') expect(await tf.setBackend('webgpu')).toBe(true);
  });

  it('are found, and NOT_RUN names only examples that exist', () => {
    expect(snippets.length).toBeGreaterThan(150);
    // 134 stated values at this writing: a parser that stopped finding them would fail here
    expect(snippets.reduce((n, s) => n + runnable(s, []).checks, 0)).toBeGreaterThan(120);
    for (const n of NOT_RUN) expect(snippets.some((s) => notRun(s) === n), `${n.file}: ${n.starts}`).toBe(true);
  });

  it('state values the test understands', () => {
    expect(statedValue('// [1, 3, 65]')).toEqual({ literals: ['[1, 3, 65]'], throws: false });
    expect(statedValue("// 'reference', and one warning")).toEqual({ literals: ["'reference'"], throws: false });
    expect(statedValue('// 2: 128 invocations')).toEqual({ literals: ['2'], throws: false });
    expect(statedValue('// [1, 6, 2, 8], [1, 2, 6]; o, denominators')).toEqual({ literals: ['[1, 6, 2, 8]', '[1, 2, 6]'], throws: false });
    expect(statedValue('// throws: rotaryDim at most K = 16')).toEqual({ literals: [], throws: true });
    expect(statedValue('// builds it for D = 64')).toBeNull();
    expect(statedValue('// throws once a row holds capacity tokens')).toBeNull();
    expect(() => statedValue('// 1 · 1 · 8 · 4 = 32 values')).toThrow(/goes on with/);
  });

  for (const snippet of snippets) {
    const skip = notRun(snippet);
    it.skipIf(skip)(`${snippet.file}:${snippet.line}${skip ? ` (not run: ${skip.why})` : ''}`, async () => {
      const scope = await scopeOf(snippet.file);
      for (const { from, names } of parseSnippet(snippet).imports) {
        const module = await moduleOf(snippet.file, from);
        expect(module, `${snippet.file}:${snippet.line} imports from '${from}'`).toBeDefined();
        for (const { imported, local } of names) {
          expect(imported === '*' || imported in module!, `${snippet.file}:${snippet.line} imports ${imported} from '${from}', which has none`).toBe(true);
          scope[local] = imported === '*' ? module : module![imported];
        }
      }
      // what an example logs is not this test's output (a log whose comment states a value is checked)
      scope.console = { log: () => {} };
      const names = Object.keys(scope).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n));
      const { body } = runnable(snippet, names);
      const example = new Function(body)() as (scope: object, checker: typeof check) => Promise<void>;
      await example(scope, check);
    });
  }
});
