/**
 * WebGPU for Node.js: installs Dawn (the `webgpu` npm package, `npm install webgpu`) as
 * `navigator.gpu`, so that `@tensorflow/tfjs-backend-webgpu` registers its backend when it is
 * imported afterwards. A hardware adapter is used when Vulkan offers one; otherwise SwiftShader,
 * the software Vulkan driver that Debian's `chromium` package ships, is found and used.
 *
 * Node has no `OffscreenCanvas`, which tfjs-backend-webgpu 4.22 needs for synchronous reads
 * from the GPU, and Dawn can only read a buffer back asynchronously. So in Node read tensors
 * with `await tensor.data()` or `await tensor.array()`: for a tensor computed on the GPU,
 * `dataSync()`, `arraySync()`, `bufferSync()` and `tf.print` throw an error that says so.
 *
 * @example
 * ```ts
 * import { installWebGPU } from 'tfjs-mixers/node';
 * const gpu = await installWebGPU();               // before tfjs-backend-webgpu is imported
 * const tf = await import('@tensorflow/tfjs');
 * await import('@tensorflow/tfjs-backend-webgpu');
 * if (gpu) await tf.setBackend('webgpu');
 * const y = tf.tidy(() => tf.ones([2]).add(1));
 * console.log(await y.data());                    // Float32Array [2, 2]
 * y.dispose();
 * ```
 *
 * @packageDocumentation
 */
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where SwiftShader's Vulkan driver manifest is looked for, in order: the folders where Linux
 * distributions' chromium packages put it.
 *
 * @example
 * ```ts
 * import { existsSync } from 'node:fs';
 * import { SWIFTSHADER_ICDS } from 'tfjs-mixers/node';
 * const icd = SWIFTSHADER_ICDS.find((path) => existsSync(path));   // the first there, if any
 * ```
 */
export const SWIFTSHADER_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib64/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
];

/** The adapter that {@link installWebGPU} installed. */
export interface InstalledWebGPU {
  /** `'hardware'` (a Vulkan driver Dawn found by itself) or `'swiftshader'`. */
  kind: 'hardware' | 'swiftshader';
  /** A short description of the adapter, for logs and bench reports. */
  description: string;
  /** How Node waits for this adapter: `'busy'` or `'yield'` (see {@link InstallWebGPUOptions.poll}). */
  poll: 'busy' | 'yield';
  /**
   * Removes `navigator.gpu` and the `OffscreenCanvas` stand-in that {@link installWebGPU}
   * added; Node may not exit while `navigator.gpu` is installed.
   */
  uninstall(): void;
}

/**
 * How to get an adapter, for error messages.
 *
 * @example
 * ```ts
 * import { installWebGPU, HOW_TO_GET_AN_ADAPTER } from 'tfjs-mixers/node';
 * if (!(await installWebGPU())) throw new Error(HOW_TO_GET_AN_ADAPTER);
 * ```
 */
export const HOW_TO_GET_AN_ADAPTER =
  'No WebGPU adapter was found. On Debian/Ubuntu install SwiftShader and the Vulkan loader with ' +
  '`sudo apt-get install chromium libvulkan1` (tfjs-mixers finds /usr/lib/chromium/vk_swiftshader_icd.json by itself), ' +
  'or run on a machine with a Vulkan GPU driver.';

const SYNC_READ_IN_NODE =
  'webgpu backend in Node: tensor.dataSync(), arraySync(), bufferSync() and tf.print need a synchronous read from the GPU, which the ' +
  'webgpu backend does with OffscreenCanvas; Node has no OffscreenCanvas, and Dawn (the webgpu package) only ' +
  'reads GPU memory asynchronously. In Node read tensors with `await tensor.data()` or `await tensor.array()` ' +
  '(and use an op\'s async form, e.g. tf.image.nonMaxSuppressionAsync).';

/**
 * Stands in for the browser's `OffscreenCanvas`, which tfjs-backend-webgpu's synchronous read
 * constructs: it throws an error that names the asynchronous read to use instead.
 */
class OffscreenCanvasMissingInNode {
  constructor() {
    throw new Error(SYNC_READ_IN_NODE);
  }
}

async function describeAdapter(adapter: GPUAdapter): Promise<string> {
  const info = adapter.info;
  const parts = [info?.vendor, info?.architecture, info?.device, info?.description].filter((p) => p);
  return parts.length > 0 ? parts.join(' ') : 'unnamed adapter';
}

