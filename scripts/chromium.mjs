// The headless Chromium that test:browser and the peers bench drive: Debian's `chromium`
// package (never a downloaded build) or CHROMIUM_PATH, and the flags both launch it with.

export const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** What to do when there is no Chromium or no adapter. */
export const GET_CHROMIUM = 'Install Debian\'s Chromium and the Vulkan loader (SwiftShader provides WebGPU without a GPU): ' +
  '`sudo apt-get install chromium libvulkan1` (scripts/setup.sh does it), or set CHROMIUM_PATH to a Chromium binary.';

/**
 * Flags: WebGPU is behind --enable-unsafe-webgpu on Linux (without it requestAdapter() returns
 * null here); the sandbox cannot start as root or in most containers; the rest keep a headless
 * run quiet and offline. WebGPU's SwiftShader needs no flag of its own: Chromium falls back to it.
 * WebGL: --use-angle=swiftshader asks for ANGLE on SwiftShader and --enable-unsafe-swiftshader
 * allows it. Headless Chromium 150 without a GPU falls back to it by itself (checked here with and
 * without the flags: the same renderer, "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device
 * (Subzero)))"), but that automatic software-WebGL fallback is deprecated, and on a machine with
 * a GPU the flags ask for the same software renderer as CI. WebGPU is unaffected (checked).
 */
export const CHROMIUM_FLAGS = [
  '--enable-unsafe-webgpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--no-sandbox', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
