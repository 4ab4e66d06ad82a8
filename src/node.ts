/**
 * WebGPU for Node.js: installs Dawn (the `webgpu` npm package) as `navigator.gpu`, so that
 * `@tensorflow/tfjs-backend-webgpu` registers its backend when it is imported afterwards.
 * A hardware adapter is used when Vulkan offers one; otherwise SwiftShader, the software
 * Vulkan driver that Debian's `chromium` package ships, is found and used.
 *
 * @example
 * ```ts
 * import { installWebGPU } from 'tfjs-mixers/node';
 * const gpu = await installWebGPU();               // before tfjs-backend-webgpu is imported
 * const tf = await import('@tensorflow/tfjs');
 * await import('@tensorflow/tfjs-backend-webgpu');
 * if (gpu) await tf.setBackend('webgpu');
 * ```
 *
 * @packageDocumentation
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where SwiftShader's Vulkan driver manifest is looked for. */
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
  /** Removes `navigator.gpu`; Node may not exit while it is installed. */
  uninstall(): void;
}

/** How to get an adapter, for error messages. */
export const HOW_TO_GET_AN_ADAPTER =
  'No WebGPU adapter was found. On Debian/Ubuntu install SwiftShader and the Vulkan loader with ' +
  '`sudo apt-get install chromium libvulkan1` (tfjs-mixers finds /usr/lib/chromium/vk_swiftshader_icd.json by itself), ' +
  'or run on a machine with a Vulkan GPU driver.';

async function describeAdapter(adapter: GPUAdapter): Promise<string> {
  const info = adapter.info;
  const parts = [info?.vendor, info?.architecture, info?.device, info?.description].filter((p) => p);
  return parts.length > 0 ? parts.join(' ') : 'unnamed adapter';
}

/** Options of {@link installWebGPU}. */
export interface InstallWebGPUOptions {
  /**
   * Flags for Dawn's `create`, e.g. `['disable-dawn-features=timestamp_quantization']` for
   * exact GPU timestamps in `tf.time` (Dawn rounds them by default). Default none.
   */
  dawnFlags?: string[];
}

/**
 * Installs Dawn's WebGPU as `globalThis.navigator.gpu`. Call it before importing
 * `@tensorflow/tfjs-backend-webgpu`. A Vulkan driver named by `VK_DRIVER_FILES` or
 * `VK_ICD_FILENAMES` is used as given; otherwise a hardware adapter, else SwiftShader. Returns
 * `null` when no adapter can be found (the `webgpu` package is missing, or there is neither a
 * GPU driver nor SwiftShader).
 */
export async function installWebGPU(options: InstallWebGPUOptions = {}): Promise<InstalledWebGPU | null> {
  let dawn: { create(flags: string[]): GPU; globals: Record<string, unknown> };
  try {
    dawn = await import('webgpu') as unknown as typeof dawn;
  } catch {
    return null;
  }
  Object.assign(globalThis, dawn.globals);
  // SwiftShader's Vulkan surface code wants a runtime dir even when nothing is drawn
  process.env.XDG_RUNTIME_DIR ??= mkdtempSync(join(tmpdir(), 'tfjs-mixers-xdg-'));

  const attempt = async (kind: InstalledWebGPU['kind']): Promise<InstalledWebGPU | null> => {
    const gpu = dawn.create(options.dawnFlags ?? []);
    const adapter = await gpu.requestAdapter();
    if (!adapter) return null;
    const g = globalThis as { navigator?: { gpu?: GPU } };
    g.navigator ??= {} as { gpu?: GPU };
    g.navigator.gpu = gpu;
    return {
      kind,
      description: `${kind === 'swiftshader' ? 'SwiftShader' : 'GPU'}: ${await describeAdapter(adapter)}`,
      uninstall: () => { delete g.navigator?.gpu; },
    };
  };

  // a driver the user named wins; else a hardware adapter, else SwiftShader
  const named = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
  if (named) return attempt(named.includes('swiftshader') ? 'swiftshader' : 'hardware');
  const hardware = await attempt('hardware');
  if (hardware) return hardware;
  const icd = SWIFTSHADER_ICDS.find((p) => existsSync(p));
  if (!icd) return null;
  process.env.VK_ICD_FILENAMES = icd;
  return attempt('swiftshader');
}