/**
 * Whether the Vulkan loader has a driver manifest to load: `VK_ADD_DRIVER_FILES`, or a `.json`
 * file in one of the folders the loader searches on Linux.
 */
function hasVulkanDriverManifest(env: NodeJS.ProcessEnv): boolean {
  if (env.VK_ADD_DRIVER_FILES) return true;
  const home = env.HOME ?? homedir();
  const dirs = [
    env.XDG_CONFIG_HOME || join(home, '.config'),
    ...(env.XDG_CONFIG_DIRS || '/etc/xdg').split(':'),
    '/usr/local/etc',
    '/etc',
    env.XDG_DATA_HOME || join(home, '.local', 'share'),
    ...(env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':'),
  ];
  return dirs.some((dir) => {
    try {
      return readdirSync(join(dir, 'vulkan', 'icd.d')).some((f) => f.endsWith('.json'));
    } catch {
      return false;
    }
  });
}

type Dawn = { create(flags: string[]): GPU; globals: Record<string, unknown> };

async function importDawn(): Promise<Dawn> {
  try {
    return await import('webgpu') as unknown as Dawn;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const missing = (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') &&
      /['"]webgpu['"]/.test(err.message);
    if (missing) {
      throw new Error(
        'installWebGPU: the `webgpu` package (Dawn\'s WebGPU for Node.js) is required but not installed ' +
        `(importing 'webgpu' failed: ${err.message.split('\n')[0]}). Install it with: npm install webgpu`,
        { cause: e },
      );
    }
    throw new Error(`installWebGPU: the \`webgpu\` package is installed but failed to load: ${err.message}`, { cause: e });
  }
}

/** Options of {@link installWebGPU}. */
export interface InstallWebGPUOptions {
  /**
   * Flags for Dawn's `create`, e.g. `['disable-dawn-features=timestamp_quantization']` for
   * exact GPU timestamps in `tf.time` (Dawn rounds them by default). Default none.
   */
  dawnFlags?: string[];
  /**
   * How Node waits for the GPU. While a read or a fence is pending, Dawn's Node bindings poll the
   * device from `setImmediate`, over and over: `'busy'` leaves them so, one core spinning, the
   * shortest wait on a GPU. `'yield'` lets a wait poll so for 4 ms, then has each poll
   * wait a millisecond (`setTimeout`), so that the core is free for SwiftShader's threads, which
   * run the kernels on the same CPU. `'auto'` (the default): `'yield'` on SwiftShader, else
   * `'busy'`. It wraps `globalThis.setImmediate` for anonymous native callbacks (Dawn's polls)
   * only, until `uninstall()`.
   */
  poll?: 'auto' | 'busy' | 'yield';
}

const POLL_MODES = ['auto', 'busy', 'yield'];
/** How long a wait polls without pause before its polls yield, ms: a short read costs no more. */
const BUSY_MS = 4;

/**
 * Has anonymous native callbacks given to `setImmediate` (Dawn's polls of the device while a
 * read or fence waits) run a millisecond later, once their wait has polled for {@link BUSY_MS};
 * returns what undoes it. A poll scheduled from outside a poll starts a wait; one scheduled
 * while a poll runs continues it.
 */
function yieldingPolls(): () => void {
  const immediate = globalThis.setImmediate;
  const native = (fn: unknown) => typeof fn === 'function' && fn.name === '' && Function.prototype.toString.call(fn).includes('[native code]');
  let polling = false;
  let started = 0;
  const wrapped = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => {
    if (!native(fn)) return immediate(fn, ...args);
    const now = performance.now();
    if (!polling) started = now;
    const poll = () => {
      polling = true;
      try {
        fn(...args);
      } finally {
        polling = false;
      }
    };
    return now - started < BUSY_MS ? immediate(poll) : setTimeout(poll, 1);
  }) as unknown as typeof setImmediate;
  globalThis.setImmediate = Object.assign(wrapped, { __promisify__: immediate.__promisify__ });
  return () => {
    if (globalThis.setImmediate === wrapped) globalThis.setImmediate = immediate;
  };
}

/**
 * Installs Dawn's WebGPU as `globalThis.navigator.gpu`. Call it before importing
 * `@tensorflow/tfjs-backend-webgpu`.
 *
 * The adapter: a Vulkan driver named by `VK_DRIVER_FILES` or `VK_ICD_FILENAMES` is used as
 * given; otherwise a hardware adapter (on Linux only tried when the Vulkan loader has a driver
 * manifest, so that a machine without a GPU driver prints no Vulkan warnings), else SwiftShader.
 *
 * When Node has no `OffscreenCanvas`, it also installs a stand-in whose constructor throws: the
 * webgpu backend's synchronous read (`dataSync()`, `arraySync()`, `bufferSync()`, `tf.print`)
 * then fails with an error that says to use `await tensor.data()` instead, as Dawn has no
 * synchronous read of GPU memory.
 *
 * @param options - Flags for Dawn, and how Node waits for the GPU.
 * @returns The installed adapter, or `null` when the `webgpu` package loads but no adapter can
 * be found (neither a GPU driver nor SwiftShader): see {@link HOW_TO_GET_AN_ADAPTER}.
 * `navigator.gpu` is not set then, so callers can fall back to another backend.
 * @throws Error when the `webgpu` package is not installed (the message gives the
 * `npm install webgpu` to run) or fails to load.
 *
 * @example
 * ```ts
 * import { installWebGPU, HOW_TO_GET_AN_ADAPTER } from 'tfjs-mixers/node';
 * const gpu = await installWebGPU();
 * if (!gpu) throw new Error(HOW_TO_GET_AN_ADAPTER);
 * console.log(gpu.description);                   // e.g. 'SwiftShader: google swiftshader ...'
 * const tf = await import('@tensorflow/tfjs');
 * await import('@tensorflow/tfjs-backend-webgpu');
 * await tf.setBackend('webgpu');
 * const x = tf.tensor([1, 2, 3]);
 * const y = x.square();
 * console.log(await y.data());                    // Float32Array [1, 4, 9]; y.dataSync() throws in Node
 * tf.dispose([x, y]);
 * gpu.uninstall();
 * ```
 */
export async function installWebGPU(options: InstallWebGPUOptions = {}): Promise<InstalledWebGPU | null> {
  const poll = options.poll ?? 'auto';
  if (!POLL_MODES.includes(poll)) {
    throw new Error(`installWebGPU: option 'poll' must be 'auto', 'busy' or 'yield'; received ${JSON.stringify(poll)}.`);
  }
  const dawn = await importDawn();
  Object.assign(globalThis, dawn.globals);
  // SwiftShader's Vulkan surface code wants a runtime dir even when nothing is drawn
  process.env.XDG_RUNTIME_DIR ??= mkdtempSync(join(tmpdir(), 'tfjs-mixers-xdg-'));

  const attempt = async (kind: InstalledWebGPU['kind']): Promise<InstalledWebGPU | null> => {
    const gpu = dawn.create(options.dawnFlags ?? []);
    const adapter = await gpu.requestAdapter();
    if (!adapter) return null;
    const g = globalThis as { navigator?: { gpu?: GPU }; OffscreenCanvas?: unknown };
    g.navigator ??= {} as { gpu?: GPU };
    g.navigator.gpu = gpu;
    g.OffscreenCanvas ??= OffscreenCanvasMissingInNode;
    const yielding = poll === 'yield' || (poll === 'auto' && kind === 'swiftshader');
    const restorePolls = yielding ? yieldingPolls() : () => {};
    return {
      kind,
      description: `${kind === 'swiftshader' ? 'SwiftShader' : 'GPU'}: ${await describeAdapter(adapter)}`,
      poll: yielding ? 'yield' : 'busy',
      uninstall: () => {
        delete g.navigator?.gpu;
        if (g.OffscreenCanvas === OffscreenCanvasMissingInNode) delete g.OffscreenCanvas;
        restorePolls();
      },
    };
  };

  // a driver the user named wins; else a hardware adapter, else SwiftShader
  const named = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
  if (named) return attempt(named.includes('swiftshader') ? 'swiftshader' : 'hardware');
  // without a driver manifest, Vulkan has no hardware adapter to offer, and asking prints warnings
  if (process.platform !== 'linux' || hasVulkanDriverManifest(process.env)) {
    const hardware = await attempt('hardware');
    if (hardware) return hardware;
  }
  const icd = SWIFTSHADER_ICDS.find((p) => existsSync(p));
  if (!icd) return null;
  process.env.VK_ICD_FILENAMES = icd;
  return attempt('swiftshader');
}
